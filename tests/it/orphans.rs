//! The key an interrupted CreateAccessKey may leave behind, end to end:
//! a key the destination holds is kept as the new key (whatever the
//! destination: Secrets Manager and SSM too), and any other key is deleted
//! only when it is provably the interrupted call's own — created within the
//! call's window and never used. Anything else blocks, naming the key, and
//! the key stays.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::harness::{Env, Key, ACCOUNT};
use crate::moto_env;
use crate::proxy::Faults;

fn arn(user: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/{user}")
}

fn mask(id: &str) -> String {
    format!("{}…{}", &id[..4], &id[id.len() - 4..])
}

fn admin_config(env: &Env) -> aws_config::SdkConfig {
    use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&env.moto.endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIAADMIN00000000000",
            "admin-test-credentials-not-secret0000000",
            None,
            None,
            "test",
        )))
        .build()
}

/// When IAM says `key_id` was created.
fn created_at(env: &Env, user: &str, key_id: &str) -> DateTime<Utc> {
    let iam = env.iam();
    let keys = env
        .block_on(iam.list_access_keys().user_name(user).send())
        .unwrap();
    let key = keys
        .access_key_metadata()
        .iter()
        .find(|k| k.access_key_id() == Some(key_id))
        .expect("the key is listed");
    DateTime::from_timestamp(key.create_date().unwrap().secs(), 0).unwrap()
}

/// Rewrites the plan's create intent, as if the interrupted call had been
/// made at `at`.
fn set_intent(env: &Env, user: &str, at: DateTime<Utc>) {
    let text = env.plan_text(user);
    let line = text
        .lines()
        .find(|l| l.starts_with("create_intent_at:"))
        .expect("a create_intent_at line");
    assert_ne!(line.trim_end(), "create_intent_at: null", "{text}");
    let edited = text.replace(
        line,
        &format!("create_intent_at: {}", at.format("%Y-%m-%dT%H:%M:%SZ")),
    );
    std::fs::write(env.plan_path(user), edited).unwrap();
}

/// Plans `user` (one key) and runs it with every CreateAccessKey answer
/// lost: IAM makes the key, the plan keeps its intent. Returns the old key
/// and the orphan's id.
fn interrupted_create(env: &Env, user: &str) -> (Key, String) {
    let old = env.user(user, 1).remove(0);
    env.run(&["plan", user]).expect(0);
    env.proxy.set_faults(Faults {
        lose_create: 1.0,
        ..Faults::default()
    });
    let run = env.run(&["run", user]);
    run.expect(1);
    assert!(run.text().contains("CreateAccessKey"), "{}", run.text());
    env.proxy.set_faults(Faults::default());
    let plan = env.plan_yaml(user);
    assert!(plan["new_key"].is_null(), "{plan:?}");
    assert!(!plan["create_intent_at"].is_null(), "{plan:?}");
    let keys = env.keys(user);
    assert_eq!(keys.len(), 2, "IAM made the key: {keys:?}");
    let orphan = keys.into_iter().find(|(id, _)| *id != old.id).unwrap().0;
    (old, orphan)
}

/// As another admin would: deletes the orphan and creates a key of their
/// own for the user.
fn replace_with_admin_key(env: &Env, user: &str, orphan: &str) -> Key {
    let iam = env.iam();
    env.block_on(async {
        iam.delete_access_key()
            .user_name(user)
            .access_key_id(orphan)
            .send()
            .await
            .unwrap();
        env.create_key_with(&iam, user).await
    })
}

#[test]
fn an_unused_orphan_inside_the_window_is_deleted_and_the_key_made_again() {
    let env = moto_env!();
    let (old, orphan) = interrupted_create(&env, "olive");
    env.proxy.reset_counts();
    let run = env.run(&["run", "olive"]);
    run.expect(0);
    let forwarded = env.proxy.forwarded();
    assert_eq!(
        forwarded.get("GetAccessKeyLastUsed"),
        Some(&1),
        "{forwarded:?}"
    );
    assert_eq!(forwarded.get("DeleteAccessKey"), Some(&1), "{forwarded:?}");
    assert_eq!(forwarded.get("CreateAccessKey"), Some(&1), "{forwarded:?}");
    let plan = env.plan_yaml("olive");
    assert_eq!(plan["phase"], "wait_for_adoption");
    let new = env.delivered("olive");
    assert_eq!(plan["new_key"]["id"].as_str(), Some(new.id.as_str()));
    assert_ne!(new.id, orphan);
    assert_eq!(
        env.keys("olive"),
        vec![(old.id, "Active".into()), (new.id.clone(), "Active".into())]
    );
    let text = env.plan_text("olive");
    assert!(
        text.contains(&format!("deleted orphan key {}", mask(&orphan)))
            && text.contains("never used"),
        "{text}"
    );
    assert_eq!(env.use_key(&new), arn("olive"));
    env.assert_no_secret_leaked(&[&env.default_csv("olive")]);
}

