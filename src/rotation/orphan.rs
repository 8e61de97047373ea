//! The key an interrupted CreateAccessKey may have left, and the rule that
//! says whether it is provably this plan's: created within the unanswered
//! call's own window and never used. Used by `run` (in `create_second_key`)
//! and by `rollback --delete-new` alike.

use chrono::{DateTime, Duration, Utc};

use crate::iam::{LastUse, LiveKey, CREATE_ACCESS_KEY_TIMEOUT};
use crate::plan::Plan;

/// How far IAM's clock (which stamps a key's creation) and this machine's
/// (which stamps the create intent) may disagree, either way.
pub const ORPHAN_SKEW: Duration = Duration::minutes(1);

/// When the unanswered CreateAccessKey of an intent saved at `intent` can
/// have made its key, both ends included: from the intent's save to the
/// call's timeout ([`CREATE_ACCESS_KEY_TIMEOUT`]), widened by
/// [`ORPHAN_SKEW`] on each side.
pub fn orphan_window(intent: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let timeout = Duration::milliseconds(CREATE_ACCESS_KEY_TIMEOUT.as_millis() as i64);
    (intent - ORPHAN_SKEW, intent + timeout + ORPHAN_SKEW)
}

/// What [`find_orphan`] found among the live keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Orphan<'k> {
    /// No create was interrupted, or the keys hold no single unknown key
    /// (none, or more than one: an interrupted create makes exactly one, so
    /// with two unknown keys neither is taken for it).
    NoCandidate,
    /// The one unknown key, provably made by the interrupted create: in
    /// its window and never used. Its secret reached no one.
    Ours(&'k LiveKey),
    /// The one unknown key, which may be someone else's; `why` says why it
    /// is not provably ours, in the operator's words.
    NotProvablyOurs { key: &'k LiveKey, why: String },
}

/// The key an unanswered CreateAccessKey whose intent was saved at
/// `intent` may have left among `keys`, and whether it is provably that
/// key. `known` are the key ids the plan names (the old key); `used` is the
/// candidate's GetAccessKeyLastUsed, `None` when it was not read (which
/// proves nothing). Read the candidate with [`orphan_candidate_in`] first
/// to know whose last use to fetch.
pub fn find_orphan<'k>(
    intent: Option<DateTime<Utc>>,
    keys: &'k [LiveKey],
    known: &[&str],
    used: Option<&LastUse>,
) -> Orphan<'k> {
    let Some(key) = orphan_candidate_in(intent, keys, known) else {
        return Orphan::NoCandidate;
    };
    match why_not_ours(intent, key, used) {
        None => Orphan::Ours(key),
        Some(why) => Orphan::NotProvablyOurs { key, why },
    }
}

/// The one key an unanswered CreateAccessKey can have made: there is an
/// intent, and `keys` hold exactly one key that `known` does not name.
pub fn orphan_candidate_in<'k>(
    intent: Option<DateTime<Utc>>,
    keys: &'k [LiveKey],
    known: &[&str],
) -> Option<&'k LiveKey> {
    intent?;
    let mut others = keys.iter().filter(|k| !known.contains(&k.id.as_str()));
    let first = others.next()?;
    others.next().is_none().then_some(first)
}

/// The one key an unanswered CreateAccessKey of this plan can have made:
/// the plan records a create intent and no new key, and IAM lists exactly
/// one key besides the old one. Whether it really is that key is for
/// [`not_provably_ours`] and the destination to say.
pub fn orphan_candidate<'k>(plan: &Plan, keys: &'k [LiveKey]) -> Option<&'k LiveKey> {
    if plan.new_key.is_some() {
        return None;
    }
    orphan_candidate_in(plan.create_intent_at, keys, &[plan.old_key.id.as_str()])
}

/// Why `key` is not provably the key of this plan's interrupted create,
/// or `None` when it is: see [`why_not_ours`].
pub fn not_provably_ours(plan: &Plan, key: &LiveKey, used: Option<&LastUse>) -> Option<String> {
    why_not_ours(plan.create_intent_at, key, used)
}

/// Why `key` is not provably the key of the interrupted create whose
/// intent was saved at `intent`, or `None` when it is: it was created
/// within the call's [`orphan_window`] and has never been used (`used` is
/// its GetAccessKeyLastUsed; `None` when it was not read, which proves
/// nothing). Such a key's secret reached no one, so deleting it harms no
/// one; any other key may be someone else's.
pub fn why_not_ours(
    intent: Option<DateTime<Utc>>,
    key: &LiveKey,
    used: Option<&LastUse>,
) -> Option<String> {
    let Some(intent) = intent else {
        return Some("the plan records no interrupted CreateAccessKey".into());
    };
    let (start, end) = orphan_window(intent);
    let side = if key.created_at < start {
        "before"
    } else if key.created_at > end {
        "after"
    } else {
        return match used {
            None => Some("its last use could not be read".into()),
            Some(LastUse { at: Some(at), .. }) => Some(format!(
                "it was created in the window of that call, but it has been used (last {}), and \
                 the key of an interrupted create has a secret that reached no one: something \
                 else holds this key",
                stamp(*at)
            )),
            Some(_) => None,
        };
    };
    Some(format!(
        "it was created {}, {side} the window in which this plan's interrupted CreateAccessKey \
         can have made its key: {} to {} (the intent saved {}, the call's {}s timeout, and {}s of \
         clock skew either side)",
        stamp(key.created_at),
        stamp(start),
        stamp(end),
        stamp(intent),
        CREATE_ACCESS_KEY_TIMEOUT.as_secs(),
        ORPHAN_SKEW.num_seconds(),
    ))
}

/// A candidate key in a few words: "Active, created …, never used".
pub fn describe_candidate(
    key: &LiveKey,
    used: Option<&LastUse>,
    system_now: DateTime<Utc>,
) -> String {
    let used = match used {
        Some(u) if u.at.is_some() => format!("last used {}", u.describe(system_now)),
        Some(_) => "never used".into(),
        None => "last use unknown".into(),
    };
    format!("{}, created {}, {used}", key.status, stamp(key.created_at))
}

/// A time as plans and messages write it.
pub(crate) fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
