//! The guide's recovery loop (rollback = step 5 → step 2), `--abort`, the
//! next command printed for every state (and that it works), overdue plans
//! with `status --needs-attention`, and the dry run's whole chain.

use crate::harness::{Env, Run};
use crate::moto_env;

/// The `next_command` `status --output json` gives for `user`.
fn next_command(env: &Env, user: &str, now: Option<f64>) -> Option<String> {
    let status = env.run_at(now, &["--output", "json", "status", user]);
    status.expect(0);
    status.json()[0]["next_command"]
        .as_str()
        .map(str::to_string)
}

/// Runs a printed command line as it is, with the test's environment.
fn run_printed(env: &Env, command: &str, now: Option<f64>) -> Run {
    let words = shell_words::split(command).expect("a command line a shell can split");
    assert_eq!(words[0], "iam-rotate", "{command}");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    env.run_at(now, &args)
}

#[test]
fn the_guides_step_5_loop_finishes_the_rotation_with_the_same_new_key() {
    let env = moto_env!();
    let old = env.user("carol", 1).remove(0);
    env.run(&[
        "plan",
        "carol",
        "--adoption-wait",
        "0s",
        "--quiet-period",
        "4h",
        "--verify-period",
        "1d",
    ])
    .expect(0);
    env.run(&["run", "carol"]).expect(0);
    let new = env.delivered("carol");
    env.use_key(&new);
    // Adopted, the old key quiet: set inactive in the same run.
    env.run(&["run", "carol"]).expect(0);
    assert_eq!(env.plan_yaml("carol")["phase"], "verify");
    // An application still on the old key breaks.
    env.use_key(&old);
    let blocked = env.run_at(Some(0.1), &["run", "carol"]);
    blocked.expect(3);
    assert_eq!(env.plan_yaml("carol")["phase"], "blocked");
    assert_eq!(
        next_command(&env, "carol", Some(0.1)).unwrap(),
        format!(
            "iam-rotate --plans-dir {} run --retry-blocked carol",
            env.plans().display()
        )
    );

    let rollback = env.run_at(Some(0.1), &["rollback", "carol"]);
    rollback.expect(0);
    assert!(
        rollback
            .stdout
            .contains("switch the application that failed to the new key"),
        "{}",
        rollback.text()
    );
    let plan = env.plan_yaml("carol");
    assert_eq!(plan["phase"], "wait_for_adoption");
    assert_eq!(
        plan["new_key"]["id"].as_str(),
        Some(new.id.as_str()),
        "the same new key"
    );
    assert!(plan["restarted_at"].is_string(), "{plan:?}");
    assert_eq!(
        env.keys("carol"),
        vec![
            (old.id.clone(), "Active".into()),
            (new.id.clone(), "Active".into())
        ]
    );
    assert!(next_command(&env, "carol", Some(0.1))
        .unwrap()
        .ends_with(" run carol"));

    // The quiet period counts from the rollback: not yet.
    env.run_at(Some(0.12), &["run", "carol"]).expect(0);
    assert_eq!(env.plan_yaml("carol")["phase"], "check_last_used");
    // Once the application is switched and 4h passed, the same rotation goes on.
    env.run_at(Some(0.4), &["run", "carol"]).expect(0);
    assert_eq!(env.plan_yaml("carol")["phase"], "verify");
    let done = env.run_at(Some(1.5), &["run", "carol"]);
    done.expect(0);
    assert_eq!(env.plan_yaml("carol")["phase"], "done", "{}", done.text());
    assert_eq!(env.keys("carol"), vec![(new.id.clone(), "Active".into())]);
    assert_eq!(next_command(&env, "carol", Some(1.5)), None);
    let text = env.plan_text("carol");
    assert!(text.contains("kind: restarted"), "{text}");
    env.assert_no_secret_leaked(&[&env.default_csv("carol")]);
}

