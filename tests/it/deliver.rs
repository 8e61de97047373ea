//! Secret delivery to every destination, and `self-rotate`, end to end:
//! the secret lands where the plan says, reads back, authenticates as the
//! user, and appears nowhere else.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};

use crate::harness::{at, http, read_csv, Env, Key, Run, ACCOUNT};
use crate::moto_env;
use crate::proxy::Faults;

fn arn(user: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:user/{user}")
}

/// An SDK configuration for moto, signed with `key`.
fn config(env: &Env, id: &str, secret: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&env.moto.endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            id, secret, None, None, "test",
        )))
        .build()
}

fn admin(env: &Env) -> aws_config::SdkConfig {
    config(
        env,
        "AKIAADMIN00000000000",
        "admin-test-credentials-not-secret0000000",
    )
}

fn secrets_manager(env: &Env) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&admin(env))
}

fn ssm(env: &Env) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&admin(env))
}

/// The JSON document an application keeps its key in.
fn document(key: &Key) -> String {
    serde_json::json!({"AccessKeyId": key.id, "SecretAccessKey": key.secret}).to_string()
}

/// Reads a delivered JSON document; remembers its secret for the scan.
fn from_document(env: &Env, text: &str) -> Key {
    let value: serde_json::Value = serde_json::from_str(text).expect("a JSON document");
    let key = Key {
        id: value["AccessKeyId"].as_str().expect("AccessKeyId").into(),
        secret: value["SecretAccessKey"]
            .as_str()
            .expect("SecretAccessKey")
            .into(),
    };
    env.remember_secret(&key.secret);
    key
}

fn new_key_id(env: &Env, user: &str) -> String {
    env.plan_yaml(user)["new_key"]["id"]
        .as_str()
        .expect("the plan records the new key")
        .to_string()
}

pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

pub(crate) fn write_private(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The lines of `after` that differ from `before`; both must have as many
/// lines.
fn changed_lines(before: &str, after: &str) -> Vec<String> {
    let b: Vec<&str> = before.split_inclusive('\n').collect();
    let a: Vec<&str> = after.split_inclusive('\n').collect();
    assert_eq!(a.len(), b.len(), "line count changed:\n{after}");
    a.iter()
        .zip(&b)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.to_string())
        .collect()
}

