//! `status` and `show` read plans without AWS when there is no account to
//! choose: one account folder, or `--account`.

use crate::harness::ACCOUNT;
use crate::moto_env;

#[test]
fn status_and_show_need_no_aws_for_one_account_folder() {
    let env = moto_env!();
    env.user("wes", 1);
    env.run(&["plan", "wes"]).expect(0);
    env.proxy.reset_counts();
    // No credentials and a dead endpoint: any AWS call would fail.
    let offline = |args: &[&str]| {
        let mut cmd = env.command();
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .args(args);
        env.capture(cmd.output().unwrap())
    };
    let run = offline(&["status"]);
    run.expect(0);
    assert!(run.stdout.contains("wes"), "{}", run.stdout);
    let run = offline(&["--output", "json", "show", "wes"]);
    run.expect(0);
    assert_eq!(run.json()["plan"]["user"], "wes");
    offline(&["status", "wes"]).expect(0);
    assert!(
        env.proxy.forwarded().is_empty(),
        "{:?}",
        env.proxy.forwarded()
    );

    // With a second account folder, STS must say which one is the caller's.
    let other = env.plans().join("999988887777");
    std::fs::create_dir_all(&other).unwrap();
    let run = offline(&["status"]);
    run.expect(1);
    assert!(run.text().contains("GetCallerIdentity"), "{}", run.text());
    offline(&["status", "--account", ACCOUNT]).expect(0);
    let run = env.run(&["status"]);
    run.expect(0);
    assert!(run.stdout.contains("wes"), "{}", run.stdout);
    assert_eq!(env.proxy.forwarded().get("GetCallerIdentity"), Some(&1));
}

/// `status` under a pseudo-terminal `cols` wide (`script` gives one).
fn status_on_a_terminal(env: &crate::harness::Env, cols: u16) -> String {
    let bin = env!("CARGO_BIN_EXE_iam-rotate");
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("stty cols {cols} rows 40; exec {bin} status"),
            "/dev/null",
        ])
        .env("HOME", env.home())
        .env("IAM_ROTATE_PLANS_DIR", env.plans())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tables_are_boxed_on_a_terminal_and_plain_columns_elsewhere() {
    let env = moto_env!();
    for user in ["xia", "yul"] {
        env.user(user, 1);
        env.run(&["plan", user]).expect(0);
    }
    let boxes = ['─', '│', '┌', '╞', '═'];
    let piped = env.run(&["status"]);
    piped.expect(0);
    assert!(!piped.stdout.contains(boxes), "{}", piped.stdout);
    let lines: Vec<&str> = piped.stdout.lines().collect();
    assert!(lines[0].starts_with("USER"), "{}", piped.stdout);
    let phase_at = lines[0].find("PHASE").unwrap();
    for line in &lines[1..] {
        assert_eq!(
            &line[phase_at..phase_at + 17],
            "create_second_key",
            "{line}"
        );
    }
    let forced = env.run(&["--output", "table", "status"]);
    forced.expect(0);
    assert!(forced.stdout.contains('│'), "{}", forced.stdout);

    let wide = status_on_a_terminal(&env, 80);
    assert!(wide.contains('│'), "{wide}");
    // A terminal of width 0 would squeeze every column to one character.
    let zero = status_on_a_terminal(&env, 0);
    assert!(!zero.contains(boxes), "{zero}");
    assert!(zero.contains("create_second_key"), "{zero}");
}
