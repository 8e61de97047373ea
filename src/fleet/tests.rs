//! Batches on the simulated account: planning, concurrent runs, the
//! inventory, and the exact IAM calls each phase makes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::deliver::fake::FakeDeliver;
use crate::engine::{Outcome, RunOptions};
use crate::iam::{Caller, CreatedKey, Iam, IamError, LastUse, LiveKey, User};
use crate::plan::{KeyStatus, Phase, PlanStore, Stamp};
use crate::planner::Planned;
use crate::rotation::policy::Policy;
use crate::sim::SimAccount;

const ACCOUNT: &str = "111122223333";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

/// The simulated account, with a gauge of how many ListAccessKeys calls
/// are in flight at once (each takes a millisecond, so they overlap when
/// the batch runs them concurrently).
struct Gauge {
    sim: SimAccount,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

#[async_trait]
impl Iam for Gauge {
    async fn caller_identity(&self) -> Result<Caller, IamError> {
        self.sim.caller_identity().await
    }
    async fn get_user(&self, user: &str) -> Result<User, IamError> {
        self.sim.get_user(user).await
    }
    async fn list_users(&self, path_prefix: Option<&str>) -> Result<Vec<User>, IamError> {
        self.sim.list_users(path_prefix).await
    }
    async fn list_access_keys(&self, user: &str) -> Result<Vec<LiveKey>, IamError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        let keys = self.sim.list_access_keys(user).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        keys
    }
    async fn create_access_key(&self, user: &str) -> Result<CreatedKey, IamError> {
        self.sim.create_access_key(user).await
    }
    async fn update_access_key(
        &self,
        user: &str,
        key_id: &str,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        self.sim.update_access_key(user, key_id, status).await
    }
    async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), IamError> {
        self.sim.delete_access_key(user, key_id).await
    }
    async fn access_key_last_used(&self, key_id: &str) -> Result<LastUse, IamError> {
        self.sim.access_key_last_used(key_id).await
    }
}

struct World {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    sim: SimAccount,
    gauge: Arc<Gauge>,
    store: PlanStore,
    deliver: Arc<FakeDeliver>,
    caller: Caller,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(start());
        let sim = SimAccount::new(ACCOUNT, Arc::new(clock.clone()));
        let caller = sim.caller_identity().await.unwrap();
        World {
            store: PlanStore::new(dir.path().join("plans")),
            _dir: dir,
            gauge: Arc::new(Gauge {
                sim: sim.clone(),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
            }),
            clock,
            sim,
            deliver: Arc::new(FakeDeliver::default()),
            caller,
        }
    }

    /// A user with one active key `age` old, used an hour ago.
    fn user(&self, name: &str, age: Duration) -> String {
        self.sim.add_user(name);
        let key = self.sim.add_key(name, start() - age);
        self.clock.advance(-Duration::hours(1));
        self.sim.use_key(&key, "s3", "eu-west-1");
        self.clock.advance(Duration::hours(1));
        key
    }

    fn stamp(&self) -> Stamp {
        Stamp::new(&self.clock, &self.caller)
    }

    async fn plan_all(&self, policy: &Policy, older_than: Option<Duration>) -> Vec<PlanAllRow> {
        let users = self.sim.list_users(None).await.unwrap();
        let request = PlanAllRequest {
            policy,
            delivery: "file:/nonexistent/{user}.csv",
            older_than,
            concurrency: 4,
            notify: &[],
        };
        plan_all(
            self.gauge.as_ref(),
            &self.store,
            &self.caller,
            &self.stamp(),
            users,
            &request,
        )
        .await
    }

    fn fleet(&self) -> Fleet {
        Fleet {
            iam: self.gauge.clone(),
            clock: Arc::new(self.clock.clone()),
            deliver: self.deliver.clone(),
            caller: self.caller.clone(),
            notifier: None,
            store: self.store.clone(),
        }
    }

    async fn run_all(&self, concurrency: usize) -> Vec<RunResult> {
        let paths = self.store.list(ACCOUNT).unwrap();
        run_all(
            &self.fleet(),
            paths,
            RunOptions::default(),
            concurrency,
            &mut (),
        )
        .await
    }

    /// The IAM calls made by `f`, in order.
    async fn calls_of<F: std::future::Future>(&self, f: F) -> Vec<String> {
        let before = self.sim.calls().len();
        f.await;
        self.sim.calls()[before..].to_vec()
    }

    fn plan(&self, user: &str) -> crate::plan::Plan {
        self.store
            .load(&self.store.path_for(ACCOUNT, user))
            .unwrap()
    }
}

