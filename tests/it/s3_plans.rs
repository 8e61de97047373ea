//! Plans in S3 (`--plans-dir s3://BUCKET/PREFIX`) against moto's S3: the
//! same rotation as on disk, compare-and-swap saves that fence out a stale
//! runner, leases (live: skip; expired: taken over; released after a run),
//! `unlock --force`, and a missing bucket refused before anything else.
//!
//! moto checks `If-Match` / `If-None-Match` but not atomically under races
//! (it reads, then writes), so these tests drive each branch of the
//! protocol one at a time rather than racing two runners.

use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;

use crate::harness::{Env, ACCOUNT};
use crate::moto_env;
use crate::proxy::Faults;

const BUCKET: &str = "rotation-plans";
pub(crate) const PLANS: &str = "s3://rotation-plans/team";

fn plan_key(user: &str) -> String {
    format!("team/{ACCOUNT}/{user}.yaml")
}

fn lease_key(user: &str) -> String {
    format!("team/{ACCOUNT}/.{user}.yaml.lock")
}

/// S3 straight to moto (not through the proxy), as another runner or an
/// operator with the AWS CLI would see it.
pub(crate) struct Bucket<'e> {
    env: &'e Env,
    client: aws_sdk_s3::Client,
}

impl<'e> Bucket<'e> {
    pub(crate) fn create(env: &'e Env) -> Bucket<'e> {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&env.moto.endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new(
                "AKIAADMIN00000000000",
                "admin-test-credentials-not-secret0000000",
                None,
                None,
                "test",
            ))
            .build();
        let bucket = Bucket {
            env,
            client: aws_sdk_s3::Client::from_conf(config),
        };
        env.block_on(bucket.client.create_bucket().bucket(BUCKET).send())
            .expect("create the plans bucket");
        bucket
    }

    fn get(&self, key: &str) -> Option<String> {
        let out = self
            .env
            .block_on(self.client.get_object().bucket(BUCKET).key(key).send())
            .ok()?;
        let body = self.env.block_on(out.body.collect()).unwrap().to_vec();
        Some(String::from_utf8(body).unwrap())
    }

