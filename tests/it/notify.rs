//! Notifications end to end: SNS delivery seen through an SQS queue
//! subscribed to the topic on moto, webhooks seen by a listener in the
//! test, a dead webhook that changes nothing and is retried, malformed
//! targets refused before any request, and `overdue` at most once a day.
//! Every notice received is scanned for the secrets of the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use serde_json::{json, Value};

use crate::harness::{Env, ACCOUNT};
use crate::moto_env;

/// One POST a webhook received.
#[derive(Clone, Debug)]
struct Post {
    path: String,
    content_type: String,
    body: Value,
}

/// A webhook on loopback: records every POST and answers 204.
struct Hook {
    port: u16,
    posts: Arc<Mutex<Vec<Post>>>,
    stop: Arc<AtomicBool>,
}

impl Hook {
    fn start() -> Hook {
        Hook::on(TcpListener::bind("127.0.0.1:0").expect("a loopback port"))
    }

    fn on(listener: TcpListener) -> Hook {
        let port = listener.local_addr().unwrap().port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped) = (posts.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    if let Some(post) = answer(stream) {
                        seen.lock().unwrap().push(post);
                    }
                }
            }
        });
        Hook { port, posts, stop }
    }

    fn spec(&self) -> String {
        format!("webhook:http://127.0.0.1:{}/hooks/iam-rotate", self.port)
    }

    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<String> {
        self.posts()
            .iter()
            .map(|p| p.body["event"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the listener up so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one HTTP request and answers 204; the request if it was a POST.
fn answer(stream: TcpStream) -> Option<Post> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut length = 0;
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "content-type" => content_type = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = stream;
    stream
        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut parts = request_line.split_whitespace();
    if parts.next() != Some("POST") {
        return None;
    }
    Some(Post {
        path: parts.next()?.to_string(),
        content_type,
        body: serde_json::from_slice(&body).ok()?,
    })
}

/// SNS on moto, as the account's administrator.
fn sns(env: &Env) -> aws_sdk_sns::Client {
    let config = aws_config::SdkConfig::builder()
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
    aws_sdk_sns::Client::new(&config)
}

/// moto routes a request by the service its signature is for; it does not
/// check the signature itself.
const SQS_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=AKIAADMIN00000000000/20260101/us-east-1/sqs/aws4_request, \
    SignedHeaders=host, Signature=0";

/// One SQS call on moto (its JSON protocol), answered as JSON.
fn sqs(env: &Env, operation: &str, request: Value) -> Value {
    let address = env.moto.endpoint.trim_start_matches("http://");
    let body = request.to_string();
    let mut stream = TcpStream::connect(address).expect("moto");
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: AmazonSQS.{operation}\r\nAuthorization: {SQS_AUTHORIZATION}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "SQS {operation}: {response}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("SQS {operation}: {e}: {body}"))
}

/// A topic and a queue subscribed to it with raw delivery: what is
/// published arrives in the queue as it was sent.
fn topic_with_queue(env: &Env) -> (String, String) {
    topic_with_queue_named(env, "key-rotation", "rotation-notices")
}

/// The same with names of one's choice: a `.fifo` pair is a FIFO topic
/// (without content-based deduplication) and a FIFO queue.
fn topic_with_queue_named(env: &Env, topic: &str, queue: &str) -> (String, String) {
    let fifo = topic.ends_with(".fifo");
    let attributes = if fifo {
        json!({"FifoQueue": "true"})
    } else {
        json!({})
    };
    let answer = sqs(
        env,
        "CreateQueue",
        json!({"QueueName": queue, "Attributes": attributes}),
    );
    let queue_url = answer["QueueUrl"].as_str().unwrap().to_string();
    let sns = sns(env);
    let topic_arn = env.block_on(async {
        let mut create = sns.create_topic().name(topic);
        if fifo {
            create = create.attributes("FifoTopic", "true");
        }
        let topic = create.send().await.unwrap();
        let topic_arn = topic.topic_arn().unwrap().to_string();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(format!("arn:aws:sqs:us-east-1:{ACCOUNT}:{queue}"))
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .unwrap();
        topic_arn
    });
    (topic_arn, queue_url)
}

/// Every message waiting in the queue, as JSON, removed from it.
fn queued(env: &Env, queue_url: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    loop {
        let answer = sqs(
            env,
            "ReceiveMessage",
            json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 300}),
        );
        let Some(messages) = answer["Messages"].as_array().filter(|m| !m.is_empty()) else {
            return bodies;
        };
        for message in messages {
            let body = message["Body"].as_str().unwrap();
            bodies.push(serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}")));
        }
    }
}

