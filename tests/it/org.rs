//! Whole AWS Organizations (`--org`, `--accounts-file`) against moto: an
//! organisation with member accounts, users made in each through
//! AssumeRole, a closed account skipped, and an account whose role is
//! refused (by the proxy) failing alone while the others go on.

use std::sync::Mutex;

use aws_sdk_iam::config::{Credentials, SharedCredentialsProvider};

use crate::harness::{Env, ACCOUNT};
use crate::moto_env;
use crate::proxy::Faults;

/// Accounts whose AssumeRole the proxy refuses. Ids are moto's random
/// ones, so tests running at once never share one.
static REFUSED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn refuse_listed_accounts(
    action: &str,
    body: &[u8],
    _: &std::collections::BTreeMap<String, usize>,
) -> bool {
    let body = String::from_utf8_lossy(body);
    action == "AssumeRole"
        && REFUSED
            .lock()
            .unwrap()
            .iter()
            .any(|id| body.contains(id.as_str()))
}

/// The organisation: the caller's account manages it; `dev` and `prod`
/// are members with users; `old` is closed.
struct Org {
    dev: String,
    prod: String,
    old: String,
}

impl Org {
    fn create(env: &Env) -> Org {
        let admin = env.sdk_config(
            "AKIAADMIN00000000000",
            "admin-test-credentials-not-secret0000000",
        );
        let org = aws_sdk_organizations::Client::new(&admin);
        let sts = aws_sdk_sts::Client::new(&admin);
        env.block_on(async {
            org.create_organization()
                .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
                .send()
                .await
                .expect("create the organisation");
            let mut ids = Vec::new();
            for name in ["dev", "prod", "old"] {
                let made = org
                    .create_account()
                    .account_name(name)
                    .email(format!("{name}@example.com"))
                    .send()
                    .await
                    .expect("create an account");
                ids.push(
                    made.create_account_status()
                        .unwrap()
                        .account_id()
                        .unwrap()
                        .to_string(),
                );
            }
            // Users in each member account, through its role, as an
            // administrator of that account would make them.
            for (id, users) in [
                (&ids[0], ["dev-app", "dev-ci"]),
                (&ids[1], ["prod-app", "prod-ci"]),
            ] {
                let assumed = sts
                    .assume_role()
                    .role_arn(format!("arn:aws:iam::{id}:role/IamRotate"))
                    .role_session_name("setup")
                    .send()
                    .await
                    .expect("assume the member role");
                let c = assumed.credentials().unwrap();
                let config = admin
                    .clone()
                    .into_builder()
                    .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                        c.access_key_id(),
                        c.secret_access_key(),
                        Some(c.session_token().to_string()),
                        None,
                        "member",
                    )))
                    .build();
                let iam = aws_sdk_iam::Client::new(&config);
                for user in users {
                    iam.create_user().user_name(user).send().await.unwrap();
                    env.create_key_with(&iam, user).await;
                }
            }
            org.close_account()
                .account_id(&ids[2])
                .send()
                .await
                .expect("close an account");
            Org {
                dev: ids[0].clone(),
                prod: ids[1].clone(),
                old: ids[2].clone(),
            }
        })
    }
}

fn plans_of(env: &Env, account: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.plans().join(account))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".yaml") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn yaml(env: &Env, account: &str, user: &str) -> serde_yaml::Value {
    let path = env.plans().join(account).join(format!("{user}.yaml"));
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("plan")).unwrap()
}