#[test]
fn abort_ends_the_rotation_and_then_says_how_to_rotate_anew() {
    let env = moto_env!();
    let old = env.user("ada", 1).remove(0);
    env.run(&["plan", "ada"]).expect(0);
    env.run(&["run", "ada"]).expect(0);
    let new = env.delivered("ada");
    // --delete-new needs --abort.
    env.run(&["rollback", "ada", "--delete-new"]).expect(2);
    // Before the old key went inactive plain rollback changes nothing.
    let before = env.plan_text("ada");
    let nothing = env.run(&["rollback", "ada"]);
    nothing.expect(0);
    assert!(
        nothing.stdout.contains("nothing changed"),
        "{}",
        nothing.text()
    );
    assert_eq!(env.plan_text("ada"), before);

    env.run(&["rollback", "--abort", "ada"]).expect(0);
    assert_eq!(env.plan_yaml("ada")["phase"], "rolled_back");
    assert_eq!(env.keys("ada").len(), 2, "the new key is kept");
    // Two keys: no new rotation until one goes, and the next command says so.
    env.run(&["plan", "ada"]).expect(1);
    let next = next_command(&env, "ada", None).expect("a next command after an abort");
    assert!(
        next.ends_with(" rollback --abort --delete-new ada"),
        "{next}"
    );
    run_printed(&env, &next, None).expect(0);
    assert_eq!(env.keys("ada"), vec![(old.id.clone(), "Active".into())]);
    assert!(env.plan_yaml("ada")["new_key"]["deleted_at"].is_string());
    assert_eq!(next_command(&env, "ada", None), None);
    env.run(&["plan", "ada"]).expect(0);
    assert_eq!(env.plan_yaml("ada")["phase"], "create_second_key");

    // --abort --delete-new in one go.
    env.user("bo", 1);
    env.run(&["plan", "bo"]).expect(0);
    env.run(&["run", "bo"]).expect(0);
    env.run(&["rollback", "--abort", "--delete-new", "bo"])
        .expect(0);
    assert_eq!(env.keys("bo").len(), 1);
    assert_eq!(next_command(&env, "bo", None), None);
    env.assert_no_secret_leaked(&[&env.default_csv("ada"), &env.default_csv("bo")]);
    let _ = new;
}