fn zero_policy() -> Policy {
    serde_yaml::from_str(
        "adoption_wait: 0s\nquiet_period: 4h\nverify_period: 0s\nrequire_new_key_use: false\n",
    )
    .unwrap()
}

fn names(rows: &[PlanAllRow], f: fn(&Planned) -> bool) -> Vec<&str> {
    rows.iter()
        .filter(|r| f(&r.planned))
        .map(|r| r.user.as_str())
        .collect()
}

#[tokio::test]
async fn plan_all_plans_old_keys_skips_young_ones_and_lists_two_key_users_for_triage() {
    let w = World::new().await;
    for i in 0..30 {
        w.user(&format!("app{i:02}"), Duration::days(200));
    }
    w.user("fresh", Duration::days(10));
    w.user("twokeys", Duration::days(300));
    w.sim.add_key("twokeys", start() - Duration::days(5));
    w.sim.add_user("console-only");

    let rows = w
        .plan_all(&Policy::default(), Some(Duration::days(90)))
        .await;
    assert_eq!(rows.len(), 33);
    let planned = names(&rows, |p| matches!(p, Planned::Planned { .. }));
    assert_eq!(planned.len(), 30);
    assert!(planned.iter().all(|u| u.starts_with("app")));
    assert_eq!(
        names(&rows, |p| matches!(p, Planned::Refused { .. })),
        ["twokeys"]
    );
    assert_eq!(
        names(&rows, |p| matches!(p, Planned::Skipped { .. })),
        ["console-only", "fresh"]
    );
    // Rows are sorted by user, whatever order they finished in.
    let users: Vec<&str> = rows.iter().map(|r| r.user.as_str()).collect();
    let mut sorted = users.clone();
    sorted.sort();
    assert_eq!(users, sorted);
    assert!(w.gauge.max_in_flight.load(Ordering::SeqCst) > 1);
    assert!(w.gauge.max_in_flight.load(Ordering::SeqCst) <= 4);
}

#[tokio::test]
async fn a_second_plan_all_changes_no_plan_and_resets_none() {
    let w = World::new().await;
    for i in 0..10 {
        w.user(&format!("app{i}"), Duration::days(200));
    }
    w.plan_all(&Policy::default(), None).await;
    let read_all = || {
        w.store
            .list(ACCOUNT)
            .unwrap()
            .into_iter()
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect::<Vec<_>>()
    };
    let before = read_all();
    assert_eq!(before.len(), 10);
    w.clock.advance(Duration::days(1));
    let calls = w.calls_of(w.plan_all(&Policy::default(), None)).await;
    assert_eq!(read_all(), before);
    // An unfinished plan is recognised from the file alone: no key listing.
    assert_eq!(calls, ["ListUsers"]);
}

