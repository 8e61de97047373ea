//! The safety promises against a tired operator and a careful attacker:
//! files iam-rotate did not write, a replaced clock against real AWS,
//! destinations that move with the environment, arguments that are not
//! what they look like, and plans that cannot be plans.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::{Env, ACCOUNT};
use crate::moto_env;

fn write_private(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Plans `user` with `--deliver spec`, then runs it: the run must refuse
/// before any key exists.
fn refused_before_any_key(env: &Env, user: &str, spec: &str, mentions: &[&str]) {
    env.run(&["plan", user, "--deliver", spec]).expect(0);
    env.proxy.reset_counts();
    let run = env.run(&["run", user]);
    run.expect(1);
    for mention in mentions {
        assert!(run.text().contains(mention), "{mention}: {}", run.text());
    }
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    assert_eq!(env.keys(user).len(), 1, "no key was created");
    assert_eq!(env.plan_yaml(user)["phase"], "create_second_key");
}

#[test]
fn file_destination_never_replaces_a_file_it_did_not_write() {
    let env = moto_env!();
    let home = env.home();
    let credentials = home.join(".aws/credentials");
    let credentials_text = "[default]\naws_access_key_id = AKIAOPERATOR00000000\n\
                            aws_secret_access_key = operator-test-credentials-not-secret00000\n\
                            [ci]\nregion = eu-west-1\n";
    write_private(&credentials, credentials_text);
    let ssh_key = home.join(".ssh/id_ed25519");
    let ssh_text = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n";
    write_private(&ssh_key, ssh_text);
    let netrc = home.join(".netrc");
    let netrc_text = "machine example.com login ops password not-a-real-one\n";
    write_private(&netrc, netrc_text);
    // An access key CSV, but another user's.
    let foreign = env.dir.path().join("shared/alice.csv");
    let foreign_text = "Access key ID,Secret access key\nAKIAOTHERUSER0000001,not-a-secret\n";
    write_private(&foreign, foreign_text);
    std::os::unix::fs::chown(&foreign, Some(54321), Some(54321)).unwrap();

    for (user, spec, path, text) in [
        (
            "u1",
            "file:~/.aws/credentials",
            &credentials,
            credentials_text,
        ),
        ("u2", "file:~/.ssh/id_ed25519", &ssh_key, ssh_text),
        ("u3", "file:~/.netrc", &netrc, netrc_text),
    ] {
        env.user(user, 1);
        refused_before_any_key(&env, user, spec, &["profile:NAME", "never replaced"]);
        assert_eq!(std::fs::read_to_string(path).unwrap(), text, "{spec}");
    }
    env.user("u4", 1);
    let spec = format!("file:{}", foreign.display());
    refused_before_any_key(&env, "u4", &spec, &["another user", "choose another path"]);
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), foreign_text);

    // Its own CSV, from an earlier rotation, is replaced as before.
    env.user("u5", 1);
    let ours = env.dir.path().join("keys/u5.csv");
    write_private(
        &ours,
        "Access key ID,Secret access key\nAKIAOLDU5KEY00000001,not-a-secret\n",
    );
    env.run(&[
        "plan",
        "u5",
        "--deliver",
        &format!("file:{}", ours.display()),
    ])
    .expect(0);
    env.run(&["run", "u5"]).expect(0);
    let delivered = crate::harness::read_csv(&ours);
    env.remember_secret(&delivered.secret);
    assert_eq!(env.keys("u5").len(), 2);
    assert_eq!(
        env.plan_yaml("u5")["new_key"]["id"].as_str(),
        Some(delivered.id.as_str())
    );
    env.assert_no_secret_leaked(&[&ours]);
}