/// Every state a plan can be in, the command printed for it, and that
/// command run in that state.
#[test]
fn the_next_command_printed_for_every_state_works() {
    let env = moto_env!();
    let quick = [
        "--adoption-wait",
        "0s",
        "--quiet-period",
        "4h",
        "--verify-period",
        "1d",
    ];
    let plan = |user: &str| {
        let mut args = vec!["plan", user];
        args.extend(quick);
        env.run(&args).expect(0);
    };
    // create_second_key
    env.user("s-create", 1);
    plan("s-create");
    // wait_for_adoption
    env.user("s-adopt", 1);
    plan("s-adopt");
    env.run(&["run", "s-adopt"]).expect(0);
    // check_last_used: the old key is in use
    let old = env.user("s-check", 1).remove(0);
    plan("s-check");
    env.run(&["run", "s-check"]).expect(0);
    env.use_key(&env.delivered("s-check"));
    env.use_key(&old);
    env.run(&["run", "s-check"]).expect(0);
    // verify, and by hand-edited phases the two transient ones
    for user in ["s-verify", "s-delete"] {
        env.user(user, 1);
        plan(user);
        env.run(&["run", user]).expect(0);
        env.use_key(&env.delivered(user));
        env.run(&["run", user]).expect(0);
        assert_eq!(env.plan_yaml(user)["phase"], "verify");
    }
    let edit = |user: &str, from: &str, to: &str| {
        let text = env
            .plan_text(user)
            .replace(&format!("phase: {from}"), &format!("phase: {to}"));
        std::fs::write(env.plan_path(user), text).unwrap();
    };
    edit("s-delete", "verify", "delete");
    let old = env.user("s-inactive", 1).remove(0);
    plan("s-inactive");
    env.run(&["run", "s-inactive"]).expect(0);
    env.use_key(&env.delivered("s-inactive"));
    env.use_key(&old);
    env.run(&["run", "s-inactive"]).expect(0);
    edit("s-inactive", "check_last_used", "set_inactive");
    // blocked: the old key used while inactive; and the old key deleted by hand
    let old = env.user("s-blocked", 1).remove(0);
    plan("s-blocked");
    env.run(&["run", "s-blocked"]).expect(0);
    env.use_key(&env.delivered("s-blocked"));
    env.run(&["run", "s-blocked"]).expect(0);
    env.use_key(&old);
    env.run(&["run", "s-blocked"]).expect(3);
    let old = env.user("s-drift", 1).remove(0);
    plan("s-drift");
    env.run(&["run", "s-drift"]).expect(0);
    env.block_on(
        env.iam()
            .delete_access_key()
            .user_name("s-drift")
            .access_key_id(&old.id)
            .send(),
    )
    .unwrap();
    env.run(&["run", "s-drift"]).expect(3);
    // done, and rolled back both ways
    env.user("s-done", 1);
    env.run(&[
        "plan",
        "s-done",
        "--adoption-wait",
        "0s",
        "--quiet-period",
        "0s",
        "--allow-short-quiet-period",
        "--verify-period",
        "0s",
    ])
    .expect(0);
    env.run(&["run", "s-done"]).expect(0);
    env.use_key(&env.delivered("s-done"));
    env.run(&["run", "s-done"]).expect(0);
    assert_eq!(env.plan_yaml("s-done")["phase"], "done");
    for user in ["s-kept", "s-gone"] {
        env.user(user, 1);
        plan(user);
        env.run(&["run", user]).expect(0);
    }
    env.run(&["rollback", "--abort", "s-kept"]).expect(0);
    env.run(&["rollback", "--abort", "--delete-new", "s-gone"])
        .expect(0);

    let table: [(&str, &str, Option<&str>, &[i32]); 12] = [
        ("s-create", "create_second_key", Some(" run s-create"), &[0]),
        ("s-adopt", "wait_for_adoption", Some(" run s-adopt"), &[0]),
        ("s-check", "check_last_used", Some(" run s-check"), &[0]),
        ("s-inactive", "set_inactive", Some(" run s-inactive"), &[0]),
        ("s-verify", "verify", Some(" run s-verify"), &[0]),
        ("s-delete", "delete", Some(" run s-delete"), &[0]),
        (
            "s-blocked",
            "blocked",
            Some(" run --retry-blocked s-blocked"),
            &[0, 3],
        ),
        (
            "s-drift",
            "blocked",
            Some(" run --retry-blocked s-drift"),
            &[0, 3],
        ),
        ("s-done", "done", None, &[]),
        (
            "s-kept",
            "rolled_back",
            Some(" rollback --abort --delete-new s-kept"),
            &[0],
        ),
        ("s-gone", "rolled_back", None, &[]),
        ("s-create", "wait_for_adoption", Some(" run s-create"), &[0]),
    ];
    for (user, phase, expected, codes) in table {
        assert_eq!(env.plan_yaml(user)["phase"], phase, "{user}");
        let next = next_command(&env, user, None);
        match (expected, &next) {
            (None, None) => continue,
            (Some(tail), Some(next)) => {
                assert!(
                    next.starts_with("iam-rotate ") && next.ends_with(tail),
                    "{user}: {next}"
                )
            }
            _ => panic!("{user} in {phase}: next command {next:?}, expected {expected:?}"),
        }
        let next = next.unwrap();
        // The text of run/show says the same command.
        let show = env.run(&["show", user]);
        show.expect(0);
        assert!(show.stdout.contains(&next), "{user}: {}", show.stdout);
        let ran = run_printed(&env, &next, None);
        assert!(
            codes.contains(&ran.code),
            "{user}: `{next}` exited {}: {}",
            ran.code,
            ran.text()
        );
    }
}