#[test]
fn someone_elses_key_outside_the_calls_window_blocks_and_stays() {
    let env = moto_env!();
    let (_old, orphan) = interrupted_create(&env, "otto");
    // Another admin replaced the orphan with a key of their own. The plan
    // says its create was made ten minutes before that key: well inside the
    // 15 minutes the old rule allowed, far outside the call's own window.
    let theirs = replace_with_admin_key(&env, "otto", &orphan);
    let theirs_created = created_at(&env, "otto", &theirs.id);
    set_intent(&env, "otto", theirs_created - chrono::Duration::minutes(10));
    env.proxy.reset_counts();
    let run = env.run(&["run", "otto"]);
    run.expect(3);
    let text = run.text();
    for words in [
        mask(&theirs.id).as_str(),
        "not provably",
        "after the window",
        "never used",
        "--retry-blocked otto",
    ] {
        assert!(text.contains(words), "{words:?} in\n{text}");
    }
    assert!(env.keys("otto").iter().any(|(id, _)| *id == theirs.id));
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    assert_eq!(env.plan_yaml("otto")["phase"], "blocked");

    // Created three minutes before the intent: before the window, not ours
    // either (the old rule allowed five).
    set_intent(&env, "otto", theirs_created + chrono::Duration::minutes(3));
    let run = env.run(&["run", "--retry-blocked", "otto"]);
    run.expect(3);
    assert!(run.text().contains("before the window"), "{}", run.text());
    assert!(env.keys("otto").iter().any(|(id, _)| *id == theirs.id));
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    assert_eq!(env.use_key(&theirs), arn("otto"), "their key still works");
    env.assert_no_secret_leaked(&[]);
}

#[test]
fn a_used_key_inside_the_window_blocks_and_stays() {
    let env = moto_env!();
    let (old, orphan) = interrupted_create(&env, "opal");
    // Seconds after the interrupted create, another admin replaced the
    // orphan with their own key, and an application uses it.
    let theirs = replace_with_admin_key(&env, "opal", &orphan);
    assert_eq!(env.use_key(&theirs), arn("opal"));
    env.proxy.reset_counts();
    let run = env.run(&["run", "opal"]);
    run.expect(3);
    let text = run.text();
    for words in [
        mask(&theirs.id).as_str(),
        "not provably",
        "last used",
        "sts",
    ] {
        assert!(text.contains(words), "{words:?} in\n{text}");
    }
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    assert_eq!(
        env.keys("opal"),
        vec![
            (old.id.clone(), "Active".into()),
            (theirs.id.clone(), "Active".into())
        ]
    );

    // rollback --delete-new applies the same rule: the key stays.
    let run = env.run(&["rollback", "opal", "--abort", "--delete-new"]);
    run.expect(0);
    assert!(run.text().contains("kept key"), "{}", run.text());
    assert_eq!(env.plan_yaml("opal")["phase"], "rolled_back");
    assert!(
        !env.proxy.writes().contains_key("DeleteAccessKey"),
        "{:?}",
        env.proxy.writes()
    );
    assert_eq!(
        env.keys("opal"),
        vec![
            (old.id, "Active".into()),
            (theirs.id.clone(), "Active".into())
        ]
    );
    assert_eq!(env.use_key(&theirs), arn("opal"), "their key still works");
    env.assert_no_secret_leaked(&[]);
}

/// Secrets Manager's read-back: GetSecretValue once the secret was written.
fn secret_read_back(action: &str, _body: &[u8], forwarded: &BTreeMap<String, usize>) -> bool {
    let written = ["CreateSecret", "PutSecretValue"]
        .iter()
        .map(|a| forwarded.get(*a).copied().unwrap_or(0))
        .sum::<usize>();
    action == "GetSecretValue" && written > 0
}

fn any_secret_read(action: &str, _body: &[u8], _forwarded: &BTreeMap<String, usize>) -> bool {
    action == "GetSecretValue"
}

/// SSM's read-back: GetParameter once the parameter was written.
fn parameter_read_back(action: &str, _body: &[u8], forwarded: &BTreeMap<String, usize>) -> bool {
    action == "GetParameter" && forwarded.get("PutParameter").is_some_and(|n| *n > 0)
}

fn any_parameter_read(action: &str, _body: &[u8], _forwarded: &BTreeMap<String, usize>) -> bool {
    action == "GetParameter"
}

/// `run USER` with the read-back `hold` hanging; `kill -9` once it hangs,
/// after the secret was written and before the plan records the key.
fn kill_during_read_back(env: &Env, user: &str, hold: crate::proxy::DenyRule) {
    env.proxy.set_faults(Faults {
        hold: Some(hold),
        hold_for: Duration::from_secs(30),
        ..Faults::default()
    });
    let mut child = env
        .command()
        .args(["run", user])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.proxy.injected().get("held").copied().unwrap_or(0) == 0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its read-back"
        );
        assert!(Instant::now() < deadline, "the read-back never came");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    env.proxy.set_faults(Faults::default());
    let plan = env.plan_yaml(user);
    assert!(
        plan["new_key"].is_null(),
        "the kill came too late: {plan:?}"
    );
    assert!(!plan["create_intent_at"].is_null(), "{plan:?}");
    assert_eq!(env.keys(user).len(), 2);
}

