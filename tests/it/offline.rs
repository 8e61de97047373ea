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