#[test]
fn overdue_plans_and_blocked_ones_are_what_needs_attention_reports() {
    let env = moto_env!();
    env.user("olaf", 1);
    env.user("pia", 1);
    for user in ["olaf", "pia"] {
        env.run(&[
            "plan",
            user,
            "--adoption-wait",
            "1d",
            "--overdue-after",
            "2d",
        ])
        .expect(0);
        env.run(&["run", user]).expect(0);
    }
    env.use_key(&env.delivered("pia"));
    env.run(&["run", "pia"]).expect(0);
    let fine = env.run(&["status", "--needs-attention"]);
    fine.expect(0);
    assert!(fine.stdout.trim().is_empty(), "{}", fine.stdout);
    // 2.5 days on: olaf's new key was never used: overdue after 1d + 2d? Not yet.
    env.run_at(Some(2.5), &["status", "--needs-attention"])
        .expect(0);
    // 3.5 days on it is; pia's key was used, so she only waits.
    let late = env.run_at(
        Some(3.5),
        &["--output", "json", "status", "--needs-attention"],
    );
    late.expect(3);
    let rows = late.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["user"], "olaf");
    assert_eq!(rows[0]["overdue"], true);
    let all = env.run_at(Some(3.5), &["--output", "json", "status"]);
    all.expect(0);
    let pia = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["user"] == "pia")
        .cloned()
        .unwrap();
    assert_eq!(pia["overdue"], false);
    let text = env.run_at(Some(3.5), &["status"]);
    assert!(text.stdout.contains("OVERDUE"), "{}", text.stdout);
    // run says what a person must do.
    let run = env.run_at(Some(3.5), &["run", "olaf"]);
    run.expect(0);
    assert!(
        run.stdout.contains("OVERDUE") && run.stdout.contains("has not been used"),
        "{}",
        run.stdout
    );
    // A blocked plan needs attention at once.
    let old = env.user("quin", 1).remove(0);
    env.run(&[
        "plan",
        "quin",
        "--adoption-wait",
        "0s",
        "--verify-period",
        "1d",
    ])
    .expect(0);
    env.run(&["run", "quin"]).expect(0);
    env.use_key(&env.delivered("quin"));
    env.run_at(Some(3.1), &["run", "quin"]).expect(0);
    env.use_key(&old);
    env.run_at(Some(3.2), &["run", "quin"]).expect(3);
    let attention = env.run_at(Some(3.5), &["status", "--needs-attention"]);
    attention.expect(3);
    assert!(
        attention.stdout.contains("quin") && attention.stdout.contains("olaf"),
        "{}",
        attention.stdout
    );
    assert!(!attention.stdout.contains("pia"), "{}", attention.stdout);
}

#[test]
fn a_dry_run_shows_the_whole_chain_and_writes_nothing() {
    let env = moto_env!();
    let old = env.user("dora", 1).remove(0);
    env.run(&[
        "plan",
        "dora",
        "--adoption-wait",
        "0s",
        "--quiet-period",
        "4h",
        "--verify-period",
        "0s",
    ])
    .expect(0);
    env.run(&["run", "dora"]).expect(0);
    env.use_key(&env.delivered("dora"));
    let before = std::fs::read(env.plan_path("dora")).unwrap();
    let keys = env.keys("dora");
    env.proxy.reset_counts();
    let dry = env.run(&["--output", "json", "run", "--dry-run", "dora"]);
    dry.expect(0);
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    assert_eq!(
        std::fs::read(env.plan_path("dora")).unwrap(),
        before,
        "plan bytes unchanged"
    );
    assert_eq!(env.keys("dora"), keys);
    let result = &dry.json()["results"][0];
    assert_eq!(result["state"], "would_act");
    let would: Vec<String> = result["would"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["text"].as_str().unwrap().to_string())
        .collect();
    let masked = format!("{}…{}", &old.id[..4], &old.id[old.id.len() - 4..]);
    assert!(
        would[0].starts_with("would move to check_last_used"),
        "{would:#?}"
    );
    assert!(
        would
            .iter()
            .any(|w| *w == format!("would set old key {masked} inactive")),
        "{would:#?}"
    );
    assert!(
        would
            .iter()
            .any(|w| *w == format!("would delete old key {masked}")),
        "{would:#?}"
    );
    assert_eq!(would.last().unwrap(), "would be done: nothing more to do");
    // The text version lists the same chain.
    let text = env.run(&["run", "--dry-run", "dora"]);
    for step in &would {
        // Up to the relative times ("used 0s ago"), which tick between runs.
        let stable = step.split(" ago").next().unwrap();
        let stable = stable.trim_end_matches(|c: char| c.is_ascii_alphanumeric());
        assert!(text.stdout.contains(stable), "{step}\n{}", text.stdout);
    }
    assert_eq!(std::fs::read(env.plan_path("dora")).unwrap(), before);
    // The real run then takes those steps.
    env.run(&["run", "dora"]).expect(0);
    assert_eq!(env.plan_yaml("dora")["phase"], "done");
}