    fn put(&self, key: &str, body: &str) {
        self.env
            .block_on(
                self.client
                    .put_object()
                    .bucket(BUCKET)
                    .key(key)
                    .body(ByteStream::from(body.as_bytes().to_vec()))
                    .send(),
            )
            .expect("put object");
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        let out = self
            .env
            .block_on(self.client.list_objects_v2().bucket(BUCKET).send())
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key.clone())
            .collect()
    }

    fn plan_yaml(&self, user: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&self.get(&plan_key(user)).expect("plan in S3")).unwrap()
    }

    /// A lease of another runner, expiring `secs` from now (negative: past).
    fn lease_of_another_runner(&self, user: &str, owner: &str, secs: i64) -> String {
        let now = chrono::Utc::now();
        let expires = (now + chrono::Duration::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = format!(
            "{{\"owner\":\"{owner}\",\"host\":\"runner-b\",\"pid\":4242,\"started\":\"{}\",\
             \"expires\":\"{expires}\"}}",
            (now - chrono::Duration::minutes(20))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        self.put(&lease_key(user), &body);
        expires
    }
}

/// `iam-rotate --plans-dir s3://… ARGS`, at `now` days from today.
fn s3_run(env: &Env, now: Option<f64>, args: &[&str]) -> crate::harness::Run {
    let mut all = vec!["--plans-dir", PLANS];
    all.extend_from_slice(args);
    env.run_at(now, &all)
}

#[test]
fn a_whole_rotation_with_plans_in_s3() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    let old = env.user("alice", 1).remove(0);
    env.user("bob", 1);

    s3_run(&env, None, &["plan", "alice", "bob"]).expect(0);
    assert!(!env.plans().exists(), "no local plans folder is made");
    let plan = bucket.plan_yaml("alice");
    assert_eq!(plan["phase"], "create_second_key");
    assert_eq!(plan["old_key"]["id"].as_str(), Some(old.id.as_str()));
    // Planning again never resets an unfinished plan in S3 either.
    let again = s3_run(&env, None, &["plan", "alice"]);
    assert!(again.text().contains("never reset"), "{}", again.text());

    s3_run(&env, None, &["run", "alice"]).expect(0);
    let new = env.delivered("alice");
    assert_eq!(bucket.plan_yaml("alice")["phase"], "wait_for_adoption");
    assert_eq!(
        bucket.plan_yaml("alice")["new_key"]["id"].as_str(),
        Some(new.id.as_str())
    );
    env.use_key(&new);

    s3_run(&env, Some(8.0), &["run", "alice"]).expect(0);
    assert_eq!(bucket.plan_yaml("alice")["phase"], "verify");
    s3_run(&env, Some(16.0), &["run", "alice"]).expect(0);
    assert_eq!(bucket.plan_yaml("alice")["phase"], "done");
    assert_eq!(env.keys("alice"), vec![(new.id.clone(), "Active".into())]);

    // status, show and report read the same plans.
    let status = s3_run(&env, Some(16.0), &["--output", "json", "status"])
        .expect(0)
        .json();
    let phases: Vec<(String, String)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["user"].as_str().unwrap().to_string(),
                row["phase"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        [
            ("alice".to_string(), "done".to_string()),
            ("bob".to_string(), "create_second_key".to_string())
        ]
    );
    let show = s3_run(&env, Some(16.0), &["show", "alice"]);
    show.expect(0);
    assert!(show.stdout.contains("done"), "{}", show.stdout);
    let report = s3_run(&env, Some(16.0), &["--output", "json", "report"])
        .expect(0)
        .json();
    let bob = report
        .as_array()
        .expect("report rows")
        .iter()
        .find(|row| row["user"] == "bob")
        .cloned()
        .expect("bob in the report");
    assert_eq!(bob["plan_phase"], "create_second_key", "{bob}");

    // rollback works on a plan in S3 too.
    s3_run(&env, None, &["run", "bob"]).expect(0);
    s3_run(&env, None, &["rollback", "--abort", "bob"]).expect(0);
    assert_eq!(bucket.plan_yaml("bob")["phase"], "rolled_back");

    // Every lease was released; only the plans remain.
    assert_eq!(
        bucket.keys(),
        [plan_key("alice"), plan_key("bob")],
        "no lease objects are left behind"
    );
    env.assert_no_secret_leaked(&[&env.default_csv("alice"), &env.default_csv("bob")]);
}

/// The plan is changed by someone else between this runner's read (under
/// its lease) and its save of the create intent: the save is refused, the
/// plan stops with exit 1, and CreateAccessKey never follows.
#[test]
fn a_stale_runner_s_save_loses_and_no_key_is_created() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    env.user("carol", 1);
    s3_run(&env, None, &["plan", "carol"]).expect(0);

    // Hold the answer to the read of the plan made under the lease.
    env.proxy.set_faults(Faults {
        hold: Some(|action, _, forwarded| {
            action == "S3:GET /rotation-plans/team/123456789012/carol.yaml"
                && forwarded
                    .get("S3:PUT /rotation-plans/team/123456789012/.carol.yaml.lock")
                    .is_some_and(|&n| n >= 1)
        }),
        hold_for: Duration::from_secs(3),
        ..Faults::default()
    });
    env.proxy.reset_counts();
    let child = spawn_until_held(
        &env,
        &["--plans-dir", PLANS, "run", "carol"],
        "the read was never held",
    );
    // Another runner (or a person) saves the plan meanwhile.
    let text = bucket.get(&plan_key("carol")).unwrap();
    bucket.put(
        &plan_key("carol"),
        &format!("{text}# reviewed by another runner\n"),
    );

    let run = env.capture(child.wait_with_output().unwrap());
    run.expect(1);
    assert!(
        run.stderr.contains("changed by another runner")
            || run.stdout.contains("changed by another runner"),
        "{}",
        run.text()
    );
    let forwarded = env.proxy.forwarded();
    assert_eq!(forwarded.get("CreateAccessKey"), None, "{forwarded:?}");
    assert_eq!(env.keys("carol").len(), 1, "no key was created");
    assert!(
        bucket
            .get(&plan_key("carol"))
            .unwrap()
            .ends_with("# reviewed by another runner\n"),
        "the other runner's version stands"
    );
    assert_eq!(
        bucket.plan_yaml("carol")["create_intent_at"],
        serde_yaml::Value::Null
    );
    assert_eq!(
        bucket.get(&lease_key("carol")),
        None,
        "the lease was released"
    );
}