/// The key a profile holds in a credentials file; its secret is
/// remembered for the scan.
pub(crate) fn profile_key(env: &Env, file: &Path, profile: &str) -> Key {
    let text = std::fs::read_to_string(file).unwrap();
    let mut in_profile = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines() {
        if line.starts_with('[') {
            in_profile = line == format!("[{profile}]");
            continue;
        }
        if let (true, Some((k, v))) = (in_profile, line.split_once('=')) {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let key = Key {
        id: id.expect("aws_access_key_id in the profile"),
        secret: secret.expect("aws_secret_access_key in the profile"),
    };
    env.remember_secret(&key.secret);
    key
}

pub(crate) fn credentials_file(env: &Env) -> PathBuf {
    env.home().join(".aws/credentials")
}

#[test]
fn file_destination_fills_placeholders_and_refuses_a_file_others_can_read() {
    let env = moto_env!();
    let old = env.user("alice", 1).remove(0);
    let csv = env.home().join(format!("keys/{ACCOUNT}/alice.csv"));
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
    let earlier = "Access key ID,Secret access key\nAKIAEARLIER000000001,not-a-secret\n";
    std::fs::write(&csv, earlier).unwrap();
    std::fs::set_permissions(&csv, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.run(&[
        "plan",
        "alice",
        "--deliver",
        "file:~/keys/{account}/{user}.csv",
    ])
    .expect(0);

    let run = env.run(&["run", "alice"]);
    run.expect(1);
    assert!(run.text().contains("chmod 600"), "{}", run.text());
    assert_eq!(env.keys("alice"), vec![(old.id.clone(), "Active".into())]);
    assert_eq!(env.plan_yaml("alice")["phase"], "create_second_key");
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), earlier);

    std::fs::set_permissions(&csv, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.run(&["run", "alice"]).expect(0);
    let new = read_csv(&csv);
    env.remember_secret(&new.secret);
    assert_eq!(new.id, new_key_id(&env, "alice"));
    assert_eq!(mode(&csv), 0o600);
    assert_eq!(env.use_key(&new), arn("alice"));
    env.assert_no_secret_leaked(&[&csv]);
}

#[test]
fn profile_destination_changes_only_the_two_key_lines() {
    let env = moto_env!();
    let old = env.user("bob", 1).remove(0);
    let file = credentials_file(&env);
    let before = format!(
        "# Credentials for this laptop.\n\
         ; keep [default] first\n\
         [default]\n\
         aws_access_key_id = AKIAOPERATOR00000000\n\
         aws_secret_access_key = operator-test-credentials-not-secret00000\n\
         \n\
         [bob]\n\
         region = eu-west-1\n\
         aws_access_key_id={}\n\
         # the secret below is bob's\n\
         aws_secret_access_key  =  {}\n\
         output = json\n\
         \n\
         ; other tools\n\
         [other]\n\
         aws_access_key_id = AKIAOTHER00000000000\n\
         aws_secret_access_key = other-test-credentials-not-secret000000\n",
        old.id, old.secret
    );
    write_private(&file, &before);
    env.run(&["plan", "bob", "--deliver", "profile:{user}"])
        .expect(0);
    let run = env.run(&["run", "bob"]);
    run.expect(0);
    assert!(
        run.stdout.contains("secret delivered to profile:bob"),
        "{}",
        run.stdout
    );

    let after = std::fs::read_to_string(&file).unwrap();
    let new = profile_key(&env, &file, "bob");
    assert_eq!(new.id, new_key_id(&env, "bob"));
    assert_eq!(
        changed_lines(&before, &after),
        vec![
            format!("aws_access_key_id={}\n", new.id),
            format!("aws_secret_access_key  =  {}\n", new.secret),
        ]
    );
    assert_eq!(mode(&file), 0o600);
    assert_eq!(env.use_key(&new), arn("bob"));
    env.assert_no_secret_leaked(&[&file]);
}

#[test]
fn secrets_manager_destination_creates_a_secret_or_adds_a_version() {
    let env = moto_env!();
    let old = env.user("carol", 1).remove(0);
    env.user("dan", 1);
    let sm = secrets_manager(&env);
    let carol_secret = format!("iam/{ACCOUNT}/carol");
    // carol's application reads her key from a secret that exists already.
    env.block_on(
        sm.create_secret()
            .name(&carol_secret)
            .secret_string(document(&old))
            .send(),
    )
    .unwrap();
    for user in ["carol", "dan"] {
        env.run(&[
            "plan",
            user,
            "--deliver",
            "secretsmanager:iam/{account}/{user}",
        ])
        .expect(0);
        env.run(&["run", user]).expect(0);
    }

    let read = |id: &str, stage: &str| {
        let out = env
            .block_on(
                sm.get_secret_value()
                    .secret_id(id)
                    .version_stage(stage)
                    .send(),
            )
            .unwrap();
        from_document(&env, out.secret_string().unwrap())
    };
    let current = read(&carol_secret, "AWSCURRENT");
    assert_eq!(current.id, new_key_id(&env, "carol"));
    assert_eq!(env.use_key(&current), arn("carol"));
    // The old key stays at hand for a rollback.
    assert_eq!(read(&carol_secret, "AWSPREVIOUS").id, old.id);

    let dan = read(&format!("iam/{ACCOUNT}/dan"), "AWSCURRENT");
    assert_eq!(dan.id, new_key_id(&env, "dan"));
    assert_eq!(env.use_key(&dan), arn("dan"));
    env.assert_no_secret_leaked(&[]);
}

#[test]
fn ssm_destination_overwrites_a_secure_string() {
    let env = moto_env!();
    let old = env.user("erin", 1).remove(0);
    env.user("frank", 1);
    let ssm = ssm(&env);
    let erin_parameter = format!("/iam/{ACCOUNT}/erin");
    env.block_on(
        ssm.put_parameter()
            .name(&erin_parameter)
            .value(document(&old))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send(),
    )
    .unwrap();
    for user in ["erin", "frank"] {
        env.run(&["plan", user, "--deliver", "ssm:/iam/{account}/{user}"])
            .expect(0);
        env.run(&["run", user]).expect(0);
    }

    let read = |name: &str| {
        let out = env
            .block_on(ssm.get_parameter().name(name).with_decryption(true).send())
            .unwrap();
        let parameter = out.parameter().unwrap().clone();
        assert_eq!(
            parameter.r#type(),
            Some(&aws_sdk_ssm::types::ParameterType::SecureString)
        );
        (
            from_document(&env, parameter.value().unwrap()),
            parameter.version(),
        )
    };
    let (erin, version) = read(&erin_parameter);
    assert_eq!(erin.id, new_key_id(&env, "erin"));
    assert_eq!(version, 2, "overwritten, not created anew");
    assert_eq!(env.use_key(&erin), arn("erin"));
    let (frank, version) = read(&format!("/iam/{ACCOUNT}/frank"));
    assert_eq!(frank.id, new_key_id(&env, "frank"));
    assert_eq!(version, 1);
    assert_eq!(env.use_key(&frank), arn("frank"));
    env.assert_no_secret_leaked(&[]);
}

#[test]
fn stdout_destination_prints_the_key_once_and_never_into_json() {
    let env = moto_env!();
    let old = env.user("gina", 1).remove(0);
    env.run(&["plan", "gina", "--deliver", "stdout"]).expect(0);

    let run = env.run(&["--output", "json", "run", "gina"]);
    run.expect(1);
    assert!(run.text().contains("--output json"), "{}", run.text());
    assert_eq!(env.keys("gina"), vec![(old.id.clone(), "Active".into())]);

    let run = env.run(&["run", "gina"]);
    run.expect(0);
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("Access key ID,Secret access key"));
    let (id, secret) = lines.next().unwrap().split_once(',').unwrap();
    let new = Key {
        id: id.into(),
        secret: secret.into(),
    };
    assert_eq!(new.id, new_key_id(&env, "gina"));
    assert_eq!(run.stdout.matches(&new.secret).count(), 1);
    assert!(!run.stderr.contains(&new.secret));
    assert_eq!(env.use_key(&new), arn("gina"));
    // The printed secret is the chosen destination; the old one is nowhere.
    env.assert_no_secret_leaked(&[]);
    assert!(!env.plan_text("gina").contains(&new.secret));
}

#[test]
fn a_reserved_ssm_name_is_refused_before_any_key_exists() {
    let env = moto_env!();
    let old = env.user("hank", 1).remove(0);

    // `plan` refuses it outright.
    let run = env.run(&["plan", "hank", "--deliver", "ssm:/aws/{user}"]);
    run.expect(2);
    assert!(run.text().contains("reserves"), "{}", run.text());
    assert!(!env.plan_path("hank").exists());

    // A plan edited by hand to such a name: nothing is created.
    env.run(&["plan", "hank", "--deliver", "ssm:/iam/{user}"])
        .expect(0);
    let path = env.plan_path("hank");
    let text = env.plan_text("hank");
    std::fs::write(
        &path,
        text.replace("delivery: ssm:/iam/hank", "delivery: ssm:/aws/hank"),
    )
    .unwrap();
    let run = env.run(&["run", "hank"]);
    run.expect(1);
    assert!(run.text().contains("reserves"), "{}", run.text());
    assert!(run.text().contains("Nothing was created"), "{}", run.text());
    assert_eq!(env.keys("hank"), vec![(old.id.clone(), "Active".into())]);
    let plan = env.plan_yaml("hank");
    assert_eq!(plan["phase"], "create_second_key");
    assert!(plan["create_intent_at"].is_null());

    // Retryable: with the name fixed, the same plan goes on.
    std::fs::write(&path, env.plan_text("hank").replace("/aws/", "/iam/")).unwrap();
    env.run(&["run", "hank"]).expect(0);
    assert_eq!(env.plan_yaml("hank")["phase"], "wait_for_adoption");
    assert_eq!(env.keys("hank").len(), 2);
    env.assert_no_secret_leaked(&[]);
}

#[test]
fn a_write_refused_after_the_key_exists_leaves_no_key_behind() {
    let env = moto_env!();
    let old = env.user("ivy", 1).remove(0);
    // An operator who may read the secret's metadata but not write it.
    let operator = env.user("operator", 1).remove(0);
    let iam = env.iam();
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["iam:*", "sts:*", "secretsmanager:DescribeSecret"],
            "Resource": "*"
        }]
    });
    env.block_on(
        iam.put_user_policy()
            .user_name("operator")
            .policy_name("no-secret-writes")
            .policy_document(policy.to_string())
            .send(),
    )
    .unwrap();
    let as_operator = |args: &[&str]| -> Run {
        let mut cmd = env.command();
        cmd.env("AWS_ACCESS_KEY_ID", &operator.id)
            .env("AWS_SECRET_ACCESS_KEY", &operator.secret)
            .args(args);
        env.capture(cmd.output().unwrap())
    };
    let auth = |on: bool| {
        let body = if on { "0" } else { "inf" };
        http(&env.moto.endpoint, "POST", "/moto-api/reset-auth", body)
            .expect("moto answers reset-auth");
    };

    as_operator(&["plan", "ivy", "--deliver", "secretsmanager:iam/{user}"]).expect(0);
    auth(true);
    let run = as_operator(&["run", "ivy"]);
    auth(false);
    run.expect(1);
    let text = run.text();
    assert!(text.contains("CreateSecret failed"), "{text}");
    assert!(text.contains("secretsmanager:"), "{text}");
    assert!(text.contains("was deleted again"), "{text}");
    assert_eq!(env.keys("ivy"), vec![(old.id.clone(), "Active".into())]);
    let plan = env.plan_yaml("ivy");
    assert_eq!(plan["phase"], "create_second_key");
    assert!(plan["create_intent_at"].is_null());
    let describe = env.block_on(
        secrets_manager(&env)
            .describe_secret()
            .secret_id("iam/ivy")
            .send(),
    );
    assert!(describe.is_err(), "no secret was left behind");

    // Once the operator may write, the same plan goes on.
    as_operator(&["run", "ivy"]).expect(0);
    assert_eq!(env.keys("ivy").len(), 2);
    env.assert_no_secret_leaked(&[]);
}

