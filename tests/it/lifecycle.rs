//! One user's rotation, end to end, and every guard around it.

use std::path::Path;

use crate::harness::{at, Env, ACCOUNT};
use crate::moto_env;

/// Plans `user` (one fresh key), with extra `plan` flags.
fn planned(env: &Env, user: &str, flags: &[&str]) -> crate::harness::Key {
    let old = env.user(user, 1).remove(0);
    let mut args = vec!["plan", user];
    args.extend_from_slice(flags);
    env.run(&args).expect(0);
    old
}

#[test]
fn the_whole_rotation_reaches_done() {
    let env = moto_env!();
    let old = planned(&env, "alice", &[]);
    let plan = env.plan_yaml("alice");
    assert_eq!(plan["version"], 1);
    assert_eq!(plan["phase"], "create_second_key");
    assert_eq!(plan["old_key"]["id"].as_str(), Some(old.id.as_str()));
    assert_eq!(env.keys("alice").len(), 1, "plan writes nothing to IAM");

    // create_second_key -> wait_for_adoption; the secret lands in the CSV.
    let run = env.run(&["run", "alice"]);
    run.expect(0);
    assert!(
        run.stdout.contains("waiting for the new key"),
        "{}",
        run.stdout
    );
    let new = env.delivered("alice");
    assert_ne!(new.id, old.id);
    let csv = env.default_csv("alice");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&csv).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        env.keys("alice"),
        vec![
            (old.id.clone(), "Active".into()),
            (new.id.clone(), "Active".into())
        ]
    );
    assert_eq!(
        env.plan_yaml("alice")["new_key"]["id"].as_str(),
        Some(new.id.as_str())
    );

    // A second run before the wait ends changes nothing in AWS.
    env.run(&["run", "alice"]).expect(0);
    assert_eq!(env.keys("alice").len(), 2);
    assert_eq!(env.plan_yaml("alice")["phase"], "wait_for_adoption");

    // The application adopts the new key; the delivered secret authenticates.
    assert_eq!(
        env.use_key(&new),
        format!("arn:aws:iam::{ACCOUNT}:user/alice")
    );

    // Eight days on: adoption over, old key quiet -> set inactive, verify.
    let run = env.run_at(Some(8.0), &["run", "alice"]);
    run.expect(0);
    assert_eq!(env.plan_yaml("alice")["phase"], "verify", "{}", run.text());
    assert_eq!(
        env.keys("alice"),
        vec![
            (old.id.clone(), "Inactive".into()),
            (new.id.clone(), "Active".into())
        ]
    );
    assert!(run.stdout.contains("verifying"), "{}", run.stdout);

    // status says what happens next, as JSON for automation.
    let status = env.run_at(Some(8.0), &["--output", "json", "status"]);
    status.expect(0);
    let rows = status.json();
    assert_eq!(rows[0]["user"], "alice");
    assert_eq!(rows[0]["account"], ACCOUNT);
    assert_eq!(rows[0]["phase"], "verify");
    assert!(rows[0]["due_at"].is_string());
    assert!(rows[0]["blocked_reason"].is_null());

    // Verify period over: the old key is deleted.
    let run = env.run_at(Some(15.1), &["run", "alice"]);
    run.expect(0);
    let plan = env.plan_yaml("alice");
    assert_eq!(plan["phase"], "done", "{}", run.text());
    assert_eq!(env.keys("alice"), vec![(new.id.clone(), "Active".into())]);

    // History: every transition, the caller's ARN, and the clock override.
    let history = plan["history"].as_sequence().unwrap();
    let steps: Vec<(&str, &str)> = history
        .iter()
        .map(|h| (h["from"].as_str().unwrap(), h["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("create_second_key", "create_second_key"),
            ("create_second_key", "wait_for_adoption"),
            ("wait_for_adoption", "check_last_used"),
            ("check_last_used", "set_inactive"),
            ("set_inactive", "verify"),
            ("verify", "delete"),
            ("delete", "done"),
        ]
    );
    for h in history {
        assert!(
            h["actor"].as_str().unwrap().starts_with("arn:aws:"),
            "{h:?}"
        );
    }
    assert!(history[2]["clock"]
        .as_str()
        .unwrap()
        .starts_with("IAM_ROTATE_NOW="));
    assert!(history[1].get("clock").is_none_or(|c| c.is_null()));
    assert!(!plan["observations"].as_sequence().unwrap().is_empty());

    // A finished plan is never advanced.
    env.run_at(Some(40.0), &["run", "alice"]).expect(0);
    assert_eq!(env.plan_yaml("alice")["phase"], "done");

    // show tells the story without secrets.
    let show = env.run(&["show", "alice"]);
    show.expect(0);
    assert!(show.stdout.contains("done"), "{}", show.stdout);

    env.assert_no_secret_leaked(&[&csv]);
}

