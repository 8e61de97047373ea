//! The safety of `self-rotate` and of `profile:` delivery: a plan made by
//! `plan` is never taken over, a credentials file others can read is never
//! written, and a plan of another account is never touched (exit 1, as for
//! `run`).

use std::os::unix::fs::PermissionsExt;

use crate::deliver::{
    credentials_file, laptop_credentials, mode, profile_key, self_rotate, write_private,
};
use crate::harness::{Env, ACCOUNT};
use crate::moto_env;

/// No request that changes anything reached moto since the last reset.
#[track_caller]
fn assert_no_writes(env: &Env) {
    let writes = env.proxy.writes();
    assert!(writes.is_empty(), "AWS writes: {writes:?}");
}

#[test]
fn self_rotate_never_takes_over_a_plan_made_by_plan() {
    let env = moto_env!();
    let old = env.user("pat", 1).remove(0);
    let file = credentials_file(&env);
    write_private(&file, &laptop_credentials(&old, "default"));

    // A normal rotation (default policy: days of waits) that delivers to
    // the very profile self-rotate would rewrite.
    env.run(&["plan", "pat", "--deliver", "profile:default"])
        .expect(0);
    env.run(&["run", "pat"]).expect(0);
    let new = profile_key(&env, &file, "default");
    env.use_key(&new);
    env.run_at(Some(8.0), &["run", "pat"]).expect(0);
    let plan = env.plan_yaml("pat");
    assert_eq!(plan["phase"], "verify");
    assert_eq!(plan["kind"], "plan");
    assert_eq!(plan["policy"]["verify_period"], "7d");
    let keys = vec![
        (old.id.clone(), "Inactive".to_string()),
        (new.id.clone(), "Active".to_string()),
    ];
    assert_eq!(env.keys("pat"), keys);

    // One second into the seven-day verify, with the new key in the
    // profile: --delete-now would delete the old key.
    let plan_before = env.plan_text("pat");
    let file_before = std::fs::read_to_string(&file).unwrap();
    env.proxy.reset_counts();
    let run = self_rotate(&env, &[], Some(8.0), &["--delete-now"]);
    run.expect(1);
    let text = run.text();
    let path = env.plan_path("pat");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("made by `iam-rotate plan`"), "{text}");
    assert!(text.contains("iam-rotate run pat"), "{text}");
    assert!(text.contains("iam-rotate rollback pat"), "{text}");
    assert!(text.contains("move the plan file away"), "{text}");
    assert_eq!(env.plan_text("pat"), plan_before);
    assert_eq!(env.keys("pat"), keys);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), file_before);
    assert_no_writes(&env);

    // A plan written before `kind:` existed is a `plan` plan too.
    let kindless = plan_before.replace("kind: plan\n", "");
    assert_ne!(kindless, plan_before);
    std::fs::write(&path, &kindless).unwrap();
    let run = self_rotate(&env, &[], Some(8.0), &[]);
    run.expect(1);
    assert!(
        run.text().contains("made by `iam-rotate plan`"),
        "{}",
        run.text()
    );
    let run = self_rotate(&env, &[], Some(8.0), &["--delete-now"]);
    run.expect(1);
    assert_eq!(env.plan_text("pat"), kindless);
    assert_eq!(env.keys("pat"), keys);
    assert_no_writes(&env);

    // What the message says to do works: `run` finishes it on its own
    // schedule.
    env.run_at(Some(15.1), &["run", "pat"]).expect(0);
    assert_eq!(env.plan_yaml("pat")["phase"], "done");
    assert_eq!(env.keys("pat"), vec![(new.id.clone(), "Active".into())]);
    env.assert_no_secret_leaked(&[&file]);
}