/// A user "operator" allowed exactly `actions`; its key.
fn operator_allowed(env: &Env, actions: &[&str]) -> Key {
    let operator = env.user("operator", 1).remove(0);
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Action": actions, "Resource": "*" }]
    });
    env.block_on(
        env.iam()
            .put_user_policy()
            .user_name("operator")
            .policy_name("delivery-test")
            .policy_document(policy.to_string())
            .send(),
    )
    .unwrap();
    operator
}

/// `iam-rotate ARGS` signed with `key`.
fn run_as(env: &Env, key: &Key, args: &[&str]) -> Run {
    let mut cmd = env.command();
    cmd.env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .args(args);
    env.capture(cmd.output().unwrap())
}

/// Turns moto's authentication (and IAM policy checks) on or off.
fn moto_auth(env: &Env, on: bool) {
    let body = if on { "0" } else { "inf" };
    http(&env.moto.endpoint, "POST", "/moto-api/reset-auth", body)
        .expect("moto answers reset-auth");
}

/// The run stopped before CreateAccessKey: no key was made, and the plan
/// can simply be run again.
#[track_caller]
fn assert_stopped_before_any_key(env: &Env, user: &str, old: &Key) {
    assert!(
        !env.proxy.writes().contains_key("CreateAccessKey"),
        "{:?}",
        env.proxy.writes()
    );
    assert_eq!(env.keys(user), vec![(old.id.clone(), "Active".into())]);
    let plan = env.plan_yaml(user);
    assert_eq!(plan["phase"], "create_second_key");
    assert!(plan["create_intent_at"].is_null());
}

