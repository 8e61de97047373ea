//! A corpus of bad plans and bad arguments. Each must end with a clear exit
//! code, a message that names the problem and the fix, and not one write
//! request reaching the endpoint (counted by the proxy).

use crate::harness::ACCOUNT;
use crate::moto_env;

struct Case {
    name: &'static str,
    /// The plan text to write over `ida`'s plan (`None`: leave it).
    plan: Option<String>,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: i32,
    /// Every one of these must appear in the output.
    mentions: Vec<&'static str>,
}

fn case(name: &'static str, code: i32, args: &[&str], mentions: &[&'static str]) -> Case {
    Case {
        name,
        plan: None,
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        code,
        mentions: mentions.to_vec(),
    }
}

fn bad_plan(name: &'static str, text: String, mentions: &[&'static str]) -> Case {
    let mut mentions = mentions.to_vec();
    mentions.push("ida.yaml");
    mentions.push("Fix the plan file");
    Case {
        plan: Some(text),
        ..case(name, 1, &["run", "ida"], &mentions)
    }
}

/// A `new_key:` block to splice into a plan.
const NEW_KEY: &str = "new_key:\n  id: AKIAI44QH8DHBEXAMPLE\n  created_at: 2026-11-26T09:00:03Z\n";

#[test]
fn every_bad_input_is_refused_with_the_fix_and_no_write() {
    let env = moto_env!();
    env.user("ida", 1);
    env.run(&["plan", "ida"]).expect(0);
    let good = env.plan_text("ida");
    let a_file = env.dir.path().join("a-file");
    std::fs::write(&a_file, "not a folder").unwrap();
    let a_file = a_file.to_str().unwrap().to_string();
    let replace = |from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        good.replace(from, to)
    };

    let mut cases = vec![
        bad_plan("empty file", String::new(), &["empty"]),
        bad_plan("whitespace only", "\n  \n".into(), &["empty"]),
        bad_plan(
            "truncated YAML",
            good[..good.find("policy:").unwrap() + 12].to_string(),
            &["line "],
        ),
        bad_plan(
            "wrong type: bool",
            replace("require_new_key_use: true", "require_new_key_use: maybe"),
            &["line ", "column "],
        ),
        bad_plan(
            "wrong type: list for a duration",
            replace("adoption_wait: 7d", "adoption_wait: [7]"),
            &["line ", "adoption_wait"],
        ),
        bad_plan(
            "bad duration in the plan",
            replace("quiet_period: 3d", "quiet_period: three days"),
            &["line ", "quiet_period", "7d"],
        ),
        bad_plan(
            "unknown field",
            format!("{good}colour: blue\n"),
            &["colour", "line "],
        ),
        bad_plan(
            "unknown version",
            replace("version: 1", "version: 2"),
            &["version", "line "],
        ),
        bad_plan(
            "unknown phase",
            replace("phase: create_second_key", "phase: rotate_everything"),
            &["phase", "line ", "expected one of"],
        ),
        bad_plan("not a mapping", "- just\n- a list\n".into(), &["line "]),
        bad_plan(
            "binary garbage",
            "\u{0}\u{1}\u{2}version: 1".into(),
            &["line "],
        ),
        bad_plan(
            "bad account id",
            replace(&format!("account: '{ACCOUNT}'"), "account: 'prod'"),
            &["account"],
        ),
        case(
            "no plan for the user",
            1,
            &["run", "nobody"],
            &["no plan at", "iam-rotate plan nobody"],
        ),
        case(
            "missing --plans-dir",
            1,
            &["--plans-dir", "/nonexistent/plans", "run", "ida"],
            &["/nonexistent/plans", "--plans-dir"],
        ),
        case(
            "missing --plans-dir for status",
            1,
            &["--plans-dir", "/nonexistent/plans", "status"],
            &["/nonexistent/plans", "--plans-dir"],
        ),
        Case {
            args: vec!["--plans-dir".into(), a_file.clone(), "status".into()],
            ..case("--plans-dir is a file", 1, &[], &["a-file", "--plans-dir"])
        },
        case(
            "invalid duration",
            2,
            &["plan", "ida", "--adoption-wait", "7x"],
            &["7x", "7d"],
        ),
        case(
            "quiet period under the floor",
            2,
            &["plan", "ida", "--quiet-period", "1h"],
            &["4h", "--allow-short-quiet-period"],
        ),
        case(
            "invalid user name",
            2,
            &["run", "bad name!"],
            &["valid IAM user name", "letters, digits"],
        ),
        case(
            "unknown command",
            2,
            &["rotate-everything"],
            &["rotate-everything"],
        ),
        case(
            "concurrency out of range",
            2,
            &["run", "--all", "--concurrency", "0"],
            &["concurrency"],
        ),
        Case {
            env: vec![("IAM_ROTATE_NOW", "next tuesday".into())],
            ..case(
                "invalid IAM_ROTATE_NOW",
                2,
                &["status"],
                &["IAM_ROTATE_NOW", "2026-12-01T09:00:00Z"],
            )
        },
        case(
            "undeliverable destination",
            2,
            &["plan", "zed", "--deliver", "ftp://somewhere"],
            &["ftp://somewhere", "file:"],
        ),
        // A plan that contradicts itself is refused before any request.
        bad_plan(
            "a phase after creation without a new key",
            replace("phase: create_second_key", "phase: check_last_used"),
            &["check_last_used", "new_key"],
        ),
        bad_plan(
            "delete without a new key",
            replace("phase: create_second_key", "phase: delete"),
            &["new_key"],
        ),
        bad_plan(
            "blocked in a phase that needs a new key, without one",
            replace(
                "phase: create_second_key",
                "phase: blocked\nblocked_in: verify\nblocked_reason: drift",
            ),
            &["new_key"],
        ),
        bad_plan(
            "the old key's status does not fit the phase",
            replace(
                "phase: create_second_key",
                &format!("{NEW_KEY}phase: verify"),
            ),
            &["old_key.status", "verify", "Inactive"],
        ),
        bad_plan(
            "create_second_key with a new key recorded",
            replace(
                "phase: create_second_key",
                &format!("{NEW_KEY}phase: create_second_key"),
            ),
            &["new_key"],
        ),
        bad_plan(
            "user does not match the file name",
            replace("user: ida", "user: bob"),
            &["user: bob", "file name"],
        ),
        bad_plan(
            "account does not match the folder",
            replace(&format!("account: '{ACCOUNT}'"), "account: '999988887777'"),
            &["999988887777", "folder"],
        ),
        bad_plan(
            "user_arn of another user",
            replace(":user/ida", ":user/bob"),
            &["user_arn"],
        ),
        bad_plan(
            "a quiet period under the floor in the plan",
            replace("quiet_period: 3d", "quiet_period: 1h"),
            &["quiet_period", "allow_short_quiet_period: true"],
        ),
        bad_plan(
            "an absurd duration in the plan",
            replace("verify_period: 7d", "verify_period: 100000000d"),
            &["line ", "verify_period", "3650d"],
        ),
        bad_plan(
            "an absurd overdue_after in the plan",
            replace("overdue_after: 7d", "overdue_after: 100000000d"),
            &["line ", "overdue_after", "3650d"],
        ),
        // One bad plan never takes the batch down: anchors, aliases, size.
        bad_plan(
            "a YAML anchor",
            replace(
                "require_new_key_use: true",
                "require_new_key_use: &yes true",
            ),
            &["anchor", "line "],
        ),
        bad_plan(
            "a YAML alias",
            replace("policy:\n", "policy: &p\n") + "again: *p\n",
            &["line ", "anchors or aliases"],
        ),
        bad_plan(
            "a plan file over 1 MiB",
            format!("{good}# {}\n", "x".repeat(1024 * 1024)),
            &["1024 KiB", "not read"],
        ),
        case(
            "an absurd duration on the command line",
            2,
            &["plan", "ida", "--adoption-wait", "100000000d"],
            &["100000000d", "3650d"],
        ),
        case(
            "a malformed --deliver with --all",
            2,
            &["plan", "--all", "--deliver", "ftp:/x"],
            &["ftp:/x", "file:PATH"],
        ),
        case(
            "a --deliver with an environment variable",
            2,
            &["plan", "ida", "--deliver", "file:$HOME/ida.csv"],
            &["$HOME", "in full"],
        ),
        case(
            "a --deliver with ~user",
            2,
            &["plan", "ida", "--deliver", "file:~root/ida.csv"],
            &["~root", "in full"],
        ),
        case(
            "status --account that is not an account id",
            2,
            &["status", "--account", "prod"],
            &["12 digits"],
        ),
        case(
            "status --account with too few digits",
            2,
            &["status", "--account", "12345"],
            &["12 digits"],
        ),
        case(
            "show --account that is not an account id",
            2,
            &["show", "ida", "--account", "1234567890123"],
            &["12 digits"],
        ),
        case(
            "a path that is not a plan file",
            2,
            &["run", "/etc/passwd"],
            &["/etc/passwd", ".yaml"],
        ),
        case(
            "a path that is not a plan file, for rollback",
            2,
            &["rollback", "./notes.txt"],
            &["notes.txt", ".yaml"],
        ),
    ];

    // A destination that cannot be written: refused before any key exists.
    env.user("ivy", 1);
    let unwritable = format!("file:{a_file}/{{user}}.csv");
    env.run(&["plan", "ivy", "--deliver", &unwritable])
        .expect(0);
    cases.push(case(
        "delivery path cannot be written",
        1,
        &["run", "ivy"],
        &["a-file", "Nothing was created"],
    ));
    let ivy_plan = env.plan_text("ivy");

    let mut tried = 0;
    for case in cases {
        if let Some(text) = &case.plan {
            std::fs::write(env.plan_path("ida"), text).unwrap();
        }
        env.proxy.reset_counts();
        let mut cmd = env.command();
        cmd.args(&case.args);
        for (k, v) in &case.env {
            cmd.env(k, v);
        }
        let run = env.capture(cmd.output().unwrap());
        let text = run.text();
        assert_eq!(run.code, case.code, "{}: exit code\n{text}", case.name);
        for mention in &case.mentions {
            assert!(
                text.contains(mention),
                "{}: the message does not mention {mention:?}:\n{text}",
                case.name
            );
        }
        assert!(!text.contains("panicked"), "{}: {text}", case.name);
        assert!(
            !std::path::Path::new("/etc/.passwd.lock").exists(),
            "{}: a lock file was made beside a file that is not a plan",
            case.name
        );
        assert!(
            env.proxy.writes().is_empty(),
            "{}: writes reached AWS: {:?}",
            case.name,
            env.proxy.writes()
        );
        if let Some(bad) = &case.plan {
            assert_eq!(
                &env.plan_text("ida"),
                bad,
                "{}: the file was changed",
                case.name
            );
        }
        tried += 1;
    }
    assert_eq!(env.keys("ida").len(), 1);
    assert_eq!(env.keys("ivy").len(), 1);
    // The failed delivery check is on the plan, which stays retryable.
    let ivy = env.plan_yaml("ivy");
    assert_eq!(ivy["phase"], "create_second_key");
    assert!(ivy["create_intent_at"].is_null());
    assert!(ivy["last_error"].as_str().unwrap().contains("a-file"));
    assert_eq!(
        ivy["old_key"],
        serde_yaml::from_str::<serde_yaml::Value>(&ivy_plan).unwrap()["old_key"]
    );
    eprintln!("bad inputs tried: {tried}");
}

