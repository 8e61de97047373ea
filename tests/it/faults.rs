//! Under injected faults — throttling beyond a rate limit, 5xx, resets,
//! delays, and CreateAccessKey answers lost after IAM made the key —
//! repeated runs end
//! with every user holding its old key plus exactly one new key, the plan
//! naming it, its secret delivered and working, and no orphan left.

use std::time::Duration;

use crate::harness::{Env, Key, ACCOUNT};
use crate::moto_env;
use crate::proxy::Faults;

/// Runs `args` until no plan is left in create_second_key, at most `tries`
/// times; returns how many runs it took.
fn run_until_created(env: &Env, users: &[String], args: &[&str], tries: usize) -> usize {
    for attempt in 1..=tries {
        env.run(args);
        if users
            .iter()
            .all(|u| env.plan_yaml(u)["phase"] == "wait_for_adoption")
        {
            return attempt;
        }
    }
    let stuck: Vec<_> = users
        .iter()
        .filter(|u| env.plan_yaml(u)["phase"] != "wait_for_adoption")
        .map(|u| format!("{u}: {}", env.plan_text(u)))
        .collect();
    panic!("not created after {tries} runs:\n{}", stuck.join("\n"));
}

/// The end state every fault scenario must reach.
pub fn assert_one_new_key_each(env: &Env, users: &[String], old: &[Key]) {
    for (user, old) in users.iter().zip(old) {
        let keys = env.keys(user);
        let plan = env.plan_yaml(user);
        let new_id = plan["new_key"]["id"].as_str().unwrap().to_string();
        assert_eq!(
            keys,
            vec![
                (old.id.clone(), "Active".into()),
                (new_id.clone(), "Active".into())
            ],
            "{user}: exactly the old key and the plan's new key"
        );
        let delivered = env.delivered(user);
        assert_eq!(
            delivered.id, new_id,
            "{user}: the delivered key is the plan's"
        );
        assert_eq!(
            env.use_key(&delivered),
            format!("arn:aws:iam::{ACCOUNT}:user/{user}")
        );
        let text = env.plan_text(user);
        // The new key entered the plan once: created and recorded, or found
        // delivered after a crash between the two.
        let entered =
            text.matches("created new key").count() + text.matches("already delivered").count();
        assert_eq!(entered, 1, "{user}: {text}");
        assert_eq!(
            text.matches("to: wait_for_adoption").count(),
            1,
            "{user}: {text}"
        );
    }
}

#[test]
fn faults_never_lose_or_double_a_key() {
    let env = moto_env!();
    let users: Vec<String> = (0..100).map(|i| format!("f{i:03}")).collect();
    let mut old = Vec::new();
    for user in &users {
        old.push(env.user(user, 1).remove(0));
    }
    env.run(&["plan", "--all"]).expect(0);

    env.proxy.set_faults(Faults {
        // IAM throttles by rate, as the proxy's token bucket does.
        rate_limit: Some(30.0),
        server_error: 0.08,
        reset: 0.05,
        delay: 0.05,
        delay_by: Duration::from_millis(300),
        lose_create: 0.4,
        seed: 7,
        ..Faults::default()
    });
    let runs = run_until_created(&env, &users, &["run", "--all"], 30);
    let injected = env.proxy.injected();
    eprintln!("faults injected: {injected:?}; runs needed: {runs}");
    for kind in ["rate_limited", "server_error", "reset", "lose_create"] {
        assert!(
            injected.get(kind).is_some_and(|n| *n > 0),
            "no {kind} injected: {injected:?}"
        );
    }
    env.proxy.set_faults(Faults::default());
    assert_one_new_key_each(&env, &users, &old);
    // Orphans were found and deleted, each recorded once.
    let orphans: usize = users
        .iter()
        .map(|u| env.plan_text(u).matches("deleted orphan key").count())
        .sum();
    eprintln!("orphans deleted: {orphans}");
    let allowed: Vec<_> = users.iter().map(|u| env.default_csv(u)).collect();
    let allowed: Vec<&std::path::Path> = allowed.iter().map(|p| p.as_path()).collect();
    env.assert_no_secret_leaked(&allowed);
}