#[test]
fn a_replaced_clock_never_moves_a_real_wait() {
    let env = moto_env!();
    env.user("ann", 1);
    env.run(&["plan", "ann"]).expect(0);
    let before = env.plan_text("ann");
    let now = crate::harness::at(30.0);
    env.proxy.reset_counts();
    // Against AWS itself (no endpoint, or an amazonaws.com one), every
    // command that could write is refused before any request.
    for (endpoint, args) in [
        (None, vec!["run", "ann"]),
        (None, vec!["run", "--all"]),
        (None, vec!["plan", "ann"]),
        (None, vec!["rollback", "ann"]),
        (None, vec!["self-rotate"]),
        (Some("https://iam.amazonaws.com"), vec!["run", "ann"]),
        (
            Some("https://iam.cn-north-1.amazonaws.com.cn"),
            vec!["run", "ann"],
        ),
    ] {
        let mut cmd = env.command();
        cmd.env_remove("AWS_ENDPOINT_URL")
            .env("IAM_ROTATE_NOW", &now);
        if let Some(url) = endpoint {
            cmd.env("AWS_ENDPOINT_URL_IAM", url);
        }
        let run = env.capture(cmd.args(&args).output().unwrap());
        assert_eq!(run.code, 2, "{args:?} {endpoint:?}: {}", run.text());
        assert!(run.stderr.contains("IAM_ROTATE_NOW"), "{}", run.stderr);
        assert!(
            run.stderr.contains("unset IAM_ROTATE_NOW"),
            "{}",
            run.stderr
        );
    }
    // The flag wins over the environment, as in the SDK.
    let mut cmd = env.command();
    cmd.env("IAM_ROTATE_NOW", &now).args([
        "--endpoint-url",
        "https://iam.amazonaws.com",
        "run",
        "ann",
    ]);
    assert_eq!(env.capture(cmd.output().unwrap()).code, 2);
    assert!(
        env.proxy.forwarded().is_empty(),
        "{:?}",
        env.proxy.forwarded()
    );
    assert_eq!(env.plan_text("ann"), before);

    // Reading is fine anywhere: status of a folder needs no AWS call.
    let mut cmd = env.command();
    cmd.env_remove("AWS_ENDPOINT_URL")
        .env("IAM_ROTATE_NOW", &now)
        .args(["status", "--account", ACCOUNT]);
    let run = env.capture(cmd.output().unwrap());
    run.expect(0);
    assert!(run.stdout.contains("ann"), "{}", run.stdout);
    // Against an emulator, a rehearsal may move time (as every test does).
    env.run_at(Some(30.0), &["run", "ann"]).expect(0);
    assert_eq!(env.plan_yaml("ann")["phase"], "wait_for_adoption");
}

#[test]
fn destinations_are_pinned_when_planned() {
    let env = moto_env!();
    env.user("pia", 1);
    env.user("quin", 1);
    let planned_in = env.dir.path().join("ops");
    let elsewhere = env.dir.path().join("elsewhere");
    std::fs::create_dir_all(&planned_in).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();

    // A relative file: path is made absolute where `plan` ran.
    let mut cmd = env.command();
    cmd.current_dir(&planned_in)
        .args(["plan", "pia", "--deliver", "file:keys/{user}.csv"]);
    env.capture(cmd.output().unwrap()).expect(0);
    let pinned = planned_in.join("keys/pia.csv");
    assert_eq!(
        env.plan_yaml("pia")["delivery"].as_str(),
        Some(format!("file:{}", pinned.display()).as_str())
    );
    let mut cmd = env.command();
    cmd.current_dir(&elsewhere).args(["run", "pia"]);
    env.capture(cmd.output().unwrap()).expect(0);
    let key = crate::harness::read_csv(&pinned);
    env.remember_secret(&key.secret);
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "nothing is written into the folder the run happens in"
    );

    // profile: writes the credentials file the plan recorded, whatever
    // AWS_SHARED_CREDENTIALS_FILE says at run time.
    let planned_file = env.dir.path().join("creds/planned");
    let other_file = env.dir.path().join("creds/other");
    let mut cmd = env.command();
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", &planned_file).args([
        "plan",
        "quin",
        "--deliver",
        "profile:quin",
    ]);
    env.capture(cmd.output().unwrap()).expect(0);
    assert_eq!(
        env.plan_yaml("quin")["credentials_file"].as_str(),
        Some(planned_file.to_str().unwrap())
    );
    let mut cmd = env.command();
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", &other_file)
        .args(["run", "quin"]);
    env.capture(cmd.output().unwrap()).expect(0);
    assert!(!other_file.exists());
    let text = std::fs::read_to_string(&planned_file).unwrap();
    let new_id = env.plan_yaml("quin")["new_key"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("[quin]") && text.contains(&new_id),
        "{new_id}"
    );
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .unwrap();
    env.remember_secret(secret);

    // A plan edited to a relative path is refused, not written into the
    // current folder.
    env.user("rey", 1);
    env.run(&["plan", "rey"]).expect(0);
    let plan = env.plan_text("rey");
    let delivery = env.plan_yaml("rey")["delivery"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        env.plan_path("rey"),
        plan.replace(&delivery, "file:rey.csv"),
    )
    .unwrap();
    env.proxy.reset_counts();
    let mut cmd = env.command();
    cmd.current_dir(&elsewhere).args(["run", "rey"]);
    let run = env.capture(cmd.output().unwrap());
    run.expect(1);
    assert!(run.text().contains("absolute path"), "{}", run.text());
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    assert!(!elsewhere.join("rey.csv").exists());
    env.assert_no_secret_leaked(&[&pinned, &planned_file]);
}

