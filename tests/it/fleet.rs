//! Fleet scale against moto: `plan --all`, a concurrent `run --all`,
//! `report`, and a second account reached through `--role-arn`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};

use crate::harness::{Env, Key, Run, ACCOUNT};
use crate::moto_env;

/// Users with one key old enough to rotate.
const OLD_USERS: usize = 200;
/// Users whose only key is younger than `--older-than`.
const YOUNG_USERS: usize = 10;

fn old_user(i: usize) -> String {
    format!("app-{i:03}")
}

fn young_user(i: usize) -> String {
    format!("new-{i:02}")
}

/// Creates each user with `keys` access keys, several users at once.
fn create_users(env: &Env, names: &[String], keys: usize) -> BTreeMap<String, Vec<Key>> {
    let iam = env.iam();
    env.block_on(async {
        stream::iter(names)
            .map(|name| {
                let iam = iam.clone();
                async move {
                    iam.create_user().user_name(name).send().await.unwrap();
                    let mut made = Vec::new();
                    for _ in 0..keys {
                        made.push(env.create_key_with(&iam, name).await);
                    }
                    (name.clone(), made)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await
    })
}

/// Every user's key ids as IAM lists them.
fn all_keys(env: &Env, users: &[String]) -> BTreeMap<String, BTreeSet<String>> {
    let iam = env.iam();
    env.block_on(async {
        stream::iter(users)
            .map(|user| {
                let iam = iam.clone();
                async move {
                    let out = iam.list_access_keys().user_name(user).send().await.unwrap();
                    let ids = out
                        .access_key_metadata()
                        .iter()
                        .filter_map(|k| k.access_key_id().map(str::to_string))
                        .collect();
                    (user.clone(), ids)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await
    })
}

/// Runs the binary with `IAM_ROTATE_NOW` at exactly `now`.
fn run_at_time(env: &Env, now: DateTime<Utc>, args: &[&str]) -> Run {
    let mut cmd = env.command();
    cmd.args(args).env(
        "IAM_ROTATE_NOW",
        now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    );
    env.capture(cmd.output().expect("run iam-rotate"))
}

/// Every plan file's bytes, by path.
fn plan_files(env: &Env) -> BTreeMap<String, Vec<u8>> {
    crate::harness::walk(&env.plans())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|row| row["user"].as_str().unwrap().to_string())
        .collect()
}

/// Progress bars and spinners draw with escape codes, carriage returns and
/// braille dots; none of them may reach a captured (non-terminal) stderr.
fn assert_plain(stderr: &str) {
    assert!(
        !stderr.contains('\x1b'),
        "escape codes in stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains('\r'),
        "carriage returns in stderr:\n{stderr}"
    );
    assert!(
        !stderr
            .chars()
            .any(|c| ('\u{2800}'..='\u{28ff}').contains(&c)),
        "spinner characters in stderr:\n{stderr}"
    );
}

#[test]
fn a_batch_of_users_is_planned_run_concurrently_and_reported() {
    let env = moto_env!();
    let old_names: Vec<String> = (0..OLD_USERS).map(old_user).collect();
    let old_keys = create_users(&env, &old_names, 1);
    let triage = create_users(&env, &["two-keys".to_string()], 2);
    create_users(&env, &["console-only".to_string()], 0);
    // Keys cannot be backdated in moto: the young keys are simply made a
    // little later, and the clock is set 90 days after the split.
    let split = Utc::now() + chrono::Duration::milliseconds(100);
    std::thread::sleep(Duration::from_millis(1500));
    let young_names: Vec<String> = (0..YOUNG_USERS).map(young_user).collect();
    create_users(&env, &young_names, 1);
    let now = split + chrono::Duration::days(90);
    let excluded = old_user(0);

    // plan --all: old keys planned, young ones skipped, two keys triaged.
    let plan_args = [
        "--output",
        "json",
        "plan",
        "--all",
        "--older-than",
        "90d",
        "--exclude",
        &excluded,
    ];
    env.proxy.reset_counts();
    let planned = run_at_time(&env, now, &plan_args);
    planned.expect(0);
    // Counted at the endpoint: one caller identity, the user listing, and
    // one key listing per user (ListUsers already gave each user's ARN).
    let calls = env.proxy.forwarded();
    assert_eq!(calls.get("GetCallerIdentity"), Some(&1), "{calls:?}");
    assert_eq!(
        calls.get("ListAccessKeys"),
        Some(&(OLD_USERS + YOUNG_USERS + 1))
    );
    assert_eq!(calls.len(), 3, "{calls:?}");
    let summary = planned.json();
    assert_eq!(summary["account"], ACCOUNT);
    let planned_users = names(&summary["planned"]);
    assert_eq!(planned_users, old_names[1..].to_vec());
    assert_eq!(names(&summary["needs_triage"]), ["two-keys"]);
    assert!(summary["needs_triage"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("two access keys"));
    let mut skipped = names(&summary["skipped"]);
    skipped.sort();
    let mut expected_skipped = young_names.clone();
    expected_skipped.push("console-only".into());
    expected_skipped.sort();
    assert_eq!(skipped, expected_skipped);
    assert_eq!(summary["excluded"], serde_json::json!([excluded]));
    let before = plan_files(&env);
    assert_eq!(before.len(), OLD_USERS - 1);

    // A second plan --all resets nothing: every file keeps its bytes.
    env.proxy.reset_counts();
    let again = run_at_time(&env, now, &plan_args);
    again.expect(0);
    // An unfinished plan is seen in its file: no key listing for its user.
    assert_eq!(
        env.proxy.forwarded().get("ListAccessKeys"),
        Some(&(YOUNG_USERS + 2))
    );
    assert!(names(&again.json()["planned"]).is_empty());
    assert_eq!(plan_files(&env), before);

    // run --all, concurrently, stderr captured (not a terminal).
    env.proxy.reset_counts();
    let run = run_at_time(&env, now, &["run", "--all", "--concurrency", "8"]);
    run.expect(0);
    // Per user exactly the guard's listing and the create; one caller
    // identity for the whole batch.
    let planned_count = OLD_USERS - 1;
    assert_eq!(
        env.proxy.forwarded(),
        BTreeMap::from([
            ("CreateAccessKey".to_string(), planned_count),
            ("GetCallerIdentity".to_string(), 1),
            ("ListAccessKeys".to_string(), planned_count),
        ])
    );
    assert_plain(&run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "{} plans: {} advanced",
            OLD_USERS - 1,
            OLD_USERS - 1
        )),
        "{}",
        run.stdout
    );

    // Every planned user holds its old key and exactly one new one, the
    // one its plan records; everyone else is untouched.
    let mut everyone: Vec<String> = old_names.clone();
    everyone.extend(young_names.iter().cloned());
    everyone.push("two-keys".into());
    everyone.push("console-only".into());
    let live = all_keys(&env, &everyone);
    for user in &planned_users {
        let old = &old_keys[user][0].id;
        let plan = env.plan_yaml(user);
        assert_eq!(plan["phase"], "wait_for_adoption", "{user}");
        let new = plan["new_key"]["id"].as_str().unwrap().to_string();
        assert_eq!(
            live[user],
            BTreeSet::from([old.clone(), new]),
            "{user} must hold its old key and one new key"
        );
    }
    assert_eq!(live[&excluded].len(), 1);
    assert_eq!(live["two-keys"].len(), 2);
    assert!(live["console-only"].is_empty());
    for user in &young_names {
        assert_eq!(live[user].len(), 1, "{user}");
    }

    // A second run --all finds nothing due: nothing is created.
    env.proxy.reset_counts();
    let rerun = run_at_time(&env, now, &["--output", "json", "run", "--all"]);
    rerun.expect(0);
    assert_eq!(
        env.proxy.forwarded(),
        BTreeMap::from([
            ("GetAccessKeyLastUsed".to_string(), 2 * planned_count),
            ("GetCallerIdentity".to_string(), 1),
            ("ListAccessKeys".to_string(), planned_count),
        ])
    );
    assert_plain(&rerun.stderr);
    let document = rerun.json();
    let results = &document["results"];
    assert_eq!(results.as_array().unwrap().len(), OLD_USERS - 1);
    assert!(results
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["state"] == "waiting"));
    assert_eq!(document["summary"]["total"], OLD_USERS - 1);
    assert_eq!(document["summary"]["counts"]["waiting"], OLD_USERS - 1);
    assert_eq!(document["summary"]["counts"]["failed"], 0);
    assert_eq!(all_keys(&env, &planned_users), {
        let mut m = BTreeMap::new();
        for user in &planned_users {
            m.insert(user.clone(), live[user].clone());
        }
        m
    });

    // report --output json: every user, every key, full ids and plan phase.
    let report = run_at_time(&env, now, &["--output", "json", "report"]);
    report.expect(0);
    let rows = report.json();
    let rows = rows.as_array().unwrap();
    let reported: BTreeMap<String, BTreeSet<String>> = rows
        .iter()
        .map(|row| {
            let keys = row["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["id"].as_str().unwrap().to_string())
                .collect();
            (row["user"].as_str().unwrap().to_string(), keys)
        })
        .collect();
    assert_eq!(reported, live);
    for row in rows {
        let user = row["user"].as_str().unwrap();
        let phase = &row["plan_phase"];
        if planned_users.iter().any(|u| u == user) {
            assert_eq!(phase, "wait_for_adoption", "{user}");
        } else {
            assert!(phase.is_null(), "{user}: {phase}");
        }
        for key in row["keys"].as_array().unwrap() {
            assert!(key["status"] == "Active", "{key}");
            assert!(key["age_days"].as_i64().unwrap() >= 89, "{key}");
        }
    }
    // The two-key user's keys are both there, for triage.
    assert_eq!(
        reported["two-keys"],
        triage["two-keys"].iter().map(|k| k.id.clone()).collect()
    );

    // The text report masks key ids.
    let text = run_at_time(
        &env,
        now,
        &["report", "--older-than", "90d", "--path-prefix", "/"],
    );
    text.expect(0);
    assert_plain(&text.stderr);
    let some_old = &old_keys[&old_user(7)][0].id;
    assert!(text.stdout.contains(&format!("{}…", &some_old[..4])));
    assert!(!text.stdout.contains(some_old.as_str()), "{}", text.stdout);
    // --older-than leaves the young users out.
    assert!(!text.stdout.contains("new-00"), "{}", text.stdout);

    // No secret anywhere but the delivered files.
    let csvs: Vec<_> = planned_users
        .iter()
        .map(|u| {
            env.delivered(u);
            env.default_csv(u)
        })
        .collect();
    let allowed: Vec<&std::path::Path> = csvs.iter().map(|p| p.as_path()).collect();
    env.assert_no_secret_leaked(&allowed);
}

/// Credentials for a role in another account, as moto hands them out.
fn assume_role(env: &Env, role_arn: &str) -> aws_sdk_iam::Client {
    let admin = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&env.moto.endpoint)
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            Credentials::new(
                "AKIAADMIN00000000000",
                "admin-test-credentials-not-secret0000000",
                None,
                None,
                "test",
            ),
        ))
        .build();
    env.block_on(async {
        let out = aws_sdk_sts::Client::new(&admin)
            .assume_role()
            .role_arn(role_arn)
            .role_session_name("test-setup")
            .send()
            .await
            .unwrap();
        let c = out.credentials().unwrap();
        let config = admin
            .into_builder()
            .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
                Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_string()),
                    None,
                    "test",
                ),
            ))
            .build();
        aws_sdk_iam::Client::new(&config)
    })
}