#[test]
fn a_secret_that_cannot_be_read_back_is_refused_before_any_key_exists() {
    let env = moto_env!();
    let old = env.user("pia", 1).remove(0);
    let sm = secrets_manager(&env);
    env.block_on(
        sm.create_secret()
            .name("iam/pia")
            .secret_string(document(&old))
            .send(),
    )
    .unwrap();
    // May write the secret, but neither read it back nor move its stages.
    let operator = operator_allowed(
        &env,
        &[
            "iam:*",
            "sts:*",
            "secretsmanager:DescribeSecret",
            "secretsmanager:PutSecretValue",
        ],
    );
    run_as(
        &env,
        &operator,
        &["plan", "pia", "--deliver", "secretsmanager:iam/{user}"],
    )
    .expect(0);

    env.proxy.reset_counts();
    moto_auth(&env, true);
    let run = run_as(&env, &operator, &["run", "pia"]);
    moto_auth(&env, false);
    run.expect(1);
    let text = run.text();
    assert!(text.contains("GetSecretValue"), "{text}");
    assert!(
        text.contains("secretsmanager:UpdateSecretVersionStage"),
        "{text}"
    );
    assert!(text.contains("Nothing was created"), "{text}");
    assert_stopped_before_any_key(&env, "pia", &old);
    assert!(!env.proxy.writes().contains_key("PutSecretValue"));
    let current = env
        .block_on(sm.get_secret_value().secret_id("iam/pia").send())
        .unwrap();
    assert_eq!(
        from_document(&env, current.secret_string().unwrap()).id,
        old.id
    );

    // With the permissions in place, the same plan goes on.
    run_as(&env, &operator, &["run", "pia"]).expect(0);
    assert_eq!(env.keys("pia").len(), 2);
    env.assert_no_secret_leaked(&[]);
}