#[test]
fn a_live_lease_is_skipped_naming_its_holder_and_an_expired_one_is_taken_over() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    env.user("dave", 1);
    s3_run(&env, None, &["plan", "dave"]).expect(0);

    let expires = bucket.lease_of_another_runner("dave", "runner-b:4242:feedface", 600);
    env.proxy.reset_counts();
    let run = s3_run(&env, None, &["run", "dave"]);
    run.expect(0);
    let text = run.text();
    assert!(text.contains("skipped"), "{text}");
    assert!(text.contains("runner-b:4242:feedface"), "{text}");
    assert!(
        text.contains(&expires[..19]),
        "names the expiry {expires}: {text}"
    );
    assert_eq!(
        env.proxy.writes(),
        Default::default(),
        "nothing was written to IAM"
    );
    assert_eq!(bucket.plan_yaml("dave")["phase"], "create_second_key");
    assert!(
        bucket.get(&lease_key("dave")).unwrap().contains("feedface"),
        "left alone"
    );

    // The same lease, expired: the next runner takes it over and goes on.
    bucket.lease_of_another_runner("dave", "runner-b:4242:feedface", -5);
    let run = s3_run(&env, None, &["run", "dave"]);
    run.expect(0);
    assert_eq!(
        bucket.plan_yaml("dave")["phase"],
        "wait_for_adoption",
        "{}",
        run.text()
    );
    assert_eq!(env.keys("dave").len(), 2);
    assert_eq!(
        bucket.get(&lease_key("dave")),
        None,
        "released after the run"
    );
}

#[test]
fn unlock_force_removes_a_lease_by_hand() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    env.user("erin", 1);
    s3_run(&env, None, &["plan", "erin"]).expect(0);
    bucket.lease_of_another_runner("erin", "runner-b:4242:deadbeef", 600);

    let refused = s3_run(&env, None, &["unlock", "erin"]);
    refused.expect(2);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert!(bucket.get(&lease_key("erin")).is_some());

    let unlocked = s3_run(&env, None, &["unlock", "erin", "--force"]);
    unlocked.expect(0);
    assert!(
        unlocked.stdout.contains("runner-b:4242:deadbeef"),
        "{}",
        unlocked.stdout
    );
    assert!(
        unlocked.stdout.contains("live lease"),
        "{}",
        unlocked.stdout
    );
    assert_eq!(bucket.get(&lease_key("erin")), None);
    let again = s3_run(&env, None, &["unlock", "erin", "--force"]);
    again.expect(0);
    assert!(
        again.stdout.contains("no lock or lease"),
        "{}",
        again.stdout
    );

    s3_run(&env, None, &["run", "erin"]).expect(0);
    assert_eq!(bucket.plan_yaml("erin")["phase"], "wait_for_adoption");
}

#[test]
fn unlock_force_removes_a_local_lock_file_no_process_holds() {
    let env = moto_env!();
    env.user("fay", 1);
    env.run(&["plan", "fay"]).expect(0);
    let lock = env.plan_path("fay").with_file_name(".fay.yaml.lock");
    std::fs::write(&lock, "").unwrap();
    let unlocked = env.run(&["unlock", "fay", "--force"]);
    unlocked.expect(0);
    assert!(
        unlocked.stdout.contains("which no process held"),
        "{}",
        unlocked.stdout
    );
    assert!(!lock.exists());
}