#[test]
fn plans_that_disagree_with_iam_block_without_a_write() {
    let env = moto_env!();
    for user in ["kay", "lou", "max"] {
        env.user(user, 1);
        env.run(&["plan", user]).expect(0);
    }
    // A plan naming a key that does not exist.
    let kay = env.plan_text("kay");
    let old = env.keys("kay")[0].0.clone();
    std::fs::write(
        env.plan_path("kay"),
        kay.replace(&old, "AKIAAAAAAAAAAAAAAAAA"),
    )
    .unwrap();
    // A plan whose user was deleted.
    let iam = env.iam();
    let lou_key = env.keys("lou")[0].0.clone();
    env.block_on(async {
        iam.delete_access_key()
            .user_name("lou")
            .access_key_id(&lou_key)
            .send()
            .await
            .unwrap();
        iam.delete_user().user_name("lou").send().await.unwrap();
    });
    // A plan whose account is not the caller's.
    let max = env.plan_text("max");
    let other = env.plans().join("999988887777");
    std::fs::create_dir_all(&other).unwrap();
    let foreign = other.join("max.yaml");
    std::fs::write(&foreign, max.replace(ACCOUNT, "999988887777")).unwrap();

    env.proxy.reset_counts();
    let run = env.run(&["run", "kay"]);
    run.expect(3);
    assert!(run.text().contains("no longer exists"), "{}", run.text());
    let run = env.run(&["run", "lou"]);
    run.expect(3);
    assert!(
        run.text().contains("no longer exists in account"),
        "{}",
        run.text()
    );
    let run = env.run(&["run", foreign.to_str().unwrap()]);
    run.expect(1);
    assert!(run.text().contains("999988887777") && run.text().contains("--profile"));
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    assert_eq!(env.plan_yaml("kay")["phase"], "blocked");
    assert!(env.plan_yaml("kay")["blocked_reason"]
        .as_str()
        .unwrap()
        .contains("move it away"));
}