#[test]
fn another_account_through_role_arn_keeps_its_own_plan_folder() {
    let env = moto_env!();
    const OTHER: &str = "210987654321";
    let role = format!("arn:aws:iam::{OTHER}:role/iam-rotate");
    env.user("local", 1);
    let remote_iam = assume_role(&env, &role);
    let remote_key = env.block_on(async {
        remote_iam
            .create_user()
            .user_name("remote")
            .send()
            .await
            .unwrap();
        env.create_key_with(&remote_iam, "remote").await
    });

    let with_role = |args: &[&str]| {
        let mut all = vec!["--role-arn", role.as_str(), "--external-id", "ops-42"];
        all.extend_from_slice(args);
        env.run(&all)
    };
    let planned = with_role(&["plan", "--all"]);
    planned.expect(0);
    env.run(&["plan", "--all"]).expect(0);
    assert!(env.plans().join(OTHER).join("remote.yaml").exists());
    assert!(env.plan_path("local").exists());
    assert!(!env.plans().join(OTHER).join("local.yaml").exists());

    // status reads folders alone: every account, or the one named.
    let all = env.run(&["--output", "json", "status", "--all-accounts"]);
    all.expect(0);
    let accounts: BTreeSet<String> = all
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["account"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(accounts, BTreeSet::from([ACCOUNT.into(), OTHER.into()]));
    let text = env.run(&["status", "--all-accounts"]);
    text.expect(0);
    assert!(text.stdout.contains(OTHER) && text.stdout.contains(ACCOUNT));
    let one = env.run(&["--output", "json", "status", "--account", OTHER]);
    one.expect(0);
    assert_eq!(names(&one.json()), ["remote"]);

    // run --all with the role works in the other account only.
    with_role(&["run", "--all"]).expect(0);
    let remote_keys = env.block_on(async {
        remote_iam
            .list_access_keys()
            .user_name("remote")
            .send()
            .await
            .unwrap()
            .access_key_metadata()
            .len()
    });
    assert_eq!(remote_keys, 2);
    assert_eq!(env.keys("local").len(), 1);
    let plan: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(env.plans().join(OTHER).join("remote.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(plan["phase"], "wait_for_adoption");
    assert_eq!(plan["old_key"]["id"].as_str(), Some(remote_key.id.as_str()));
    assert!(plan["history"][1]["actor"]
        .as_str()
        .unwrap()
        .contains(":assumed-role/iam-rotate/iam-rotate"));
}