#[tokio::test]
async fn run_all_advances_every_plan_concurrently_within_the_bound() {
    let w = World::new().await;
    let mut old_keys = Vec::new();
    for i in 0..40 {
        old_keys.push(w.user(&format!("app{i:02}"), Duration::days(200)));
    }
    w.plan_all(&Policy::default(), None).await;
    w.gauge.max_in_flight.store(0, Ordering::SeqCst);

    let results = w.run_all(6).await;
    assert_eq!(results.len(), 40);
    let max = w.gauge.max_in_flight.load(Ordering::SeqCst);
    assert!(max > 1 && max <= 6, "max in flight {max}");
    // Results come back in plan order.
    let users: Vec<&str> = results.iter().map(|r| r.user()).collect();
    assert_eq!(users[0], "app00");
    assert_eq!(users[39], "app39");
    let summary = Summary::of(&results);
    assert_eq!(summary.count(Category::Advanced), 40);
    for (i, old) in old_keys.iter().enumerate() {
        let user = format!("app{i:02}");
        let keys = w.sim.keys(&user);
        assert_eq!(keys.len(), 2, "{user}: {keys:?}");
        assert!(keys.iter().any(|(id, _)| id == old));
        let plan = w.plan(&user);
        assert_eq!(plan.phase, Phase::WaitForAdoption);
        assert_eq!(
            plan.new_key.map(|k| k.id),
            keys.iter()
                .find(|(id, _)| id != old)
                .map(|(id, _)| id.clone())
        );
    }
    assert_eq!(w.deliver.delivered.lock().unwrap().len(), 40);

    // Nothing is due on a second run: every plan waits, nothing is written.
    let calls = w.calls_of(w.run_all(6)).await;
    assert!(calls.iter().all(|c| !c.starts_with("CreateAccessKey")));
    let summary = Summary::of(&w.run_all(6).await);
    assert_eq!(summary.count(Category::Waiting), 40);
}

#[tokio::test]
async fn one_failure_or_block_never_stops_the_batch() {
    let w = World::new().await;
    for i in 0..12 {
        w.user(&format!("app{i:02}"), Duration::days(200));
    }
    w.plan_all(&Policy::default(), None).await;
    // Someone adds a key to app03 behind the plan's back: drift.
    w.sim.add_key("app03", start());
    // One CreateAccessKey fails (after the SDK's own retries).
    w.sim.fail_next("CreateAccessKey");
    // Another process holds app07's plan.
    let held = w
        .store
        .lock(&w.store.path_for(ACCOUNT, "app07"))
        .unwrap()
        .unwrap();

    let results = w.run_all(1).await;
    drop(held);
    let summary = Summary::of(&results);
    assert_eq!(summary.names(Category::Blocked), ["app03"]);
    assert_eq!(summary.names(Category::Skipped), ["app07"]);
    assert_eq!(summary.count(Category::Failed), 1);
    assert_eq!(summary.count(Category::Advanced), 9);
    let failed = &summary.names(Category::Failed)[0];
    let plan = w.plan(failed);
    assert_eq!(plan.phase, Phase::CreateSecondKey);
    assert!(plan
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("ServiceFailure")));
    // The exit code ranks a failure above a block.
    let status = results
        .iter()
        .fold(crate::commands::Status::Success, |s, r| {
            s.and(crate::commands::status_of(r))
        });
    assert_eq!(status, crate::commands::Status::Failed);
}

#[tokio::test]
async fn the_batch_takes_the_caller_identity_from_outside_once() {
    let w = World::new().await;
    for i in 0..20 {
        w.user(&format!("app{i:02}"), Duration::days(200));
    }
    w.plan_all(&Policy::default(), None).await;
    let calls = w.calls_of(w.run_all(8)).await;
    assert!(calls.iter().all(|c| c != "GetCallerIdentity"), "{calls:?}");
    assert_eq!(calls.len(), 40, "{calls:?}");
}