#[test]
fn a_missing_bucket_is_one_clear_error_before_anything_else() {
    let env = moto_env!();
    env.proxy.reset_counts();
    for args in [&["status"][..], &["run", "--all"], &["plan", "--all"]] {
        let mut all = vec!["--plans-dir", "s3://no-such-bucket/team"];
        all.extend_from_slice(args);
        let run = env.run(&all);
        run.expect(1);
        assert!(run.stderr.contains("no-such-bucket"), "{}", run.stderr);
        assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    }
    let forwarded = env.proxy.forwarded();
    assert!(
        forwarded.keys().all(|action| action.starts_with("S3:HEAD")),
        "only the bucket was asked about: {forwarded:?}"
    );
}

/// A runner whose plan takes longer than its lease keeps the lease by
/// renewing it: a second runner meanwhile skips the plan, and exactly one
/// new key is made.
#[test]
fn a_lease_is_renewed_while_its_plan_is_worked_on() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    env.user("gus", 1);
    s3_run(&env, None, &["plan", "gus"]).expect(0);
    // The first runner's first ListAccessKeys answer takes 4 s: four
    // lease lengths.
    env.proxy.set_faults(Faults {
        hold: Some(|action, _, forwarded| {
            action == "ListAccessKeys" && !forwarded.contains_key("ListAccessKeys")
        }),
        hold_for: Duration::from_secs(4),
        ..Faults::default()
    });
    env.proxy.reset_counts();
    let first = spawn_until_held(
        &env,
        &["--plans-dir", PLANS, "--lease", "1s", "run", "gus"],
        "never reached IAM",
    );
    std::thread::sleep(Duration::from_millis(1500));
    // Past the first lease's second; it was renewed.
    let lease: serde_json::Value =
        serde_json::from_str(&bucket.get(&lease_key("gus")).expect("the lease is held")).unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        lease["expires"].as_str().unwrap().parse().unwrap();
    assert!(expires > chrono::Utc::now(), "renewed: {lease}");
    assert!(
        expires - chrono::Utc::now() <= chrono::Duration::seconds(1),
        "{lease}"
    );

    let second = s3_run(&env, None, &["--lease", "1s", "run", "gus"]);
    second.expect(0);
    assert!(
        second.text().contains("leased: held by"),
        "{}",
        second.text()
    );
    assert!(
        second.text().contains(lease["owner"].as_str().unwrap()),
        "{}",
        second.text()
    );

    let first = env.capture(first.wait_with_output().unwrap());
    first.expect(0);
    env.proxy.set_faults(Faults::default());
    assert_eq!(
        env.keys("gus").len(),
        2,
        "exactly one new key: {}",
        first.text()
    );
    assert_eq!(bucket.plan_yaml("gus")["phase"], "wait_for_adoption");
    assert_eq!(bucket.get(&lease_key("gus")), None);
}