/// The fields README's table of JSON shapes promises, command by command.
#[test]
fn every_command_s_json_has_the_documented_fields() {
    let env = moto_env!();
    env.user("jo", 1);
    env.user("kim", 1);
    let has = |value: &serde_json::Value, fields: &[&str], what: &str| {
        for field in fields {
            assert!(
                value.get(field).is_some(),
                "{what} lacks {field}: {value:#}"
            );
        }
    };
    let plan = env.run(&["--output", "json", "plan", "jo", "kim"]);
    plan.expect(0);
    assert_eq!(plan.json().as_array().unwrap().len(), 2);

    let run = env.run(&["--output", "json", "run", "jo"]);
    run.expect(0);
    let document = run.json();
    has(&document, &["results", "summary"], "run");
    has(
        &document["summary"],
        &["total", "counts", "overdue", "users"],
        "run summary",
    );
    let result = &document["results"][0];
    has(
        result,
        &[
            "user",
            "account",
            "phase",
            "state",
            "actions",
            "waiting_until",
            "reason",
            "meanwhile",
            "overdue",
            "overdue_reason",
            "next_command",
            "path",
        ],
        "run result",
    );
    has(
        &result["actions"][0],
        &["kind", "key_id", "at", "text"],
        "run action",
    );
    let new_key = env.plan_yaml("jo")["new_key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        result["actions"][0]["key_id"],
        new_key.as_str(),
        "full key ids"
    );

    let all = env.run(&["--output", "json", "run", "--all"]);
    all.expect(0);
    assert_eq!(all.json()["summary"]["total"], 2);

    let status = env.run(&["--output", "json", "status"]);
    status.expect(0);
    for row in status.json().as_array().unwrap() {
        has(
            row,
            &[
                "user",
                "account",
                "phase",
                "phase_since",
                "next_step",
                "due_at",
                "next_command",
                "overdue",
                "blocked_in",
                "blocked_reason",
                "last_error",
                "old_key",
                "new_key",
                "path",
            ],
            "status row",
        );
    }
    let show = env.run(&["--output", "json", "show", "jo"]);
    show.expect(0);
    has(
        &show.json(),
        &["plan", "next_step", "due_at", "next_command", "overdue"],
        "show",
    );

    let rollback = env.run(&["--output", "json", "rollback", "--abort", "kim"]);
    rollback.expect(0);
    has(
        &rollback.json(),
        &[
            "user",
            "account",
            "phase",
            "actions",
            "path",
            "next_command",
        ],
        "rollback",
    );
    assert_eq!(rollback.json()["phase"], "rolled_back");
    assert_eq!(rollback.json()["actions"][0]["kind"], "rolled_back");
    env.assert_no_secret_leaked(&[&env.default_csv("jo"), &env.default_csv("kim")]);
}

#[test]
fn quiet_runs_print_only_changes_blocks_and_errors() {
    let env = moto_env!();
    env.user("lu", 1);
    env.run(&["plan", "lu"]).expect(0);
    let created = env.run(&["-q", "run", "lu"]);
    created.expect(0);
    assert!(
        created.stdout.contains("created new key"),
        "{}",
        created.text()
    );
    // Nothing changed: nothing to say, for cron mail.
    let waiting = env.run(&["-q", "run", "lu"]);
    waiting.expect(0);
    assert_eq!(waiting.stdout, "", "{}", waiting.text());
    assert_eq!(waiting.stderr, "", "{}", waiting.text());
    let batch = env.run(&["-q", "run", "--all"]);
    batch.expect(0);
    assert_eq!(batch.stdout, "", "{}", batch.text());
}