/// Stands in for a caller without kms:Decrypt: GetParameter with
/// decryption is denied, without it allowed.
fn deny_decryption(
    action: &str,
    body: &[u8],
    _: &std::collections::BTreeMap<String, usize>,
) -> bool {
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    action == "GetParameter" && body["WithDecryption"] == true
}

#[test]
fn a_parameter_that_cannot_be_read_back_is_refused_before_any_key_exists() {
    let env = moto_env!();
    let old = env.user("quin", 1).remove(0);
    let ssm = ssm(&env);
    env.block_on(
        ssm.put_parameter()
            .name("/iam/quin")
            .value(document(&old))
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send(),
    )
    .unwrap();
    // May write the parameter but not read it.
    let operator = operator_allowed(
        &env,
        &[
            "iam:*",
            "sts:*",
            "ssm:PutParameter",
            "ssm:DescribeParameters",
        ],
    );
    run_as(
        &env,
        &operator,
        &["plan", "quin", "--deliver", "ssm:/iam/{user}"],
    )
    .expect(0);
    env.proxy.reset_counts();
    moto_auth(&env, true);
    let run = run_as(&env, &operator, &["run", "quin"]);
    moto_auth(&env, false);
    run.expect(1);
    let text = run.text();
    assert!(text.contains("GetParameter"), "{text}");
    assert!(text.contains("Nothing was created"), "{text}");
    assert_stopped_before_any_key(&env, "quin", &old);

    // May read the parameter, but not decrypt it (no kms:Decrypt).
    env.proxy.reset_counts();
    env.proxy.set_faults(Faults {
        deny: Some(deny_decryption),
        ..Faults::default()
    });
    let run = env.run(&["run", "quin"]);
    run.expect(1);
    let text = run.text();
    assert!(text.contains("GetParameter with decryption"), "{text}");
    assert!(text.contains("kms:Decrypt"), "{text}");
    assert_stopped_before_any_key(&env, "quin", &old);
    assert!(!env.proxy.writes().contains_key("PutParameter"));

    // Once it may decrypt, the same plan goes on.
    env.proxy.set_faults(Faults::default());
    env.run(&["run", "quin"]).expect(0);
    assert_eq!(env.keys("quin").len(), 2);
    env.assert_no_secret_leaked(&[]);
}