/// Keeps every notice in the test's folder, where the secret scan reads.
fn keep_for_scan(env: &Env, notices: &[Value]) {
    let path = env.dir.path().join("notices.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for notice in notices {
        writeln!(file, "{notice}").unwrap();
    }
}

/// Plans alice with zero waits, so that one run after the new key's first
/// use takes her to `done`.
fn planned_fast(env: &Env, extra: &[&str]) {
    env.user("alice", 1);
    let mut args = vec![
        "plan",
        "alice",
        "--adoption-wait",
        "0s",
        "--quiet-period",
        "0s",
        "--allow-short-quiet-period",
        "--verify-period",
        "0s",
    ];
    args.extend_from_slice(extra);
    env.run(&args).expect(0);
}

/// The plan on disk validates against `iam-rotate schema`.
#[track_caller]
fn assert_valid_plan(env: &Env) {
    let schema = env.run(&["schema"]).expect(0).json();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let text = env.plan_text("alice");
    let plan: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let plan = serde_json::to_value(plan).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&plan)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{text}");
}

fn assert_notice(notice: &Value, event: &str, phase: &str, env: &Env) {
    let mut fields: Vec<&str> = notice
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "account",
            "at",
            "event",
            "next_command",
            "phase",
            "plan",
            "reason",
            "user"
        ],
        "{notice}"
    );
    assert_eq!(notice["event"], event, "{notice}");
    assert_eq!(notice["phase"], phase, "{notice}");
    assert_eq!(notice["user"], "alice");
    assert_eq!(notice["account"], ACCOUNT);
    assert_eq!(
        notice["plan"].as_str().map(Path::new),
        Some(env.plan_path("alice").as_path())
    );
    assert!(
        notice["at"]
            .as_str()
            .is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok()),
        "{notice}"
    );
    assert!(!notice["reason"].as_str().unwrap_or_default().is_empty());
}

#[test]
fn a_finished_rotation_is_announced_on_sns_and_to_the_plan_s_owners() {
    let env = moto_env!();
    let (topic_arn, queue_url) = topic_with_queue(&env);
    let topic = format!("sns:{topic_arn}");
    let owners = Hook::start();
    planned_fast(&env, &["--notify", &owners.spec()]);
    assert_eq!(
        env.plan_yaml("alice")["notify"],
        serde_yaml::to_value([owners.spec()]).unwrap()
    );

    // Creating the key is no event: nobody is told.
    env.run(&["--notify", &topic, "run", "alice"]).expect(0);
    let new = env.delivered("alice");
    assert!(queued(&env, &queue_url).is_empty());
    assert!(owners.posts().is_empty());

    env.use_key(&new);
    let run = env.run(&["--notify", &topic, "run", "alice"]);
    run.expect(0);
    assert_eq!(env.plan_yaml("alice")["phase"], "done", "{}", run.text());

    let published = queued(&env, &queue_url);
    assert_eq!(published.len(), 1, "{published:?}");
    assert_notice(&published[0], "done", "done", &env);
    assert_eq!(published[0]["next_command"], Value::Null);
    assert!(
        published[0]["reason"].as_str().unwrap().contains("deleted"),
        "{}",
        published[0]
    );
    let posts = owners.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0].path, "/hooks/iam-rotate");
    assert_eq!(posts[0].content_type, "application/json");
    assert_eq!(posts[0].body, published[0], "one notice, every target");

    let plan = env.plan_yaml("alice");
    assert_eq!(plan["notifications"]["last_sent"]["event"], "done");
    assert!(plan["notifications"]["pending"].is_null());
    assert_valid_plan(&env);

    keep_for_scan(&env, &published);
    env.assert_no_secret_leaked(&[&env.default_csv("alice")]);
}

#[test]
fn a_fifo_topic_gets_its_notices_in_a_group_per_plan() {
    let env = moto_env!();
    let (topic_arn, queue_url) = topic_with_queue_named(&env, "rotation.fifo", "notices.fifo");
    let old = env.user("alice", 1).remove(0);
    env.run(&["plan", "alice"]).expect(0);
    env.run(&["run", "alice"]).expect(0);
    env.delivered("alice");
    env.set_key_status("alice", &old.id, "Inactive");
    let run = env.run(&["--notify", &format!("sns:{topic_arn}"), "run", "alice"]);
    run.expect(3);
    assert!(!run.stderr.contains("could not send"), "{}", run.stderr);
    let published = queued(&env, &queue_url);
    assert_eq!(published.len(), 1, "{published:?}");
    assert_notice(&published[0], "blocked", "blocked", &env);
    assert!(env.plan_yaml("alice")["notifications"]["pending"].is_null());
    keep_for_scan(&env, &published);
    env.assert_no_secret_leaked(&[&env.default_csv("alice")]);
}

