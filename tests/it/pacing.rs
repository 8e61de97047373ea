//! IAM's rate limit: a `run --all` against an endpoint that throttles every
//! request beyond R a second (the proxy's token bucket) finishes every user
//! in one run, with default flags; `--max-rps` keeps under a known quota;
//! a CreateAccessKey answered `Throttling` is asked again, once it went
//! through, never twice.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::harness::{Env, ACCOUNT};
use crate::moto_env;
use crate::proxy::Faults;

/// Creates `n` users named `prefix-NN` with one key each and plans them all
/// (before any rate limit is set); returns the names.
fn planned_users(env: &Env, prefix: &str, n: usize) -> Vec<String> {
    let users: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:02}")).collect();
    for user in &users {
        env.user(user, 1);
    }
    env.run(&["plan", "--all"]).expect(0);
    users
}

/// Requests turned away by the rate limit, and all requests that reached
/// the proxy.
fn throttled_and_sent(env: &Env) -> (usize, usize) {
    let throttled = env
        .proxy
        .injected()
        .get("rate_limited")
        .copied()
        .unwrap_or(0);
    let forwarded: usize = env.proxy.forwarded().values().sum();
    (throttled, forwarded + throttled)
}

#[test]
fn a_batch_at_iam_rate_limit_finishes_every_user_in_one_run() {
    let env = moto_env!();
    let users = planned_users(&env, "paced", 40);
    env.proxy.reset_counts();
    env.proxy.set_faults(Faults {
        rate_limit: Some(10.0),
        ..Faults::default()
    });
    let run = env.run(&["-v", "run", "--all"]);
    env.proxy.set_faults(Faults::default());
    run.expect(0);
    assert!(
        run.stdout.contains("40 plans: 40 advanced"),
        "{}",
        run.stdout
    );
    // -v says when the account's requests slowed down, and to what.
    assert!(
        run.stderr.contains("pacing this account's IAM requests at"),
        "no pacing logged:\n{}",
        run.stderr
    );
    for user in &users {
        assert_eq!(
            env.plan_yaml(user)["phase"],
            "wait_for_adoption",
            "{user}: {}",
            env.plan_text(user)
        );
        let keys = env.keys(user);
        assert_eq!(keys.len(), 2, "{user}: {keys:?}");
        let new_key = env.plan_yaml(user)["new_key"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(keys.iter().any(|(id, _)| *id == new_key), "{user}");
    }
    let (throttled, sent) = throttled_and_sent(&env);
    eprintln!("rate limit 10/s: {throttled} of {sent} requests throttled");
    // The run went faster than the limit at first (the bucket's burst),
    // so some throttling is expected; a controller that does not slow
    // down gets most of its requests throttled.
    assert!(throttled > 0, "the rate limit never bit: {sent} requests");
    assert!(
        throttled * 4 < sent,
        "{throttled} of {sent} requests throttled"
    );
    // Exactly one CreateAccessKey reached IAM per user.
    assert_eq!(env.proxy.writes().get("CreateAccessKey"), Some(&40));
    let allowed: Vec<_> = users.iter().map(|u| env.default_csv(u)).collect();
    let allowed: Vec<&std::path::Path> = allowed.iter().map(|p| p.as_path()).collect();
    env.assert_no_secret_leaked(&allowed);
}

#[test]
fn max_rps_keeps_a_batch_under_a_known_quota() {
    let env = moto_env!();
    planned_users(&env, "capped", 8);
    env.proxy.reset_counts();
    // A quota of 4/s with a burst of 4: 17 requests sent faster than that
    // would be throttled; at 4/s, evenly spaced, none is.
    env.proxy.set_faults(Faults {
        rate_limit: Some(4.0),
        ..Faults::default()
    });
    let mut cmd = env.command();
    cmd.env("IAM_ROTATE_MAX_RPS", "4").args(["run", "--all"]);
    let run = env.capture(cmd.output().unwrap());
    env.proxy.set_faults(Faults::default());
    run.expect(0);
    let (throttled, sent) = throttled_and_sent(&env);
    assert_eq!(sent, 17, "{:?}", env.proxy.forwarded());
    assert_eq!(throttled, 0, "throttled under the cap");
}

#[test]
fn max_rps_must_be_a_positive_rate() {
    let env = moto_env!();
    for bad in ["0", "-1", "fast", "NaN"] {
        let run = env.run(&[&format!("--max-rps={bad}"), "status"]);
        run.expect(2);
        assert!(run.stderr.contains("requests per second"), "{}", run.stderr);
    }
}

/// CreateAccessKey requests throttled so far by [`throttle_three_creates`].
static CREATES_THROTTLED: AtomicUsize = AtomicUsize::new(0);

fn throttle_three_creates(
    action: &str,
    _body: &[u8],
    _forwarded: &std::collections::BTreeMap<String, usize>,
) -> bool {
    action == "CreateAccessKey" && CREATES_THROTTLED.fetch_add(1, Ordering::SeqCst) < 3
}

#[test]
fn a_throttled_create_is_asked_again_and_makes_one_key() {
    let env = moto_env!();
    let old = env.user("tess", 1).remove(0);
    env.run(&["plan", "tess"]).expect(0);
    env.proxy.reset_counts();
    env.proxy.set_faults(Faults {
        throttle_when: Some(throttle_three_creates),
        ..Faults::default()
    });
    let run = env.run(&["run", "tess"]);
    env.proxy.set_faults(Faults::default());
    run.expect(0);
    assert_eq!(env.proxy.injected().get("throttled_when"), Some(&3));
    assert_eq!(env.proxy.writes().get("CreateAccessKey"), Some(&1));
    let plan = env.plan_yaml("tess");
    assert_eq!(plan["phase"], "wait_for_adoption");
    assert!(
        plan["create_intent_at"].is_null(),
        "{}",
        env.plan_text("tess")
    );
    let new_id = plan["new_key"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        env.keys("tess"),
        vec![(old.id, "Active".into()), (new_id.clone(), "Active".into())]
    );
    let delivered = env.delivered("tess");
    assert_eq!(delivered.id, new_id);
    assert_eq!(
        env.use_key(&delivered),
        format!("arn:aws:iam::{ACCOUNT}:user/tess")
    );
    let csv = env.default_csv("tess");
    env.assert_no_secret_leaked(&[csv.as_path()]);
}