#[test]
fn an_old_key_in_use_holds_the_plan_in_check_last_used() {
    let env = moto_env!();
    let old = planned(&env, "bob", &["--adoption-wait", "0s"]);
    env.run(&["run", "bob"]).expect(0);
    let new = env.delivered("bob");
    env.use_key(&new);
    env.use_key(&old);
    for day in [0.0, 1.0, 2.9] {
        let run = env.run_at(Some(day), &["run", "bob"]);
        run.expect(0);
        assert_eq!(
            env.plan_yaml("bob")["phase"],
            "check_last_used",
            "{}",
            run.text()
        );
        assert!(run.stdout.contains("last used"), "{}", run.stdout);
        assert!(run.stdout.contains("quiet_period"), "{}", run.stdout);
    }
    assert_eq!(env.keys("bob")[0], (old.id.clone(), "Active".into()));
    // Quiet for the whole period: it goes on.
    env.run_at(Some(3.1), &["run", "bob"]).expect(0);
    assert_eq!(env.plan_yaml("bob")["phase"], "verify");
    env.assert_no_secret_leaked(&[&env.default_csv("bob")]);
}

#[test]
fn rollback_from_each_phase_before_delete_reactivates_the_old_key() {
    let env = moto_env!();
    // wait_for_adoption
    let old_a = planned(&env, "ann", &[]);
    env.run(&["run", "ann"]).expect(0);
    // check_last_used
    let old_b = planned(&env, "ben", &["--adoption-wait", "0s"]);
    env.run(&["run", "ben"]).expect(0);
    env.use_key(&env.delivered("ben"));
    env.use_key(&old_b);
    env.run(&["run", "ben"]).expect(0);
    // verify
    let old_c = planned(&env, "cat", &[]);
    env.run(&["run", "cat"]).expect(0);
    env.use_key(&env.delivered("cat"));
    env.run_at(Some(8.0), &["run", "cat"]).expect(0);

    for (user, old, phase) in [
        ("ann", &old_a, "wait_for_adoption"),
        ("ben", &old_b, "check_last_used"),
        ("cat", &old_c, "verify"),
    ] {
        assert_eq!(env.plan_yaml(user)["phase"], phase);
        let run = env.run(&["rollback", "--abort", user]);
        run.expect(0);
        assert_eq!(
            env.plan_yaml(user)["phase"],
            "rolled_back",
            "{}",
            run.text()
        );
        let keys = env.keys(user);
        assert_eq!(keys[0], (old.id.clone(), "Active".into()), "{user}");
        assert_eq!(
            keys.len(),
            2,
            "{user}: the new key stays without --delete-new"
        );
        // A rolled-back plan is never advanced.
        env.run_at(Some(30.0), &["run", user]).expect(0);
        assert_eq!(env.keys(user).len(), 2);
    }
    // --delete-new removes the new key too.
    env.run(&["rollback", "cat", "--abort", "--delete-new"])
        .expect(0);
    assert_eq!(env.keys("cat"), vec![(old_c.id.clone(), "Active".into())]);
    let history = env.plan_text("cat");
    assert!(history.contains("rolled_back"));
    env.assert_no_secret_leaked(&[
        &env.default_csv("ann"),
        &env.default_csv("ben"),
        &env.default_csv("cat"),
    ]);
}