#[test]
fn unlock_leaves_a_local_lock_a_live_process_holds() {
    let env = moto_env!();
    env.user("hal", 1);
    env.run(&["plan", "hal"]).expect(0);
    let lock_path = env.plan_path("hal").with_file_name(".hal.yaml.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.lock().unwrap();
    let refused = env.run(&["unlock", "hal", "--force"]);
    refused.expect(1);
    assert!(
        refused.stderr.contains("holder is alive"),
        "{}",
        refused.stderr
    );
    assert!(lock_path.exists());
    drop(lock);
    env.run(&["unlock", "hal", "--force"]).expect(0);
    assert!(!lock_path.exists());
}

/// Two `run --all` over one prefix at once, as two schedulers on two
/// machines would: every user gets exactly one new key. (moto checks the
/// conditions without atomicity, so this shows the protocol at work in
/// ordinary interleavings, not under an adversarial race.)
#[test]
fn two_runners_at_once_over_one_prefix_create_one_key_per_user() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    let users: Vec<String> = (0..8).map(|i| format!("svc{i}")).collect();
    for user in &users {
        env.user(user, 1);
    }
    s3_run(&env, None, &["plan", "--all"]).expect(0);
    env.proxy.reset_counts();
    let runners: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = env.command();
            cmd.args(["--plans-dir", PLANS, "run", "--all", "--concurrency", "4"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for runner in runners {
        let run = env.capture(runner.wait_with_output().unwrap());
        // A runner that lost a race stops that plan (exit 1, "changed by
        // another runner"); it never creates a second key.
        assert!(
            run.code == 0 || run.text().contains("changed by another runner"),
            "{}",
            run.text()
        );
    }
    for user in &users {
        assert_eq!(env.keys(user).len(), 2, "{user}");
        let plan = bucket.get(&plan_key(user)).unwrap();
        assert_eq!(plan.matches("created new key").count(), 1, "{user}: {plan}");
    }
    assert_eq!(
        env.proxy.forwarded().get("CreateAccessKey"),
        Some(&users.len()),
        "one CreateAccessKey per user"
    );
    assert!(
        bucket.keys().iter().all(|k| !k.ends_with(".lock")),
        "{:?}",
        bucket.keys()
    );
}

/// The lease write reaches S3 but its answer is lost; the SDK retries the
/// create, which S3 refuses (the object exists: our own). The runner reads
/// the lease, finds its own owner id, and goes on holding it.
#[test]
fn a_runner_whose_lease_answer_was_lost_finds_its_own_lease_on_retry() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    env.user("ivy", 1);
    s3_run(&env, None, &["plan", "ivy"]).expect(0);
    env.proxy.reset_counts();
    env.proxy.set_faults(Faults {
        drop_answer: Some(|action, _, forwarded| {
            action == "S3:PUT /rotation-plans/team/123456789012/.ivy.yaml.lock"
                && !forwarded.contains_key(action)
        }),
        ..Faults::default()
    });
    let run = s3_run(&env, None, &["run", "ivy"]);
    run.expect(0);
    assert_eq!(env.proxy.injected().get("dropped"), Some(&1));
    let forwarded = env.proxy.forwarded();
    assert_eq!(
        forwarded.get("S3:PUT /rotation-plans/team/123456789012/.ivy.yaml.lock"),
        Some(&2),
        "the create and its retry: {forwarded:?}"
    );
    assert_eq!(
        bucket.plan_yaml("ivy")["phase"],
        "wait_for_adoption",
        "{}",
        run.text()
    );
    assert_eq!(env.keys("ivy").len(), 2);
    assert_eq!(bucket.get(&lease_key("ivy")), None, "released");
}

/// A runner killed (`kill -9`) while it holds a lease: the lease stays
/// until it expires, other runners skip the plan meanwhile, and the first
/// runner after expiry takes it over and finishes the step, with one key.
#[test]
fn a_killed_runner_s_lease_is_taken_over_once_it_expires() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    env.user("jay", 1);
    s3_run(&env, None, &["plan", "jay"]).expect(0);
    env.proxy.reset_counts();
    env.proxy.set_faults(Faults {
        hold: Some(|action, _, forwarded| {
            action == "ListAccessKeys" && !forwarded.contains_key("ListAccessKeys")
        }),
        hold_for: Duration::from_secs(30),
        ..Faults::default()
    });
    let mut killed = spawn_until_held(
        &env,
        &["--plans-dir", PLANS, "--lease", "2s", "run", "jay"],
        "never reached IAM",
    );
    killed.kill().unwrap();
    killed.wait().unwrap();
    let lease: serde_json::Value =
        serde_json::from_str(&bucket.get(&lease_key("jay")).expect("left behind")).unwrap();
    assert_eq!(lease["pid"], killed.id());

    let skipped = s3_run(&env, None, &["run", "jay"]);
    skipped.expect(0);
    assert!(
        skipped.text().contains("leased: held by"),
        "{}",
        skipped.text()
    );
    assert_eq!(env.keys("jay").len(), 1);

    let expires: chrono::DateTime<chrono::Utc> =
        lease["expires"].as_str().unwrap().parse().unwrap();
    while chrono::Utc::now() <= expires + chrono::Duration::milliseconds(200) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took_over = s3_run(&env, None, &["run", "jay"]);
    took_over.expect(0);
    assert_eq!(
        bucket.plan_yaml("jay")["phase"],
        "wait_for_adoption",
        "{}",
        took_over.text()
    );
    assert_eq!(env.keys("jay").len(), 2, "one new key");
    assert_eq!(bucket.get(&lease_key("jay")), None);
}