#[test]
fn a_block_is_posted_once_with_the_command_that_retries_it() {
    let env = moto_env!();
    let hook = Hook::start();
    let old = env.user("alice", 1).remove(0);
    env.run(&["plan", "alice"]).expect(0);
    let notify = |args: &[&str]| {
        let mut command = env.command();
        command.env("IAM_ROTATE_NOTIFY", hook.spec()).args(args);
        env.capture(command.output().unwrap())
    };
    notify(&["run", "alice"]).expect(0);
    env.delivered("alice");
    assert!(hook.posts().is_empty());

    // Someone deactivates the old key behind the plan's back.
    env.set_key_status("alice", &old.id, "Inactive");
    notify(&["run", "alice"]).expect(3);
    let posts = hook.posts();
    assert_eq!(hook.events(), ["blocked"]);
    let notice = &posts[0].body;
    assert_notice(notice, "blocked", "blocked", &env);
    let plan = env.plan_yaml("alice");
    assert_eq!(notice["reason"].as_str(), plan["blocked_reason"].as_str());
    let next = notice["next_command"].as_str().unwrap();
    assert!(
        next.starts_with("iam-rotate ") && next.ends_with(" run --retry-blocked alice"),
        "{next}"
    );

    // Still blocked on the next run: not news.
    notify(&["run", "alice"]).expect(3);
    assert_eq!(hook.events(), ["blocked"]);

    // The person fixes it and rolls back: told as well.
    env.set_key_status("alice", &old.id, "Active");
    notify(&["run", "--retry-blocked", "alice"]).expect(0);
    notify(&["rollback", "alice", "--abort"]).expect(0);
    assert_eq!(hook.events(), ["blocked", "rolled_back"]);
    let rolled_back = &hook.posts()[1].body;
    assert_notice(rolled_back, "rolled_back", "rolled_back", &env);

    let bodies: Vec<Value> = hook.posts().into_iter().map(|p| p.body).collect();
    keep_for_scan(&env, &bodies);
    env.assert_no_secret_leaked(&[&env.default_csv("alice")]);
}

#[test]
fn a_dead_webhook_changes_nothing_and_the_next_run_sends_again() {
    let env = moto_env!();
    // A port nothing listens on: connections are refused.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dead = format!("webhook:http://127.0.0.1:{port}/hooks/iam-rotate");
    planned_fast(&env, &[]);
    env.run(&["--notify", &dead, "run", "alice"]).expect(0);
    env.use_key(&env.delivered("alice"));

    let run = env.run(&["--notify", &dead, "run", "alice"]);
    run.expect(0);
    let plan = env.plan_yaml("alice");
    assert_eq!(plan["phase"], "done", "{}", run.text());
    assert!(
        run.stderr.contains("could not send the done notice"),
        "{}",
        run.stderr
    );
    let pending = &plan["notifications"]["pending"];
    assert_eq!(pending.as_sequence().map(Vec::len), Some(1), "{pending:?}");
    assert_eq!(pending[0]["event"], "done");
    let to = pending[0]["to"][0].as_str().unwrap();
    assert!(
        to.starts_with(&format!("webhook:http://127.0.0.1:{port}/… #")),
        "{to}"
    );
    assert_valid_plan(&env);
    // `show` says so, and what will happen.
    let show = env.run(&["show", "alice"]);
    show.expect(0);
    assert!(
        show.stdout
            .contains("notices   1 not delivered yet, the oldest done of ")
            && show.stdout.contains(to)
            && show.stdout.contains("the next run with those targets"),
        "{}",
        show.stdout
    );

    // The webhook is back: the next run delivers the notice as it was.
    let hook = Hook::on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let rerun = env.run(&["--notify", &dead, "run", "alice"]);
    rerun.expect(0);
    assert_eq!(hook.events(), ["done"]);
    assert_eq!(
        hook.posts()[0].body["at"].as_str(),
        pending[0]["at"].as_str()
    );
    let plan = env.plan_yaml("alice");
    assert!(plan["notifications"]["pending"].is_null(), "{plan:?}");
    assert_eq!(plan["notifications"]["last_sent"]["event"], "done");
    let show = env.run(&["show", "alice"]);
    assert!(
        show.stdout
            .contains("notices   all delivered, the last done of "),
        "{}",
        show.stdout
    );

    // Delivered: a later run sends nothing more.
    env.run(&["--notify", &dead, "run", "alice"]).expect(0);
    assert_eq!(hook.events(), ["done"]);
    keep_for_scan(&env, &[hook.posts()[0].body.clone()]);
    env.assert_no_secret_leaked(&[&env.default_csv("alice")]);
}

