//! `-v` logs one line per AWS request (service, operation, outcome,
//! duration), `-vv` each attempt; `--log-format json` makes those lines
//! JSON objects; no ANSI escapes off a terminal or with `NO_COLOR`; and
//! never a secret.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{Env, Run};
use crate::moto_env;
use crate::proxy::Faults;

/// One request-log line in text form: `… INFO iam ListAccessKeys ok 12ms`.
#[derive(Debug)]
struct Request {
    service: String,
    operation: String,
    outcome: String,
    millis: u64,
}

fn requests(run: &Run) -> Vec<Request> {
    run.stderr
        .lines()
        .filter_map(|line| {
            let rest = line.split_once(" INFO ")?.1;
            let words: Vec<&str> = rest.split_whitespace().collect();
            let millis = words.last()?.strip_suffix("ms")?.parse().ok()?;
            (words.len() >= 4).then(|| Request {
                service: words[0].into(),
                operation: words[1].into(),
                outcome: words[2..words.len() - 1].join(" "),
                millis,
            })
        })
        .collect()
}

/// Requests that reached moto during `f`, by action.
fn forwarded_during(env: &Env, f: impl FnOnce() -> Run) -> (Run, BTreeMap<String, usize>) {
    let before = env.proxy.forwarded();
    let run = f();
    let mut delta = env.proxy.forwarded();
    for (action, n) in before {
        *delta.entry(action).or_default() -= n;
    }
    delta.retain(|_, n| *n > 0);
    (run, delta)
}

fn by_operation(requests: &[Request]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in requests {
        *counts.entry(r.operation.clone()).or_default() += 1;
    }
    counts
}

#[test]
fn verbose_logs_one_line_per_aws_request_and_no_secret() {
    let env = moto_env!();
    env.user("alice", 1);
    env.run(&["plan", "alice"]).expect(0);

    let (run, forwarded) = forwarded_during(&env, || env.run(&["-v", "run", "alice"]));
    run.expect(0);
    let logged = requests(&run);
    assert_eq!(by_operation(&logged), forwarded, "{}", run.stderr);
    for op in ["GetCallerIdentity", "ListAccessKeys", "CreateAccessKey"] {
        assert!(
            logged
                .iter()
                .any(|r| r.operation == op && r.outcome == "ok"),
            "no {op} ok in:\n{}",
            run.stderr
        );
    }
    for r in &logged {
        let service = if r.operation == "GetCallerIdentity" {
            "sts"
        } else {
            "iam"
        };
        assert_eq!(r.service, service, "{r:?}");
        assert!(r.millis < 60_000, "{r:?}");
    }
    assert!(!run.stderr.contains("\x1b["), "NO_COLOR: {}", run.stderr);

    // Once the adoption wait is over, the run reads the old key's last use.
    let (run, forwarded) =
        forwarded_during(&env, || env.run_at(Some(8.0), &["-v", "run", "alice"]));
    run.expect(0);
    let logged = requests(&run);
    assert_eq!(by_operation(&logged), forwarded, "{}", run.stderr);
    assert!(
        logged.iter().any(|r| r.operation == "GetAccessKeyLastUsed"),
        "{}",
        run.stderr
    );

    // Without -v, no request lines.
    let quiet = env.run_at(Some(8.0), &["run", "alice"]);
    assert!(requests(&quiet).is_empty(), "{}", quiet.stderr);

    env.delivered("alice");
    let csv = env.default_csv("alice");
    env.assert_no_secret_leaked(&[csv.as_path()]);
}

#[test]
fn failed_requests_log_their_error_code() {
    let env = moto_env!();
    // A plan for a user IAM does not have: ListAccessKeys says NoSuchEntity.
    env.user("gone", 1);
    env.run(&["plan", "gone"]).expect(0);
    env.block_on(async {
        let iam = env.iam();
        for key in iam
            .list_access_keys()
            .user_name("gone")
            .send()
            .await
            .unwrap()
            .access_key_metadata()
        {
            iam.delete_access_key()
                .user_name("gone")
                .access_key_id(key.access_key_id().unwrap())
                .send()
                .await
                .unwrap();
        }
        iam.delete_user().user_name("gone").send().await.unwrap();
    });
    let run = env.run(&["-v", "run", "gone"]);
    let logged = requests(&run);
    assert!(
        logged
            .iter()
            .any(|r| r.service == "iam" && r.outcome == "error NoSuchEntity"),
        "{}",
        run.stderr
    );
}