/// The IAM calls of one `run` of one plan, phase by phase: what
/// docs/requests.md documents.
#[tokio::test]
async fn requests_per_phase_are_exactly_what_the_guards_need() {
    let w = World::new().await;
    let old = w.user("alice", Duration::days(200));
    let policy: Policy = serde_yaml::from_str(
        "adoption_wait: 1d\nquiet_period: 4h\nverify_period: 1d\nrequire_new_key_use: true\n",
    )
    .unwrap();
    let stamp = w.stamp();
    let request = crate::planner::PlanRequest {
        user: "alice",
        policy: &policy,
        delivery: "file:/nonexistent/{user}.csv",
        older_than: None,
        kind: crate::plan::PlanKind::Plan,
        notify: &[],
    };
    let planned = w
        .calls_of(crate::planner::plan_user(
            &w.sim, &w.store, &w.caller, &stamp, &request,
        ))
        .await;
    assert_eq!(planned, ["GetUser alice", "ListAccessKeys alice"]);

    let fleet = w.fleet();
    let run = || async {
        let path = w.store.path_for(ACCOUNT, "alice");
        run::run_one(&fleet.engine(), &fleet.store, path, RunOptions::default()).await
    };

    // create_second_key: the listing guards the create; right after it,
    // only time can move the plan on, so last use is not read.
    let calls = w.calls_of(run()).await;
    assert_eq!(calls, ["ListAccessKeys alice", "CreateAccessKey alice"]);
    let new = w.plan("alice").new_key.unwrap().id;
    assert_eq!(w.plan("alice").phase, Phase::WaitForAdoption);

    // wait_for_adoption, waiting: both keys' last use, no write.
    w.clock.advance(Duration::hours(1));
    let lu_old = format!("GetAccessKeyLastUsed {old}");
    let lu_new = format!("GetAccessKeyLastUsed {new}");
    let calls = w.calls_of(run()).await;
    assert_eq!(calls, ["ListAccessKeys alice", &lu_old, &lu_new]);

    // wait_for_adoption over, but the old key was used an hour ago:
    // check_last_used reuses the reading just taken (no second listing).
    w.clock.advance(Duration::days(1));
    w.sim.use_key(&new, "sqs", "eu-west-1");
    w.sim.use_key(&old, "s3", "eu-west-1");
    let calls = w.calls_of(run()).await;
    assert_eq!(calls, ["ListAccessKeys alice", &lu_old, &lu_new]);
    assert_eq!(w.plan("alice").phase, Phase::CheckLastUsed);

    // check_last_used, still waiting: the old key's last use only.
    w.clock.advance(Duration::hours(1));
    let calls = w.calls_of(run()).await;
    assert_eq!(calls, ["ListAccessKeys alice", &lu_old]);
    // The new key's last reading is kept on the observation, not erased.
    let plan = w.plan("alice");
    let last = plan.last_observation().unwrap();
    assert!(last.new_last_used.is_some());

    // check_last_used quiet -> set_inactive -> verify in one run: one
    // reading before the write, a fresh one after it.
    w.clock.advance(Duration::hours(4));
    let calls = w.calls_of(run()).await;
    let deactivate = format!("UpdateAccessKey alice {old} Inactive");
    assert_eq!(
        calls,
        [
            "ListAccessKeys alice",
            &lu_old,
            &deactivate,
            "ListAccessKeys alice",
            &lu_old,
            &lu_new
        ]
    );
    assert_eq!(w.plan("alice").phase, Phase::Verify);

    // verify over -> delete -> done: the verify reading guards the delete.
    w.clock.advance(Duration::days(1));
    let calls = w.calls_of(run()).await;
    let delete = format!("DeleteAccessKey alice {old}");
    assert_eq!(calls, ["ListAccessKeys alice", &lu_old, &lu_new, &delete]);
    assert_eq!(w.plan("alice").phase, Phase::Done);

    // done: no call at all.
    assert!(w.calls_of(run()).await.is_empty());
}

#[tokio::test]
async fn blocked_finished_and_other_account_plans_cost_no_call() {
    let w = World::new().await;
    w.user("drifted", Duration::days(200));
    w.user("elsewhere", Duration::days(200));
    w.plan_all(&zero_policy(), None).await;
    w.sim.add_key("drifted", start());
    let fleet = w.fleet();
    let path = w.store.path_for(ACCOUNT, "drifted");
    let report = run::run_one(
        &fleet.engine(),
        &fleet.store,
        path.clone(),
        RunOptions::default(),
    )
    .await;
    assert_eq!(report.category(), Category::Blocked);
    // Blocked now: the next run reads nothing until --retry-blocked.
    let calls = w
        .calls_of(run::run_one(
            &fleet.engine(),
            &fleet.store,
            path,
            RunOptions::default(),
        ))
        .await;
    assert!(calls.is_empty(), "{calls:?}");

    let other = Fleet {
        caller: Caller {
            account: "999988887777".into(),
            arn: "arn:aws:iam::999988887777:user/ops".into(),
        },
        ..w.fleet()
    };
    let path = w.store.path_for(ACCOUNT, "elsewhere");
    let mut result = None;
    let calls = w
        .calls_of(async {
            result = Some(
                run::run_one(&other.engine(), &other.store, path, RunOptions::default()).await,
            );
        })
        .await;
    assert!(calls.is_empty(), "{calls:?}");
    assert!(matches!(
        result,
        Some(RunResult::Report(ref r)) if matches!(r.outcome, Outcome::WrongAccount { .. })
    ));
}