/// The KMS key DescribeParameters names for `name`.
fn parameter_key_id(env: &Env, name: &str) -> String {
    let filter = aws_sdk_ssm::types::ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(name)
        .build()
        .unwrap();
    let out = env
        .block_on(
            ssm(env)
                .describe_parameters()
                .parameter_filters(filter)
                .send(),
        )
        .unwrap();
    out.parameters()[0].key_id().expect("a KeyId").to_string()
}

/// Denies the read-back (GetParameter of the plain name after a
/// PutParameter), so the undo runs; the undo's read of an earlier version
/// (`NAME:VERSION`) goes through.
fn deny_read_back(
    action: &str,
    body: &[u8],
    forwarded: &std::collections::BTreeMap<String, usize>,
) -> bool {
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    action == "GetParameter"
        && forwarded.get("PutParameter").is_some_and(|n| *n > 0)
        && !body["Name"].as_str().unwrap_or_default().contains(':')
}

#[test]
fn ssm_overwrites_and_restores_keep_the_parameters_kms_key() {
    let env = moto_env!();
    const KMS_KEY: &str = "alias/iam-rotate-test-team-key";
    let ssm = ssm(&env);
    let mut old_keys = Vec::new();
    for user in ["rae", "sol"] {
        let old = env.user(user, 1).remove(0);
        env.block_on(
            ssm.put_parameter()
                .name(format!("/iam/{user}"))
                .value(document(&old))
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .key_id(KMS_KEY)
                .send(),
        )
        .unwrap();
        env.run(&["plan", user, "--deliver", "ssm:/iam/{user}"])
            .expect(0);
        old_keys.push(old);
    }

    // A delivery overwrites with the parameter's own KMS key.
    env.proxy.reset_counts();
    env.run(&["run", "rae"]).expect(0);
    assert_eq!(
        env.proxy.put_parameter_key_ids(),
        vec![Some(KMS_KEY.to_string())]
    );
    assert_eq!(parameter_key_id(&env, "/iam/rae"), KMS_KEY);

    // A failed read-back: the old value is put back, with the same key.
    env.proxy.reset_counts();
    env.proxy.set_faults(Faults {
        deny: Some(deny_read_back),
        ..Faults::default()
    });
    let run = env.run(&["run", "sol"]);
    env.proxy.set_faults(Faults::default());
    run.expect(1);
    assert!(run.text().contains("was put back"), "{}", run.text());
    assert_eq!(
        env.proxy.put_parameter_key_ids(),
        vec![Some(KMS_KEY.to_string()), Some(KMS_KEY.to_string())],
        "the write and the restore"
    );
    assert_eq!(parameter_key_id(&env, "/iam/sol"), KMS_KEY);
    let value = env
        .block_on(
            ssm.get_parameter()
                .name("/iam/sol")
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    let held = from_document(&env, value.parameter().unwrap().value().unwrap());
    assert_eq!(held.id, old_keys[1].id);
    assert_eq!(
        env.keys("sol"),
        vec![(old_keys[1].id.clone(), "Active".into())]
    );
    env.assert_no_secret_leaked(&[]);
}

/// `iam-rotate self-rotate ARGS` signed with the credentials file, as a
/// person at their laptop runs it.
pub(crate) fn self_rotate(
    env: &Env,
    vars: &[(&str, &str)],
    now: Option<f64>,
    args: &[&str],
) -> Run {
    let mut cmd = env.command();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    for (name, value) in vars {
        cmd.env(name, value);
    }
    if let Some(days) = now {
        cmd.env("IAM_ROTATE_NOW", at(days));
    }
    cmd.arg("self-rotate").args(args);
    env.capture(cmd.output().unwrap())
}

pub(crate) fn laptop_credentials(old: &Key, profile: &str) -> String {
    format!(
        "# my laptop\n\
         [{profile}]\n\
         region = eu-west-1\n\
         aws_access_key_id = {}\n\
         aws_secret_access_key = {}\n\
         \n\
         ; a profile for something else\n\
         [other]\n\
         aws_access_key_id = AKIAOTHER00000000000\n\
         aws_secret_access_key = other-test-credentials-not-secret000000\n",
        old.id, old.secret
    )
}

#[test]
fn self_rotate_with_delete_now_leaves_only_the_new_key() {
    let env = moto_env!();
    let old = env.user("jack", 1).remove(0);
    let file = credentials_file(&env);
    let before = laptop_credentials(&old, "default");
    write_private(&file, &before);

    let run = self_rotate(&env, &[], None, &["--delete-now"]);
    run.expect(0);
    let new = profile_key(&env, &file, "default");
    assert_ne!(new.id, old.id);
    assert_eq!(env.keys("jack"), vec![(new.id.clone(), "Active".into())]);
    assert_eq!(
        changed_lines(&before, &std::fs::read_to_string(&file).unwrap()),
        vec![
            format!("aws_access_key_id = {}\n", new.id),
            format!("aws_secret_access_key = {}\n", new.secret),
        ]
    );
    assert_eq!(env.use_key(&new), arn("jack"));

    let plan = env.plan_yaml("jack");
    assert_eq!(plan["phase"], "done");
    assert_eq!(plan["delivery"], "profile:default");
    let history = env.plan_text("jack");
    assert!(history.contains("authenticated as"), "{history}");
    assert!(history.contains("--delete-now"), "{history}");
    assert!(run.stdout.contains("done"), "{}", run.stdout);
    env.assert_no_secret_leaked(&[&file]);
}

#[test]
fn self_rotate_keeps_the_old_key_inactive_until_verify_period_passes() {
    let env = moto_env!();
    let old = env.user("kate", 1).remove(0);
    // A credentials file elsewhere, and the profile from AWS_PROFILE.
    let file = env.dir.path().join("secure/creds");
    write_private(&file, &laptop_credentials(&old, "kate-dev"));
    let file_var = file.to_str().unwrap();
    let vars = [
        ("AWS_SHARED_CREDENTIALS_FILE", file_var),
        ("AWS_PROFILE", "kate-dev"),
    ];

    self_rotate(&env, &vars, None, &[]).expect(0);
    let new = profile_key(&env, &file, "kate-dev");
    assert_eq!(
        env.keys("kate"),
        vec![
            (old.id.clone(), "Inactive".into()),
            (new.id.clone(), "Active".into())
        ]
    );
    let plan = env.plan_yaml("kate");
    assert_eq!(plan["phase"], "verify");
    assert_eq!(plan["delivery"], "profile:kate-dev");
    assert_eq!(plan["policy"]["adoption_wait"], "0s");
    assert_eq!(plan["policy"]["quiet_period"], "0s");
    assert_eq!(plan["policy"]["verify_period"], "1d");
    assert_eq!(plan["policy"]["require_new_key_use"], true);
    let text = env.plan_text("kate");
    assert!(text.contains("one consumer is that profile"), "{text}");
    // Verify compares later uses with a baseline no earlier than the
    // moment the old key went inactive.
    let time = |field: &str| {
        let text = plan["old_key"][field].as_str().expect(field);
        chrono::DateTime::parse_from_rfc3339(text).unwrap()
    };
    assert!(time("last_used_at_deactivation") >= time("deactivated_at"));

    // Again right away: it waits for verify_period and changes nothing.
    let run = self_rotate(&env, &vars, None, &[]);
    run.expect(0);
    assert!(run.text().contains("resuming"), "{}", run.text());
    assert_eq!(env.keys("kate").len(), 2);
    assert_eq!(env.plan_yaml("kate")["phase"], "verify");

    // A day and more later, the old key goes.
    self_rotate(&env, &vars, Some(1.5), &[]).expect(0);
    assert_eq!(env.keys("kate"), vec![(new.id.clone(), "Active".into())]);
    assert_eq!(env.plan_yaml("kate")["phase"], "done");
    env.assert_no_secret_leaked(&[&file]);
}

#[test]
fn self_rotate_leaves_the_old_key_active_when_the_new_one_does_not_work_in_time() {
    let env = moto_env!();
    let old = env.user("liam", 1).remove(0);
    let file = credentials_file(&env);
    write_private(&file, &laptop_credentials(&old, "default"));

    // No time at all to authenticate.
    let run = self_rotate(&env, &[], None, &["--wait", "0s"]);
    run.expect(1);
    assert!(
        run.stdout.contains("did not authenticate within 0s"),
        "{}",
        run.text()
    );
    let new = profile_key(&env, &file, "default");
    assert_eq!(
        env.keys("liam"),
        vec![
            (old.id.clone(), "Active".into()),
            (new.id.clone(), "Active".into())
        ]
    );
    let plan = env.plan_yaml("liam");
    assert_eq!(plan["phase"], "wait_for_adoption");
    assert!(plan["last_error"]
        .as_str()
        .unwrap()
        .contains("did not authenticate"));

    // Run again: it resumes with the new key from the profile.
    self_rotate(&env, &[], None, &[]).expect(0);
    assert_eq!(env.plan_yaml("liam")["phase"], "verify");
    assert_eq!(
        env.keys("liam"),
        vec![
            (old.id.clone(), "Inactive".into()),
            (new.id.clone(), "Active".into())
        ]
    );
    env.assert_no_secret_leaked(&[&file]);
}

#[test]
fn self_rotate_refuses_credentials_it_would_not_rotate() {
    let env = moto_env!();
    let old = env.user("mia", 1).remove(0);
    let file = credentials_file(&env);
    write_private(&file, &laptop_credentials(&old, "default"));

    // Keys in the environment win over the profile, and are not its key.
    let elsewhere = env.user("nora", 1).remove(0);
    let mut cmd = env.command();
    cmd.env("AWS_ACCESS_KEY_ID", &elsewhere.id)
        .env("AWS_SECRET_ACCESS_KEY", &elsewhere.secret)
        .arg("self-rotate");
    let run = env.capture(cmd.output().unwrap());
    run.expect(1);
    assert!(run.text().contains("AWS_ACCESS_KEY_ID"), "{}", run.text());
    assert!(!env.plan_path("nora").exists());

    // An assumed role's temporary credentials.
    let sts = aws_sdk_sts::Client::new(&admin(&env));
    let assumed = env
        .block_on(
            sts.assume_role()
                .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/admin"))
                .role_session_name("laptop")
                .send(),
        )
        .unwrap();
    let credentials = assumed.credentials().unwrap();
    env.remember_secret(credentials.secret_access_key());
    let mut cmd = env.command();
    cmd.env("AWS_ACCESS_KEY_ID", credentials.access_key_id())
        .env("AWS_SECRET_ACCESS_KEY", credentials.secret_access_key())
        .env("AWS_SESSION_TOKEN", credentials.session_token())
        .arg("self-rotate");
    let run = env.capture(cmd.output().unwrap());
    run.expect(1);
    assert!(run.text().contains("assumed role"), "{}", run.text());

    assert_eq!(env.keys("mia"), vec![(old.id.clone(), "Active".into())]);
    assert_eq!(env.keys("nora").len(), 1);
    assert!(!env.plan_path("mia").exists());
    env.assert_no_secret_leaked(&[&file]);
}

#[test]
fn self_rotate_leaves_a_plan_of_another_kind_alone() {
    let env = moto_env!();
    let old = env.user("owen", 1).remove(0);
    let file = credentials_file(&env);
    write_private(&file, &laptop_credentials(&old, "default"));
    env.run(&["plan", "owen"]).expect(0);
    let plan_before = env.plan_text("owen");

    let run = self_rotate(&env, &[], None, &[]);
    run.expect(1);
    assert!(
        run.text()
            .contains("already has an unfinished rotation plan"),
        "{}",
        run.text()
    );
    assert!(run.text().contains("iam-rotate run owen"), "{}", run.text());
    assert_eq!(env.plan_text("owen"), plan_before);
    assert_eq!(env.keys("owen"), vec![(old.id.clone(), "Active".into())]);
    env.assert_no_secret_leaked(&[&file]);
}