#[test]
fn rollback_after_delete_is_refused() {
    let env = moto_env!();
    planned(
        &env,
        "dan",
        &[
            "--adoption-wait",
            "0s",
            "--quiet-period",
            "0s",
            "--allow-short-quiet-period",
            "--verify-period",
            "0s",
        ],
    );
    env.run(&["run", "dan"]).expect(0);
    let new = env.delivered("dan");
    env.use_key(&new);
    env.run(&["run", "dan"]).expect(0);
    assert_eq!(env.plan_yaml("dan")["phase"], "done");
    let before = env.plan_text("dan");
    let run = env.run(&["rollback", "dan"]);
    run.expect(1);
    assert!(run.stderr.contains("never come back"), "{}", run.stderr);
    assert_eq!(env.plan_text("dan"), before);
    assert_eq!(env.keys("dan"), vec![(new.id.clone(), "Active".into())]);
}

#[test]
fn drift_blocks_with_exit_3_and_no_write() {
    let env = moto_env!();
    let old = planned(&env, "eve", &[]);
    env.run(&["run", "eve"]).expect(0);
    let new = env.delivered("eve");
    // Someone deactivates the old key by hand.
    env.set_key_status("eve", &old.id, "Inactive");
    env.use_key(&new);
    let run = env.run_at(Some(8.0), &["run", "eve"]);
    run.expect(3);
    assert!(run.text().contains("outside iam-rotate"), "{}", run.text());
    let plan = env.plan_yaml("eve");
    assert_eq!(plan["phase"], "blocked");
    assert_eq!(plan["blocked_in"], "wait_for_adoption");
    assert!(plan["blocked_reason"]
        .as_str()
        .unwrap()
        .contains("--retry-blocked"));
    assert_eq!(
        env.keys("eve"),
        vec![
            (old.id.clone(), "Inactive".into()),
            (new.id.clone(), "Active".into())
        ]
    );
    // status shows the reason; a plain run leaves it blocked (exit 3 again).
    let status = env.run(&["--output", "json", "status", "eve"]);
    assert!(status.json()[0]["blocked_reason"].is_string());
    env.run_at(Some(9.0), &["run", "eve"]).expect(3);

    // The operator sets it back and retries: the plan goes on.
    env.set_key_status("eve", &old.id, "Active");
    let run = env.run_at(Some(9.0), &["run", "--retry-blocked", "eve"]);
    run.expect(0);
    assert_eq!(env.plan_yaml("eve")["phase"], "verify", "{}", run.text());
}

#[test]
fn an_unknown_key_blocks_instead_of_being_touched() {
    let env = moto_env!();
    planned(&env, "fay", &[]);
    env.run(&["run", "fay"]).expect(0);
    let new = env.delivered("fay");
    // Someone deletes the new key and makes another.
    let iam = env.iam();
    let stranger = env.block_on(async {
        iam.delete_access_key()
            .user_name("fay")
            .access_key_id(&new.id)
            .send()
            .await
            .unwrap();
        env.create_key_with(&iam, "fay").await
    });
    let keys = env.keys("fay");
    env.run_at(Some(8.0), &["run", "fay"]).expect(3);
    assert_eq!(env.keys("fay"), keys);
    assert!(env.keys("fay").iter().any(|(id, _)| *id == stranger.id));
}

