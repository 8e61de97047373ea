//! Unattended runs: `--deadline` stops taking plans and leaves the rest
//! untouched (exit 1), SIGTERM releases every lease before exiting, and a
//! plan still running when the 20 s grace ends is cancelled whole.

use std::time::{Duration, Instant};

use crate::s3_plans::{Bucket, PLANS};

use crate::harness::{Env, Run};
use crate::moto_env;
use crate::proxy::Faults;

/// Starts iam-rotate with `args`, waits (at most 30 s) until `ready` holds
/// (`what` says what it waits for), sends it SIGTERM, and returns its run
/// and how long it took to exit after the signal.
fn sigterm_once_ready(
    env: &Env,
    args: &[&str],
    ready: impl Fn() -> bool,
    what: &str,
) -> (Run, Duration) {
    let runner = env.spawn_until(args, ready, Duration::from_secs(30), what);
    // SAFETY: kill(2) on the child this test spawned.
    assert_eq!(
        unsafe { libc::kill(runner.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let stopped = Instant::now();
    let run = env.capture(runner.wait_with_output().unwrap());
    (run, stopped.elapsed())
}

/// Every AWS answer this late: a plan's first step takes a few seconds.
fn slow() -> Faults {
    Faults {
        delay: 1.0,
        delay_by: Duration::from_millis(250),
        ..Faults::default()
    }
}

#[test]
fn a_deadline_leaves_the_plans_not_started_untouched_and_exits_1() {
    let env = moto_env!();
    let users: Vec<String> = (0..12).map(|n| format!("svc-{n:02}")).collect();
    for user in &users {
        env.user(user, 1);
    }
    env.run(&["plan", "--all"]).expect(0);
    env.proxy.set_faults(slow());
    let run = env.run(&[
        "--deadline",
        "2s",
        "run",
        "--all",
        "--concurrency",
        "2",
        "--output",
        "json",
    ]);
    run.expect(1);
    let document = run.json();
    let not_run = document["summary"]["counts"]["not_run"].as_u64().unwrap();
    let advanced = document["summary"]["counts"]["advanced"].as_u64().unwrap();
    assert!(not_run > 0, "{document}");
    assert!(advanced > 0, "{document}");
    assert_eq!(not_run + advanced, 12, "{document}");
    for result in document["results"].as_array().unwrap() {
        let user = result["user"].as_str().unwrap();
        let plan = env.plan_yaml(user);
        match result["state"].as_str().unwrap() {
            "not_run" => {
                assert!(result["reason"].as_str().unwrap().contains("--deadline 2s"));
                // Untouched: no intent, no key, one key in IAM.
                assert_eq!(plan["phase"], "create_second_key");
                assert!(plan["create_intent_at"].is_null(), "{user}");
                assert_eq!(env.keys(user).len(), 1, "{user}");
            }
            _ => {
                // Finished its step: the new key made and recorded.
                assert_eq!(plan["phase"], "wait_for_adoption", "{user}");
                assert_eq!(env.keys(user).len(), 2, "{user}");
            }
        }
    }
    assert!(run.stderr.contains("not run"), "{}", run.stderr);
    env.assert_no_secret_leaked(&[]);
}

#[test]
fn sigterm_stops_a_run_and_leaves_no_lease_behind() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    let objects = || bucket.keys();
    for n in 0..10 {
        env.user(&format!("app-{n}"), 1);
    }
    env.run(&["--plans-dir", PLANS, "plan", "--all"]).expect(0);
    env.proxy.set_faults(slow());
    let (run, waited) = sigterm_once_ready(
        &env,
        &[
            "--plans-dir",
            PLANS,
            "run",
            "--all",
            "--concurrency",
            "3",
            "--output",
            "json",
        ],
        || objects().iter().any(|k| k.ends_with(".lock")),
        "no lease was ever taken",
    );
    run.expect(1);
    assert!(waited < Duration::from_secs(25), "within the grace");
    let leases: Vec<String> = objects()
        .into_iter()
        .filter(|k| k.ends_with(".lock"))
        .collect();
    assert_eq!(leases, Vec::<String>::new(), "every lease released");
    let document = run.json();
    assert!(
        document["summary"]["counts"]["not_run"].as_u64().unwrap() > 0,
        "{document}"
    );
    for result in document["results"].as_array().unwrap() {
        if result["state"] == "not_run" {
            assert!(
                result["reason"].as_str().unwrap().contains("SIGTERM"),
                "{result}"
            );
        }
    }
}

/// A plan still in flight when the grace runs out is cancelled: its lease
/// is released, its plan file holds the create intent and nothing half
/// done, and the next run takes care of the key IAM made whose secret
/// never arrived.
#[test]
fn a_plan_still_running_when_the_grace_ends_is_cancelled_and_the_next_run_recovers() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    let user = "stuck";
    env.user(user, 1);
    let old_key = env.keys(user)[0].0.clone();
    env.run(&["--plans-dir", PLANS, "plan", user]).expect(0);
    // IAM makes the new key, and its answer hangs past the grace.
    env.proxy.set_faults(Faults {
        slow_create_answer: Duration::from_secs(45),
        ..Faults::default()
    });
    let (run, waited) = sigterm_once_ready(
        &env,
        &["--plans-dir", PLANS, "run", "--all", "--output", "json"],
        || env.keys(user).len() >= 2,
        "the key was never created",
    );
    run.expect(1);
    // The plan had its grace (20 s), and was cancelled then: before
    // CreateAccessKey's own 30 s timeout, and well before the answer (45 s).
    assert!(
        waited >= Duration::from_secs(19) && waited < Duration::from_secs(28),
        "stopped after {waited:?}"
    );
    let document = run.json();
    let result = &document["results"][0];
    assert_eq!(result["user"], user, "{document}");
    assert_eq!(result["state"], "failed", "{document}");
    assert!(
        result["reason"].as_str().unwrap().contains("cancelled"),
        "{result}"
    );
    let leases: Vec<String> = bucket
        .keys()
        .into_iter()
        .filter(|k| k.ends_with(".lock"))
        .collect();
    assert_eq!(leases, Vec::<String>::new(), "the lease was released");
    // The plan records the intent to create, and no new key: the one IAM
    // made has no secret anyone received.
    let show = env.run(&["--plans-dir", PLANS, "--output", "json", "show", user]);
    show.expect(0);
    let plan = show.json()["plan"].clone();
    assert_eq!(plan["phase"], "create_second_key", "{plan}");
    assert!(!plan["create_intent_at"].is_null(), "{plan}");
    assert!(plan["new_key"].is_null(), "{plan}");
    let orphan = env
        .keys(user)
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| *id != old_key)
        .unwrap();

    // The next run removes the key without a secret and makes one whose
    // secret it delivers.
    env.proxy.set_faults(Faults::default());
    env.run(&["--plans-dir", PLANS, "run", user]).expect(0);
    let plan = env
        .run(&["--plans-dir", PLANS, "--output", "json", "show", user])
        .json()["plan"]
        .clone();
    assert_eq!(plan["phase"], "wait_for_adoption", "{plan}");
    let new_key = plan["new_key"]["id"].as_str().unwrap().to_string();
    assert_ne!(new_key, orphan);
    let ids: Vec<String> = env.keys(user).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&old_key) && ids.contains(&new_key), "{ids:?}");
    env.assert_no_secret_leaked(&[]);
}