#[test]
fn a_whole_organisation_is_planned_and_run_and_a_refused_account_fails_alone() {
    let env = moto_env!();
    let org = Org::create(&env);

    let planned = env.run(&["plan", "--all", "--org", "--output", "json"]);
    planned.expect(0);
    assert_eq!(plans_of(&env, &org.dev), ["dev-app.yaml", "dev-ci.yaml"]);
    assert_eq!(plans_of(&env, &org.prod), ["prod-app.yaml", "prod-ci.yaml"]);
    assert!(
        plans_of(&env, &org.old).is_empty(),
        "a closed account is skipped"
    );
    assert!(
        planned.stderr.contains(&format!(
            "account {} (old): skipped, it is SUSPENDED",
            org.old
        )),
        "{}",
        planned.stderr
    );
    let document = planned.json();
    let accounts: Vec<&str> = document["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"].as_str().unwrap())
        .collect();
    assert!(accounts.contains(&org.dev.as_str()) && accounts.contains(&org.prod.as_str()));
    assert!(!accounts.contains(&org.old.as_str()));
    // The management account (the caller's) is an active member too.
    assert!(accounts.contains(&ACCOUNT));

    REFUSED.lock().unwrap().push(org.prod.clone());
    env.proxy.set_faults(Faults {
        deny: Some(refuse_listed_accounts),
        ..Faults::default()
    });
    let run = env.run(&["run", "--all", "--org", "--output", "json"]);
    run.expect(1);
    let document = run.json();
    let outcome = |id: &str| {
        document["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(outcome(&org.dev)["state"], "done");
    assert_eq!(outcome(&org.prod)["state"], "failed");
    let reason = outcome(&org.prod)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains(&format!("arn:aws:iam::{}:role/IamRotate", org.prod)),
        "{reason}"
    );
    for result in document["results"].as_array().unwrap() {
        let (account, state) = (
            result["account"].as_str().unwrap(),
            result["state"].as_str().unwrap(),
        );
        if account == org.prod {
            assert_eq!(state, "failed", "{result}");
        } else {
            assert_eq!(result["phase"], "wait_for_adoption", "{result}");
            // The next command acts in the plan's own account.
            let next = result["next_command"].as_str().unwrap();
            let expected = format!(
                "--role-arn arn:aws:iam::{account}:role/IamRotate run {}",
                result["user"].as_str().unwrap()
            );
            assert!(next.ends_with(&expected), "{next}");
        }
    }
    assert_eq!(document["summary"]["counts"]["failed"], 2);
    assert!(
        run.stderr.contains(&format!("{} (prod): FAILED", org.prod)),
        "{}",
        run.stderr
    );
    // The member accounts advanced, each in its own IAM; the refused one
    // was not touched.
    for user in ["dev-app", "dev-ci"] {
        let plan = yaml(&env, &org.dev, user);
        assert_eq!(plan["phase"], "wait_for_adoption");
        let actor = plan["history"][0]["actor"].as_str().unwrap().to_string();
        assert!(
            actor.starts_with(&format!(
                "arn:aws:sts::{}:assumed-role/IamRotate/iam-rotate-",
                org.dev
            )),
            "the session name carries the run id: {actor}"
        );
    }
    for user in ["prod-app", "prod-ci"] {
        assert_eq!(yaml(&env, &org.prod, user)["phase"], "create_second_key");
    }

    // Once the role is allowed again, the next run carries prod on.
    REFUSED.lock().unwrap().retain(|id| id != &org.prod);
    env.run(&["run", "--all", "--org", "--account", &org.prod])
        .expect(0);
    for user in ["prod-app", "prod-ci"] {
        assert_eq!(yaml(&env, &org.prod, user)["phase"], "wait_for_adoption");
    }

    // status reads those accounts' folders; report reads each account's
    // IAM through its role.
    let status = env.run(&["status", "--org", "--output", "json"]);
    status.expect(0);
    let mut rows: Vec<String> = status
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["account"].as_str().unwrap(),
                r["user"].as_str().unwrap()
            )
        })
        .collect();
    rows.sort();
    let mut expected = vec![
        format!("{}/dev-app", org.dev),
        format!("{}/dev-ci", org.dev),
        format!("{}/prod-app", org.prod),
        format!("{}/prod-ci", org.prod),
    ];
    expected.sort();
    assert_eq!(rows, expected);
    let report = env.run(&["report", "--org", "--output", "json"]);
    report.expect(0);
    let report = report.json();
    let users = report["users"].as_array().unwrap();
    assert_eq!(users.len(), 4, "{report}");
    for user in users {
        assert_eq!(user["keys"].as_array().unwrap().len(), 2, "{user}");
        assert_eq!(user["plan_phase"], "wait_for_adoption", "{user}");
    }
    env.assert_no_secret_leaked(&[]);
}

#[test]
fn accounts_can_be_chosen_and_come_from_a_c7n_org_file() {
    let env = moto_env!();
    let org = Org::create(&env);
    env.run(&["plan", "--all", "--org", "--exclude-account", &org.prod])
        .expect(0);
    assert_eq!(plans_of(&env, &org.dev).len(), 2);
    assert!(plans_of(&env, &org.prod).is_empty(), "excluded");

    // A typo in --account is refused before anything is done.
    let typo = env.run(&["plan", "--all", "--org", "--account", "999999999999"]);
    typo.expect(2);
    assert!(
        typo.stderr.contains("999999999999 is not among"),
        "{}",
        typo.stderr
    );
    let alone = env.run(&["run", "--all", "--account", &org.dev]);
    alone.expect(2);

    let file = env.dir.path().join("accounts.yml");
    std::fs::write(
        &file,
        format!(
            "accounts:\n- account_id: '{}'\n  name: prod\n  regions: [us-east-1]\n  \
             role: arn:aws:iam::{}:role/IamRotate\n",
            org.prod, org.prod
        ),
    )
    .unwrap();
    let file = file.to_string_lossy().into_owned();
    env.run(&["plan", "--all", "--accounts-file", &file])
        .expect(0);
    assert_eq!(plans_of(&env, &org.prod), ["prod-app.yaml", "prod-ci.yaml"]);
    let run = env.run(&["run", "--all", "--accounts-file", &file, "--output", "json"]);
    run.expect(0);
    let document = run.json();
    let results = document["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "only the file's account");
    assert!(results.iter().all(|r| r["account"] == org.prod.as_str()));
    assert_eq!(
        yaml(&env, &org.dev, "dev-app")["phase"],
        "create_second_key"
    );

    std::fs::write(
        env.dir.path().join("bad.yml"),
        "accounts:\n- account_id: 12\n  role: x\n",
    )
    .unwrap();
    let bad = env.run(&["run", "--all", "--accounts-file", "bad.yml"]);
    bad.expect(2);
    assert!(bad.stderr.contains("bad.yml:"), "{}", bad.stderr);
}
