//! Did-you-mean: the names closest to one that was not found, so that a
//! mistyped user or plan name gets an answer instead of a dead end.

/// At most this many suggestions.
const MAX_SUGGESTIONS: usize = 3;

/// The candidates closest to `wanted`, best first: the same name in
/// another case (IAM user names are unique regardless of case), then a
/// few typos away (edits, transpositions; about one per three
/// characters), then names that contain it (`deploy` → `deploy-bot`).
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    let budget = (wanted.chars().count() / 3).max(1);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|candidate| *candidate != wanted)
        .filter_map(|candidate| {
            let lower = candidate.to_lowercase();
            let distance = strsim::damerau_levenshtein(&wanted_lower, &lower);
            if distance <= budget {
                Some((distance, candidate))
            } else if wanted.chars().count() >= 3 && lower.contains(&wanted_lower) {
                Some((budget + 1, candidate))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.dedup();
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, name)| name)
        .collect()
}

/// ` Did you mean alice?` / ` Did you mean alice, alicia or alison?`, or
/// nothing when there is no suggestion.
pub fn did_you_mean(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => format!(" Did you mean {one}?"),
        [init @ .., last] => format!(" Did you mean {} or {last}?", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &[&str] = &["alice", "alicia", "bob", "deploy-bot", "Carol", "ci-runner"];

    #[test]
    fn typos_case_and_parts_find_their_name() {
        let find = |wanted| closest(wanted, USERS.iter().copied());
        assert_eq!(find("alcie"), ["alice"]);
        assert_eq!(find("alic"), ["alice", "alicia"]);
        assert_eq!(find("carol"), ["Carol"]);
        assert_eq!(find("deploy-bto"), ["deploy-bot"]);
        assert_eq!(find("deploy"), ["deploy-bot"]);
        assert_eq!(find("bobby"), Vec::<&str>::new());
        assert_eq!(find("zed"), Vec::<&str>::new());
        assert_eq!(
            find("bob"),
            Vec::<&str>::new(),
            "the name itself is no suggestion"
        );
    }

    #[test]
    fn suggestions_read_as_a_sentence() {
        assert_eq!(did_you_mean(&[]), "");
        assert_eq!(did_you_mean(&["alice"]), " Did you mean alice?");
        assert_eq!(
            did_you_mean(&["alice", "alicia", "alison"]),
            " Did you mean alice, alicia or alison?"
        );
    }
}