/// After the crash, a run that cannot read the destination deletes
/// nothing and fails; once it can, it adopts the delivered key.
fn assert_adopted(env: &Env, user: &str, old: &Key, delivered: &Key, deny: crate::proxy::DenyRule) {
    assert_ne!(delivered.id, old.id);
    assert!(env.keys(user).iter().any(|(id, _)| *id == delivered.id));

    env.proxy.set_faults(Faults {
        deny: Some(deny),
        ..Faults::default()
    });
    env.proxy.reset_counts();
    let run = env.run(&["run", user]);
    run.expect(1);
    let text = run.text();
    assert!(
        text.contains("could not tell") && text.contains(&mask(&delivered.id)),
        "{text}"
    );
    assert!(text.contains("AccessDenied"), "{text}");
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    let plan = env.plan_yaml(user);
    assert!(plan["new_key"].is_null() && !plan["create_intent_at"].is_null());

    env.proxy.set_faults(Faults::default());
    env.proxy.reset_counts();
    let run = env.run(&["run", user]);
    run.expect(0);
    assert!(env.proxy.writes().is_empty(), "{:?}", env.proxy.writes());
    // As docs/requests.md counts it: the listing and the destination, then
    // wait_for_adoption's own reading.
    let forwarded = env.proxy.forwarded();
    assert_eq!(forwarded.get("ListAccessKeys"), Some(&2), "{forwarded:?}");
    assert_eq!(
        forwarded.get("GetAccessKeyLastUsed"),
        Some(&2),
        "{forwarded:?}"
    );
    let plan = env.plan_yaml(user);
    assert_eq!(plan["phase"], "wait_for_adoption", "{}", run.text());
    assert_eq!(plan["new_key"]["id"].as_str(), Some(delivered.id.as_str()));
    assert!(plan["create_intent_at"].is_null());
    let text = env.plan_text(user);
    assert!(
        text.contains(&format!(
            "found new key {} already delivered",
            mask(&delivered.id)
        )),
        "{text}"
    );
    assert_eq!(
        env.keys(user),
        vec![
            (old.id.clone(), "Active".into()),
            (delivered.id.clone(), "Active".into())
        ]
    );
    assert_eq!(env.use_key(delivered), arn(user), "the delivered key works");
}

fn key_of_document(env: &Env, text: &str) -> Key {
    let value: serde_json::Value = serde_json::from_str(text).unwrap();
    let key = Key {
        id: value["AccessKeyId"].as_str().unwrap().into(),
        secret: value["SecretAccessKey"].as_str().unwrap().into(),
    };
    env.remember_secret(&key.secret);
    key
}

#[test]
fn a_key_in_secrets_manager_when_the_run_died_is_adopted_not_deleted() {
    let env = moto_env!();
    let old = env.user("sage", 1).remove(0);
    env.run(&[
        "plan",
        "sage",
        "--deliver",
        "secretsmanager:iam/{account}/{user}",
    ])
    .expect(0);
    kill_during_read_back(&env, "sage", secret_read_back);

    let sm = aws_sdk_secretsmanager::Client::new(&admin_config(&env));
    let secret_id = format!("iam/{ACCOUNT}/sage");
    let out = env
        .block_on(sm.get_secret_value().secret_id(&secret_id).send())
        .unwrap();
    let delivered = key_of_document(&env, out.secret_string().unwrap());
    assert_adopted(&env, "sage", &old, &delivered, any_secret_read);
    env.assert_no_secret_leaked(&[]);
}

#[test]
fn a_key_in_ssm_when_the_run_died_is_adopted_not_deleted() {
    let env = moto_env!();
    let old = env.user("sid", 1).remove(0);
    let ssm = aws_sdk_ssm::Client::new(&admin_config(&env));
    let name = format!("/iam/{ACCOUNT}/sid");
    // The application's parameter holds the old key until the rotation.
    let document = serde_json::json!({"AccessKeyId": old.id, "SecretAccessKey": old.secret});
    env.block_on(
        ssm.put_parameter()
            .name(&name)
            .value(document.to_string())
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send(),
    )
    .unwrap();
    env.run(&["plan", "sid", "--deliver", "ssm:/iam/{account}/{user}"])
        .expect(0);
    kill_during_read_back(&env, "sid", parameter_read_back);

    let out = env
        .block_on(ssm.get_parameter().name(&name).with_decryption(true).send())
        .unwrap();
    let delivered = key_of_document(&env, out.parameter().unwrap().value().unwrap());
    assert_adopted(&env, "sid", &old, &delivered, any_parameter_read);
    env.assert_no_secret_leaked(&[]);
}