#[test]
fn wrong_account_changes_nothing() {
    let env = moto_env!();
    let old = planned(&env, "gil", &[]);
    let before = env.plan_text("gil");
    // The same plan run with credentials for another account.
    let other = Env::for_account("999988887777").unwrap();
    let path = env.plan_path("gil");
    let run = other.run(&["run", path.to_str().unwrap()]);
    run.expect(1);
    assert!(
        run.text().contains("999988887777") && run.text().contains(ACCOUNT),
        "{}",
        run.text()
    );
    assert_eq!(env.plan_text("gil"), before);
    assert_eq!(env.keys("gil"), vec![(old.id.clone(), "Active".into())]);
    let run = other.run(&["rollback", path.to_str().unwrap()]);
    assert_ne!(run.code, 0);
    assert_eq!(env.plan_text("gil"), before);
}

#[test]
fn a_user_with_two_keys_is_refused() {
    let env = moto_env!();
    let keys = env.user("hal", 2);
    let run = env.run(&["plan", "hal"]);
    run.expect(1);
    assert!(
        run.text().contains("already has two access keys"),
        "{}",
        run.text()
    );
    assert!(run.text().contains("delete-access-key"), "{}", run.text());
    assert!(!env.plan_path("hal").exists());
    let live: Vec<String> = env.keys("hal").into_iter().map(|(id, _)| id).collect();
    let made: Vec<String> = keys.into_iter().map(|k| k.id).collect();
    assert_eq!(live, made);
}

#[test]
fn a_malformed_plan_names_file_and_line_and_writes_nothing() {
    let env = moto_env!();
    planned(&env, "ida", &[]);
    let path = env.plan_path("ida");
    let text = env.plan_text("ida");
    let cases = [
        (
            text.replace("phase: create_second_key", "phase: sideways"),
            "phase: unknown variant (value not shown)",
        ),
        (text.replace("version: 1", "version: 7"), "version"),
        (format!("{text}colour: blue\n"), "colour"),
        (text[..text.len() / 2].to_string(), "ida.yaml"),
        (String::new(), "empty"),
    ];
    for (bad, mention) in cases {
        std::fs::write(&path, &bad).unwrap();
        let run = env.run(&["run", "ida"]);
        run.expect(1);
        assert!(run.text().contains("ida.yaml"), "{}", run.text());
        assert!(run.text().contains(mention), "{mention}: {}", run.text());
        if !bad.is_empty() {
            assert!(run.text().contains("line "), "{}", run.text());
        }
        assert_eq!(env.keys("ida").len(), 1, "no key was created");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            bad,
            "file left as it was"
        );
    }
}

#[test]
fn concurrent_runs_of_one_plan_create_one_key() {
    let env = moto_env!();
    let old = planned(&env, "jon", &[]);
    // A held lock: the run skips the plan, exit 0, nothing created.
    let lock = env.plans().join(ACCOUNT).join(".jon.yaml.lock");
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .unwrap();
    held.try_lock().unwrap();
    let run = env.run(&["run", "jon"]);
    run.expect(0);
    assert!(run.text().contains("locked"), "{}", run.text());
    assert_eq!(env.keys("jon").len(), 1);
    drop(held);

    // Several processes at once: exactly one new key.
    let children: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = env.command();
            cmd.args(["run", "jon"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let run = env.capture(child.wait_with_output().unwrap());
        run.expect(0);
    }
    let keys = env.keys("jon");
    assert_eq!(keys.len(), 2, "{keys:?}");
    let new = env.delivered("jon");
    assert_eq!(keys[1].0, new.id);
    assert_eq!(keys[0].0, old.id);
    let plan = env.plan_text("jon");
    assert_eq!(plan.matches("created new key").count(), 1, "{plan}");
    env.assert_no_secret_leaked(&[&env.default_csv("jon")]);
}

#[test]
fn verbose_logs_carry_no_secret() {
    let env = moto_env!();
    planned(&env, "kit", &["--deliver", "file:{user}-key.csv"]);
    let run = env.run(&["-vv", "run", "kit"]);
    run.expect(0);
    let csv = env.dir.path().join("kit-key.csv");
    let new = crate::harness::read_csv(&csv);
    env.remember_secret(&new.secret);
    assert_eq!(
        env.use_key(&new),
        format!("arn:aws:iam::{ACCOUNT}:user/kit")
    );
    // JSON output names the key but never the secret.
    let run = env.run(&["--output", "json", "run", "kit"]);
    run.expect(0);
    let result = &run.json()["results"][0];
    assert_eq!(result["user"], "kit");
    assert_eq!(result["state"], "waiting");
    assert_eq!(result["phase"], "wait_for_adoption");
    let next = result["next_command"].as_str().unwrap();
    assert!(
        next.starts_with("iam-rotate ") && next.ends_with(" run kit"),
        "{next}"
    );
    assert_eq!(result["actions"], serde_json::json!([]), "nothing was due");
    let history = env.plan_text("kit");
    assert!(history.contains("kind: created_key"), "{history}");
    assert!(result["waiting_until"].is_string(), "{result}");
    env.assert_no_secret_leaked(&[&csv]);
}

#[test]
fn the_example_plan_in_plans_readme_loads() {
    // No AWS needed: `show` on a path reads the file alone.
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/README.md");
    let text = std::fs::read_to_string(readme).unwrap();
    let start = text.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + text[start..].find("```").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans").join(ACCOUNT).join("alice.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &text[start..end]).unwrap();
    let out = crate::harness::bare_command()
        .args(["show", path.to_str().unwrap()])
        .env("IAM_ROTATE_NOW", at(0.0))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("alice") && stdout.contains("wait_for_adoption"),
        "{stdout}"
    );
}