#[test]
fn a_malformed_target_exits_2_before_any_request() {
    let env = moto_env!();
    env.user("alice", 1);
    env.run(&["plan", "alice"]).expect(0);
    let before = env.plan_text("alice");
    env.proxy.reset_counts();
    for args in [
        &["--notify", "slack:#ops", "run", "alice"][..],
        &["--notify", "sns:key-rotation", "run", "alice"],
        &[
            "--notify",
            "webhook:http://hooks.example.com/",
            "run",
            "alice",
        ],
        &[
            "--notify",
            "webhook:https://user:pw@hooks.example.com/",
            "status",
        ],
        &[
            "plan",
            "bob",
            "--notify",
            "webhook:ftp://hooks.example.com/",
        ],
    ] {
        let run = env.run(args);
        run.expect(2);
        assert!(
            run.stderr.contains("error: --notify \""),
            "{args:?}: {}",
            run.stderr
        );
    }
    let mut command = env.command();
    command
        .env(
            "IAM_ROTATE_NOTIFY",
            "sns:arn:aws:sns:us-east-1:123456789012:ok,bogus",
        )
        .args(["run", "alice"]);
    let run = env.capture(command.output().unwrap());
    run.expect(2);
    assert!(run.stderr.contains("IAM_ROTATE_NOTIFY"), "{}", run.stderr);

    assert!(
        env.proxy.forwarded().is_empty(),
        "{:?}",
        env.proxy.forwarded()
    );
    assert_eq!(env.plan_text("alice"), before);
    assert!(!env.plan_path("bob").exists());
}

#[test]
fn overdue_is_announced_at_most_once_a_day() {
    let env = moto_env!();
    let hook = Hook::start();
    env.user("alice", 1);
    // adoption_wait 7d + overdue_after 7d: overdue 14 days after the new
    // key, while nothing uses it.
    env.run(&["plan", "alice"]).expect(0);
    let run_on = |days: f64| {
        env.run_at(Some(days), &["--notify", &hook.spec(), "run", "alice"])
            .expect(0);
        hook.events()
    };
    assert!(run_on(0.0).is_empty());
    env.delivered("alice");
    assert!(run_on(13.0).is_empty(), "not overdue yet");
    assert_eq!(run_on(15.0), ["overdue"]);
    let overdue = &hook.posts()[0].body;
    assert_notice(overdue, "overdue", "wait_for_adoption", &env);
    assert!(
        overdue["reason"]
            .as_str()
            .unwrap()
            .contains("has not been used"),
        "{overdue}"
    );
    assert!(overdue["next_command"]
        .as_str()
        .unwrap()
        .ends_with(" run alice"));
    assert!(env.plan_yaml("alice")["notifications"]["overdue_sent_at"].is_string());
    // Runs within the day say nothing more; a day later, once again.
    assert_eq!(run_on(15.5), ["overdue"]);
    assert_eq!(run_on(15.9), ["overdue"]);
    assert_eq!(run_on(16.1), ["overdue", "overdue"]);
    // A dry run writes nothing and tells nobody, overdue or not.
    let before = env.plan_text("alice");
    env.run_at(
        Some(17.5),
        &["--notify", &hook.spec(), "run", "--dry-run", "alice"],
    )
    .expect(0);
    assert_eq!(hook.events(), ["overdue", "overdue"]);
    assert_eq!(env.plan_text("alice"), before);

    let bodies: Vec<Value> = hook.posts().into_iter().map(|p| p.body).collect();
    keep_for_scan(&env, &bodies);
    env.assert_no_secret_leaked(&[&env.default_csv("alice")]);
}

#[test]
fn a_failure_is_told_once_while_the_error_stays_the_same() {
    let env = moto_env!();
    let hook = Hook::start();
    env.user("alice", 1);
    let csv = env.dir.path().join("handover/alice.csv");
    let deliver = format!("file:{}", csv.display());
    env.run(&["plan", "alice", "--deliver", &deliver]).expect(0);
    // Something that is not a key CSV now sits where the secret would go:
    // delivery is refused before a key is created, run after run.
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();
    std::fs::write(&csv, "id_rsa\n").unwrap();
    let run = |code: i32| {
        env.run(&["--notify", &hook.spec(), "run", "alice"])
            .expect(code);
        hook.events()
    };
    assert_eq!(run(1), ["failed"]);
    let failed = &hook.posts()[0].body;
    assert_notice(failed, "failed", "create_second_key", &env);
    assert_eq!(
        failed["reason"].as_str(),
        env.plan_yaml("alice")["last_error"].as_str()
    );
    assert_eq!(run(1), ["failed"], "the same error again is not news");
    assert_eq!(env.keys("alice").len(), 1);

    // Fixed: the run goes on, and nothing is told (no event).
    std::fs::remove_file(&csv).unwrap();
    assert_eq!(run(0), ["failed"]);
    assert_eq!(env.plan_yaml("alice")["phase"], "wait_for_adoption");
}