#[tokio::test]
async fn a_zero_wait_plan_still_runs_to_done_in_one_run_on_a_moving_clock() {
    // The system clock moves between the create and the next decision;
    // a zero adoption wait must count as over, not wait for a past time.
    let w = World::new().await;
    w.user("alice", Duration::days(200));
    let policy: Policy = serde_yaml::from_str(
        "adoption_wait: 0s\nquiet_period: 0s\nverify_period: 0s\nrequire_new_key_use: false\nallow_short_quiet_period: true\n",
    )
    .unwrap();
    let mut request = crate::planner::PlanRequest {
        user: "alice",
        policy: &policy,
        delivery: "file:/nonexistent/{user}.csv",
        older_than: None,
        kind: crate::plan::PlanKind::Plan,
        notify: &[],
    };
    request.older_than = None;
    let _ = crate::planner::plan_user(&w.sim, &w.store, &w.caller, &w.stamp(), &request).await;
    // Quiet period 0s still sees the use an hour ago as quiet.
    let fleet = Fleet {
        clock: Arc::new(crate::clock::SystemClock),
        ..w.fleet()
    };
    let path = w.store.path_for(ACCOUNT, "alice");
    let result = run::run_one(&fleet.engine(), &fleet.store, path, RunOptions::default()).await;
    match result {
        RunResult::Report(r) => assert_eq!(r.phase, Phase::Done, "{:?}", r.outcome),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sim.keys("alice").len(), 1);
}

#[tokio::test]
async fn the_inventory_reports_every_key_and_the_plan_phase() {
    let w = World::new().await;
    let old = w.user("alice", Duration::days(200));
    w.user("bob", Duration::days(3));
    let second = w.sim.add_key("bob", start() - Duration::days(1));
    w.sim.add_user("carol");
    w.plan_all(&Policy::default(), None).await;
    let users = w.sim.list_users(None).await.unwrap();
    let request = InventoryRequest {
        account: ACCOUNT,
        now: w.clock.now(),
        older_than: None,
        concurrency: 3,
    };
    let before = w.sim.calls().len();
    let rows = inventory(w.gauge.as_ref(), &w.store, users.clone(), &request).await;
    let calls = w.sim.calls()[before..].to_vec();
    // One listing per user, one last-use read per key.
    assert_eq!(calls.len(), 3 + 3, "{calls:?}");
    let names: Vec<&str> = rows.iter().map(|r| r.user.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    let alice = &rows[0];
    assert_eq!(alice.plan_phase, Some(Phase::CreateSecondKey));
    assert_eq!(alice.keys.len(), 1);
    assert_eq!(alice.keys[0].id, old);
    assert_eq!(alice.keys[0].age_days, 200);
    assert_eq!(alice.keys[0].last_used_service.as_deref(), Some("s3"));
    assert!(alice.keys[0].last_used_at.is_some());
    let bob = &rows[1];
    assert_eq!(bob.keys.len(), 2);
    assert!(bob
        .keys
        .iter()
        .any(|k| k.id == second && k.last_used_at.is_none()));
    assert_eq!(bob.plan_phase, None);
    assert!(rows[2].keys.is_empty());

    // --older-than leaves out users whose keys are all young, without
    // reading their last use.
    let request = InventoryRequest {
        older_than: Some(Duration::days(90)),
        ..request
    };
    let before = w.sim.calls().len();
    let rows = inventory(w.gauge.as_ref(), &w.store, users, &request).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user, "alice");
    assert_eq!(w.sim.calls().len() - before, 3 + 1);
}