#[test]
fn a_file_that_is_not_a_plan_is_neither_echoed_nor_locked() {
    let env = moto_env!();
    env.user("sam", 1);
    env.run(&["plan", "sam"]).expect(0);
    // A YAML file in the plans folder that holds a secret-looking value.
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    env.remember_secret(secret);
    let stray = env.plans().join(ACCOUNT).join("creds.yaml");
    std::fs::write(&stray, format!("aws_secret_access_key: {secret}\n")).unwrap();
    env.proxy.reset_counts();
    let run = env.run(&["run", stray.to_str().unwrap()]);
    run.expect(1);
    assert!(run.text().contains("creds.yaml, line 1"), "{}", run.text());
    assert!(
        !env.plans().join(ACCOUNT).join(".creds.yaml.lock").exists(),
        "a lock file is only made for a plan"
    );
    // `status` lists it as invalid, without its value, next to the real plan.
    let run = env.run(&["status"]);
    assert!(run.text().contains("sam"), "{}", run.text());
    assert!(run.text().contains("creds"), "{}", run.text());

    // A lock path that is a symbolic link is refused, its target untouched.
    let target = env.dir.path().join("not-a-lock");
    let lock = env.plans().join(ACCOUNT).join(".sam.yaml.lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&target, env.plans().join(ACCOUNT).join(".sam.yaml.lock")).unwrap();
    let run = env.run(&["run", "sam"]);
    run.expect(1);
    assert!(run.text().contains("symbolic link"), "{}", run.text());
    assert!(!target.exists());
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    std::fs::remove_file(&lock).unwrap();
    env.assert_no_secret_leaked(&[&stray]);
}

#[test]
fn one_bad_plan_never_takes_the_batch_down() {
    let env = moto_env!();
    for user in ["tia", "uma", "vic"] {
        env.user(user, 1);
        env.run(&["plan", user]).expect(0);
    }
    let absurd = env
        .plan_text("uma")
        .replace("verify_period: 7d", "verify_period: 100000000d");
    std::fs::write(env.plan_path("uma"), &absurd).unwrap();
    let bomb = format!(
        "{}x: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
        env.plan_text("vic")
    );
    std::fs::write(env.plan_path("vic"), &bomb).unwrap();

    let run = env.run(&["--output", "json", "status"]);
    assert!(!run.text().contains("panicked"), "{}", run.text());
    let rows = run.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(run.text().contains("verify_period"), "{}", run.text());
    assert!(run.text().contains("anchor"), "{}", run.text());

    let run = env.run(&["show", "uma"]);
    run.expect(1);
    assert!(run.text().contains("uma.yaml, line"), "{}", run.text());

    let run = env.run(&["run", "--all"]);
    run.expect(1);
    assert!(!run.text().contains("panicked"), "{}", run.text());
    assert_eq!(env.plan_yaml("tia")["phase"], "wait_for_adoption");
    assert_eq!(env.plan_text("uma"), absurd);
    assert_eq!(env.plan_text("vic"), bomb);
    assert_eq!(env.keys("uma").len(), 1);
    assert_eq!(env.keys("vic").len(), 1);
}

#[test]
fn user_names_that_look_like_flags_or_paths_are_names() {
    let env = moto_env!();
    for user in ["-svc", "reports.yaml"] {
        env.user(user, 1);
        env.run(&["plan", "--", user]).expect(0);
        let path = env.plan_path(user);
        assert!(path.exists(), "{}", path.display());
        env.run(&["run", "--", user]).expect(0);
        env.run(&["show", "--", user]).expect(0);
        env.run(&["status", "--", user]).expect(0);
        let plan: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(plan["phase"], "wait_for_adoption", "{user}");
        assert_eq!(env.keys(user).len(), 2, "{user}");
    }
    // The plan of `reports.yaml` is found by its path too, given with a `/`.
    let path = env.plan_path("reports.yaml");
    env.run(&["show", path.to_str().unwrap()]).expect(0);
}