/// S3's 409 ConditionalRequestConflict (another conditional write to the
/// same key in flight) is retried, for the lease and for a save alike, a
/// bounded number of times.
#[test]
fn conflicts_are_retried_a_bounded_number_of_times() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LEASE_ONCE: AtomicUsize = AtomicUsize::new(0);
    static SAVE_ONCE: AtomicUsize = AtomicUsize::new(0);
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    env.user("kim", 1);
    env.user("lou", 1);
    s3_run(&env, None, &["plan", "kim", "lou"]).expect(0);

    // Once on the lease and once on the save of the create intent: both
    // go through on the next attempt.
    env.proxy.set_faults(Faults {
        conflict: Some(|action, _, _| {
            (action == "S3:PUT /rotation-plans/team/123456789012/.kim.yaml.lock"
                && LEASE_ONCE.fetch_add(1, Ordering::SeqCst) == 0)
                || (action == "S3:PUT /rotation-plans/team/123456789012/kim.yaml"
                    && SAVE_ONCE.fetch_add(1, Ordering::SeqCst) == 0)
        }),
        ..Faults::default()
    });
    env.proxy.reset_counts();
    let run = s3_run(&env, None, &["run", "kim"]);
    run.expect(0);
    assert_eq!(env.proxy.injected().get("conflict"), Some(&2));
    assert_eq!(
        bucket.plan_yaml("kim")["phase"],
        "wait_for_adoption",
        "{}",
        run.text()
    );
    assert_eq!(env.keys("kim").len(), 2);

    // Every time: the runner gives up on the lease after 5 attempts, with
    // an error that says so, and touches nothing.
    env.proxy.set_faults(Faults {
        conflict: Some(|action, _, _| {
            action == "S3:PUT /rotation-plans/team/123456789012/.lou.yaml.lock"
        }),
        ..Faults::default()
    });
    env.proxy.reset_counts();
    let run = s3_run(&env, None, &["run", "lou"]);
    run.expect(1);
    assert!(
        run.text().contains("409 ConditionalRequestConflict"),
        "{}",
        run.text()
    );
    assert_eq!(env.proxy.injected().get("conflict"), Some(&5));
    assert_eq!(env.proxy.writes(), Default::default());
    assert_eq!(bucket.plan_yaml("lou")["phase"], "create_second_key");
}

/// A runner whose lease was taken from it (here: overwritten by another
/// runner's while the first waits on IAM) finds out at its next renewal,
/// and its next save is refused: no CreateAccessKey follows.
#[test]
fn a_runner_that_lost_its_lease_saves_and_acts_no_more() {
    let env = moto_env!();
    let bucket = Bucket::create(&env);
    env.user("max", 1);
    s3_run(&env, None, &["plan", "max"]).expect(0);
    env.proxy.reset_counts();
    env.proxy.set_faults(Faults {
        hold: Some(|action, _, forwarded| {
            action == "ListAccessKeys" && !forwarded.contains_key("ListAccessKeys")
        }),
        hold_for: Duration::from_secs(3),
        ..Faults::default()
    });
    let runner = spawn_until_held(
        &env,
        &["--plans-dir", PLANS, "--lease", "1s", "run", "max"],
        "never reached IAM",
    );
    bucket.lease_of_another_runner("max", "runner-b:4242:c0ffee", 600);
    let run = env.capture(runner.wait_with_output().unwrap());
    run.expect(1);
    assert!(
        run.text().contains("taken over or removed"),
        "{}",
        run.text()
    );
    assert_eq!(env.proxy.forwarded().get("CreateAccessKey"), None);
    assert_eq!(env.keys("max").len(), 1);
    assert_eq!(bucket.plan_yaml("max")["phase"], "create_second_key");
    assert!(
        bucket.get(&lease_key("max")).unwrap().contains("c0ffee"),
        "the other runner's lease is left alone"
    );
}

/// Starts `iam-rotate ARGS` (output piped) and returns once the proxy
/// holds one of its requests, as the test's faults say.
fn spawn_until_held(env: &Env, args: &[&str], what: &str) -> std::process::Child {
    env.spawn_until(
        args,
        || env.proxy.injected().contains_key("held"),
        Duration::from_secs(20),
        what,
    )
}