#[test]
fn demo_runs_every_phase_without_aws() {
    // No credentials, no endpoint: the demo must not reach for AWS.
    let out = crate::harness::bare_command()
        .arg("demo")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for phase in [
        "wait_for_adoption",
        "check_last_used",
        "set old key",
        "verify",
        "deleted old key",
        "BLOCKED",
        "rollback (step 5 → 2): reactivated old key",
        "back to wait_for_adoption",
        "carol: deleted old key",
        "OVERDUE",
        "notice to webhook:",
        "\"event\":\"overdue\",\"user\":\"dave\"",
        "done",
    ] {
        assert!(
            stdout.contains(phase),
            "demo never shows {phase}:\n{stdout}"
        );
    }
}

#[test]
fn the_command_line_contract_holds() {
    // DESIGN §5: programs outside this repository drive these names.
    let contract: &[(&str, &[&str])] = &[
        (
            "",
            &[
                "--plans-dir",
                "--output",
                "--profile",
                "--region",
                "--endpoint-url",
                "--verbose",
                "--quiet",
                "--lease",
                "IAM_ROTATE_PLANS_DIR",
            ],
        ),
        (
            "plan",
            &[
                "--all",
                "--older-than",
                "--deliver",
                "--adoption-wait",
                "--quiet-period",
                "--allow-short-quiet-period",
                "--verify-period",
                "--policy",
            ],
        ),
        (
            "run",
            &["--all", "--concurrency", "--dry-run", "--retry-blocked"],
        ),
        ("status", &["[USER]...", "--needs-attention"]),
        ("show", &["<USER>"]),
        ("rollback", &["--abort", "--delete-new"]),
        ("report", &["--older-than"]),
        ("demo", &[]),
        ("unlock", &["<USER>", "--force", "--account", "--lease"]),
        ("self-rotate", &["--delete-now"]),
    ];
    for (command, flags) in contract {
        let mut cmd = crate::harness::bare_command();
        if !command.is_empty() {
            cmd.arg(command);
        }
        let out = cmd.arg("--help").output().unwrap();
        assert!(out.status.success(), "{command} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in *flags {
            assert!(
                help.contains(flag),
                "`{command} --help` lacks {flag}:\n{help}"
            );
        }
    }
    // Exit code 2 for usage errors.
    let out = crate::harness::bare_command()
        .args(["run", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