#[test]
fn json_log_lines_carry_operation_outcome_and_duration() {
    let env = moto_env!();
    env.user("bob", 1);
    env.run(&["plan", "bob"]).expect(0);
    let (run, forwarded) = forwarded_during(&env, || {
        env.run(&["--log-format", "json", "-v", "run", "bob"])
    });
    run.expect(0);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in run.stderr.lines().filter(|l| l.starts_with('{')) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(event["level"], "INFO", "{line}");
        let operation = event["operation"].as_str().expect(line);
        assert!(event["service"].is_string(), "{line}");
        assert_eq!(event["outcome"], "ok", "{line}");
        assert!(event["duration_ms"].is_u64(), "{line}");
        assert!(event["message"].as_str().unwrap().contains(operation));
        *counts.entry(operation.to_string()).or_default() += 1;
    }
    assert_eq!(counts, forwarded, "{}", run.stderr);
    // The environment variable does the same.
    let run = env
        .command()
        .env("IAM_ROTATE_LOG_FORMAT", "json")
        .args(["-v", "run", "bob"])
        .output()
        .unwrap();
    let run = env.capture(run);
    assert!(
        run.stderr.lines().any(|l| l.starts_with('{')),
        "{}",
        run.stderr
    );
    env.delivered("bob");
    let csv = env.default_csv("bob");
    env.assert_no_secret_leaked(&[csv.as_path()]);
}

#[test]
fn no_colour_off_a_terminal_even_without_no_color() {
    let env = moto_env!();
    env.user("cat", 1);
    env.run(&["plan", "cat"]).expect(0);
    let output = env
        .command()
        .env_remove("NO_COLOR")
        .args(["-vv", "run", "cat"])
        .output()
        .unwrap();
    let run = env.capture(output);
    run.expect(0);
    assert!(!requests(&run).is_empty(), "{}", run.stderr);
    assert!(!run.stderr.contains("\x1b["), "{:?}", run.stderr);
}

#[test]
fn very_verbose_shows_each_attempt_when_aws_throttles() {
    let env = moto_env!();
    env.user("dan", 1);
    env.run(&["plan", "dan"]).expect(0);
    env.proxy.set_faults(Faults {
        throttle: 0.5,
        seed: 3,
        delay_by: Duration::ZERO,
        ..Faults::default()
    });
    let run = env.run(&["-vv", "--max-attempts", "10", "run", "dan"]);
    env.proxy.set_faults(Faults::default());
    let injected = env.proxy.injected();
    assert!(
        injected.get("throttle").is_some_and(|n| *n > 0),
        "{injected:?}"
    );
    // Throttling alone never fails a plan: each throttled request, the
    // create included (IAM did not carry it out), is sent again at the
    // account's pace until it goes through.
    run.expect(0);
    assert!(
        run.stderr.lines().any(|l| l.contains("status 400")),
        "no throttled attempt logged:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains(" DEBUG ") && l.contains("throttled; retrying")),
        "no retry decision logged:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("iam CreateAccessKey ok")),
        "{}",
        run.stderr
    );
    // -vv never turns on wire or body logs.
    for wire in ["AccessKeyId=", "<CreateAccessKeyResult>", "SecretAccessKey"] {
        assert!(!run.stderr.contains(wire), "{wire} in:\n{}", run.stderr);
    }
    env.delivered("dan");
    let csv = env.default_csv("dan");
    env.assert_no_secret_leaked(&[csv.as_path()]);
}

#[test]
fn delivery_requests_are_logged_too() {
    let env = moto_env!();
    env.user("erin", 1);
    env.run(&["plan", "erin", "--deliver", "ssm:/iam/{account}/{user}"])
        .expect(0);
    let (run, forwarded) = forwarded_during(&env, || env.run(&["-v", "run", "erin"]));
    run.expect(0);
    let logged = requests(&run);
    assert_eq!(by_operation(&logged), forwarded, "{}", run.stderr);
    assert!(
        logged
            .iter()
            .any(|r| r.service == "ssm" && r.operation == "PutParameter" && r.outcome == "ok"),
        "{}",
        run.stderr
    );
}