#[tokio::test]
async fn a_whole_rotation_in_one_run_takes_nine_calls() {
    let w = World::new().await;
    let old = w.user("alice", Duration::days(200));
    let policy: Policy = serde_yaml::from_str(
        "adoption_wait: 0s\nquiet_period: 0s\nverify_period: 0s\nrequire_new_key_use: false\nallow_short_quiet_period: true\n",
    )
    .unwrap();
    let request = crate::planner::PlanRequest {
        user: "alice",
        policy: &policy,
        delivery: "file:/nonexistent/{user}.csv",
        older_than: None,
        kind: crate::plan::PlanKind::Plan,
        notify: &[],
    };
    crate::planner::plan_user(&w.sim, &w.store, &w.caller, &w.stamp(), &request)
        .await
        .unwrap();
    let fleet = w.fleet();
    let path = w.store.path_for(ACCOUNT, "alice");
    let calls = w
        .calls_of(run::run_one(
            &fleet.engine(),
            &fleet.store,
            path,
            RunOptions::default(),
        ))
        .await;
    let new = w.plan("alice").new_key.unwrap().id;
    assert_eq!(w.plan("alice").phase, Phase::Done);
    let lu_old = format!("GetAccessKeyLastUsed {old}");
    let lu_new = format!("GetAccessKeyLastUsed {new}");
    assert_eq!(
        calls,
        [
            "ListAccessKeys alice".to_string(),
            "CreateAccessKey alice".into(),
            // wait_for_adoption is over at once; check_last_used needs the
            // old key's last use, which the create did not read.
            "ListAccessKeys alice".into(),
            lu_old.clone(),
            format!("UpdateAccessKey alice {old} Inactive"),
            "ListAccessKeys alice".into(),
            lu_old,
            lu_new,
            format!("DeleteAccessKey alice {old}"),
        ]
    );
}

/// Stops the batch when the first plan finishes, as a deadline or a
/// signal would at that moment.
struct StopAfterFirst(crate::fleet::Stop);

impl crate::fleet::RunProgress for StopAfterFirst {
    fn started(&mut self, _user: &str) {}
    fn finished(&mut self, _result: &RunResult) {
        self.0
            .request(crate::fleet::stop::Reason::Deadline("1m".into()));
    }
}

#[tokio::test]
async fn a_stopped_batch_finishes_plans_in_flight_and_leaves_the_rest_untouched() {
    let w = World::new().await;
    for i in 0..10 {
        w.user(&format!("app{i:02}"), Duration::days(200));
    }
    w.plan_all(&Policy::default(), None).await;
    let batch = crate::fleet::Batch {
        concurrency: 2,
        stop: crate::fleet::Stop::new(),
        grace: std::time::Duration::from_secs(60),
    };
    let mut progress = StopAfterFirst(batch.stop.clone());
    let paths = w.store.list(ACCOUNT).unwrap();
    let results = crate::fleet::run_all_until(
        &w.fleet(),
        paths,
        RunOptions::default(),
        &batch,
        &mut progress,
    )
    .await;
    assert_eq!(results.len(), 10, "every plan has a result, in plan order");
    let summary = Summary::of(&results);
    let advanced = summary.count(Category::Advanced);
    // The first plan, and at most the one in flight beside it.
    assert!((1..=2).contains(&advanced), "{summary:?}");
    assert_eq!(summary.count(Category::NotRun), 10 - advanced);
    for result in &results {
        let user = result.user();
        let plan = w.plan(user);
        match result.category() {
            Category::NotRun => {
                assert_eq!(plan.phase, Phase::CreateSecondKey, "{user}");
                assert!(plan.create_intent_at.is_none(), "{user}");
                assert_eq!(w.sim.keys(user).len(), 1, "{user}");
            }
            _ => assert_eq!(plan.phase, Phase::WaitForAdoption, "{user}"),
        }
    }
}