#[test]
fn a_credentials_file_others_can_read_is_refused_before_any_key_exists() {
    let env = moto_env!();

    // `profile:` delivery through `run`.
    let old = env.user("quinn", 1).remove(0);
    let file = credentials_file(&env);
    let before = laptop_credentials(&old, "quinn");
    write_private(&file, &before);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.run(&["plan", "quinn", "--deliver", "profile:quinn"])
        .expect(0);
    env.proxy.reset_counts();
    let run = env.run(&["run", "quinn"]);
    run.expect(1);
    let text = run.text();
    assert!(
        text.contains(&format!("`chmod 600 {}`", file.display())),
        "{text}"
    );
    assert!(text.contains("Nothing was created"), "{text}");
    assert_no_writes(&env);
    assert_eq!(env.keys("quinn"), vec![(old.id.clone(), "Active".into())]);
    let plan = env.plan_yaml("quinn");
    assert_eq!(plan["phase"], "create_second_key");
    assert!(plan["create_intent_at"].is_null());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    assert_eq!(mode(&file), 0o644);

    // Made private, the same plan goes on.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.run(&["run", "quinn"]).expect(0);
    let new = profile_key(&env, &file, "quinn");
    assert_eq!(env.plan_yaml("quinn")["new_key"]["id"], new.id.as_str());
    assert_eq!(mode(&file), 0o600);

    // self-rotate, with a file only the group can read.
    let own = env.user("rosa", 1).remove(0);
    let laptop = env.dir.path().join("laptop/credentials");
    let laptop_before = laptop_credentials(&own, "default");
    write_private(&laptop, &laptop_before);
    std::fs::set_permissions(&laptop, std::fs::Permissions::from_mode(0o640)).unwrap();
    let vars = [("AWS_SHARED_CREDENTIALS_FILE", laptop.to_str().unwrap())];
    env.proxy.reset_counts();
    let run = self_rotate(&env, &vars, None, &["--delete-now"]);
    run.expect(1);
    let text = run.text();
    assert!(
        text.contains(&format!("`chmod 600 {}`", laptop.display())),
        "{text}"
    );
    assert_no_writes(&env);
    assert_eq!(env.keys("rosa"), vec![(own.id.clone(), "Active".into())]);
    assert_eq!(env.plan_yaml("rosa")["phase"], "create_second_key");
    assert_eq!(std::fs::read_to_string(&laptop).unwrap(), laptop_before);
    assert_eq!(mode(&laptop), 0o640);

    std::fs::set_permissions(&laptop, std::fs::Permissions::from_mode(0o600)).unwrap();
    self_rotate(&env, &vars, None, &["--delete-now"]).expect(0);
    let rotated = profile_key(&env, &laptop, "default");
    assert_eq!(
        env.keys("rosa"),
        vec![(rotated.id.clone(), "Active".into())]
    );
    assert_eq!(mode(&laptop), 0o600);
    env.assert_no_secret_leaked(&[&file, &laptop]);
}

#[test]
fn self_rotate_on_a_plan_of_another_account_exits_1_and_changes_nothing() {
    let env = moto_env!();
    let old = env.user("sam", 1).remove(0);
    let file = credentials_file(&env);
    write_private(&file, &laptop_credentials(&old, "default"));
    self_rotate(&env, &[], None, &[]).expect(0);
    let new = profile_key(&env, &file, "default");
    assert_eq!(env.plan_yaml("sam")["phase"], "verify");
    let keys = vec![
        (old.id.clone(), "Inactive".to_string()),
        (new.id.clone(), "Active".to_string()),
    ];
    assert_eq!(env.keys("sam"), keys);

    // The plan now names another account than the credentials' (copied
    // between account folders by hand): refused on load, before any
    // request, with the exit code `run` gives too.
    const OTHER: &str = "999988887777";
    let path = env.plan_path("sam");
    let original = env.plan_text("sam");
    let edited = original.replace(
        &format!("account: '{ACCOUNT}'"),
        &format!("account: '{OTHER}'"),
    );
    assert_ne!(edited, original);
    std::fs::write(&path, &edited).unwrap();

    env.proxy.reset_counts();
    for args in [&[][..], &["--delete-now"][..]] {
        let run = self_rotate(&env, &[], None, args);
        run.expect(1);
        let text = run.text();
        assert!(text.contains(OTHER) && text.contains(ACCOUNT), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert_eq!(env.plan_text("sam"), edited, "{args:?}");
        assert_eq!(env.keys("sam"), keys);
    }
    self_rotate(&env, &[], None, &["--output", "json"]).expect(1);
    // `run` on the same plan ends the same way.
    env.run(&["run", "sam"]).expect(1);
    assert_eq!(env.plan_text("sam"), edited);
    assert_eq!(env.keys("sam"), keys);
    assert_no_writes(&env);
    env.assert_no_secret_leaked(&[&file]);
}

/// A resumed self-rotation reads and writes the credentials file its plan
/// pinned, never another one this environment happens to name.
#[test]
fn self_rotate_refuses_another_credentials_file_than_its_plan_s() {
    let env = moto_env!();
    let old = env.user("ned", 1).remove(0);
    let file = crate::deliver::credentials_file(&env);
    crate::deliver::write_private(&file, &crate::deliver::laptop_credentials(&old, "default"));
    crate::deliver::self_rotate(&env, &[], None, &[]).expect(0);
    let new = crate::deliver::profile_key(&env, &file, "default");
    assert_eq!(env.plan_yaml("ned")["phase"], "verify");
    // A copy of the credentials file elsewhere, named by the environment.
    let copy = env.dir.path().join("elsewhere/credentials");
    crate::deliver::write_private(&copy, &std::fs::read_to_string(&file).unwrap());
    let plan = env.plan_text("ned");
    let keys = env.keys("ned");
    env.proxy.reset_counts();
    let run = crate::deliver::self_rotate(
        &env,
        &[("AWS_SHARED_CREDENTIALS_FILE", copy.to_str().unwrap())],
        Some(2.0),
        &["--delete-now"],
    );
    run.expect(1);
    let text = run.text();
    assert!(text.contains(file.to_str().unwrap()), "{text}");
    assert!(text.contains(copy.to_str().unwrap()), "{text}");
    assert_eq!(env.plan_text("ned"), plan);
    assert_eq!(env.keys("ned"), keys);
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    env.remember_secret(&new.secret);
    env.assert_no_secret_leaked(&[&file, &copy]);
}
