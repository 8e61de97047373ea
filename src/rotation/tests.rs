//! Every phase and every guard, against the simulated account on a clock the
//! tests move. Each test states the world, runs the engine, and checks the
//! plan, IAM's keys and the writes made.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::clock::{Clock, ManualClock};
use crate::deliver::fake::FakeDeliver;
use crate::deliver::Held;
use crate::engine::{Engine, EngineError, Outcome, RunOptions, RunReport};
use crate::iam::Iam;
use crate::plan::{mask_key, ActionKind, KeyStatus, Phase, Plan, PlanStore, Stamp};
use crate::planner::{plan_user, PlanRequest, Planned};
use crate::rotation::policy::Policy;
use crate::rotation::{self, RollbackOptions};
use crate::sim::SimAccount;

const ACCOUNT: &str = "111122223333";

struct World {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    sim: SimAccount,
    store: PlanStore,
    deliver: FakeDeliver,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(start());
        let sim = SimAccount::new(ACCOUNT, Arc::new(clock.clone()));
        let store = PlanStore::new(dir.path().join("plans"));
        World {
            _dir: dir,
            clock,
            sim,
            store,
            deliver: FakeDeliver::default(),
        }
    }

    /// A user with one active key, 200 days old, last used an hour ago.
    fn user(&self, name: &str) -> String {
        self.sim.add_user(name);
        let key = self.sim.add_key(name, start() - Duration::days(200));
        self.clock.advance(-Duration::hours(1));
        self.sim.use_key(&key, "s3", "eu-west-1");
        self.clock.advance(Duration::hours(1));
        key
    }

    fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    async fn plan_with(&self, user: &str, policy: Policy) -> Planned {
        let caller = self.sim.caller_identity().await.unwrap();
        let stamp = Stamp::new(&self.clock, &caller);
        plan_user(
            &self.sim,
            &self.store,
            &caller,
            &stamp,
            &PlanRequest {
                user,
                policy: &policy,
                delivery: "file:/tmp/{user}.csv",
                older_than: None,
                kind: crate::plan::PlanKind::Plan,
                notify: &[],
            },
        )
        .await
        .unwrap()
    }

    async fn plan(&self, user: &str) -> Planned {
        self.plan_with(user, Policy::default()).await
    }

    fn path(&self, user: &str) -> std::path::PathBuf {
        self.store.path_for(ACCOUNT, user)
    }

    fn load(&self, user: &str) -> Plan {
        self.store.load(&self.path(user)).unwrap()
    }

    fn save(&self, plan: Plan) {
        let mut locked = self.store.lock(&self.path(&plan.user)).unwrap().unwrap();
        locked.plan = plan;
        locked.save().unwrap();
    }

    async fn engine(&self) -> Engine<'_> {
        Engine {
            iam: &self.sim,
            clock: &self.clock,
            deliver: &self.deliver,
            caller: self.sim.caller_identity().await.unwrap(),
        }
    }

    async fn run_with(&self, user: &str, options: RunOptions) -> Result<RunReport, EngineError> {
        let mut locked = self.store.lock(&self.path(user)).unwrap().unwrap();
        self.engine()
            .await
            .run(&mut locked, options)
            .await
            .map_err(|failure| failure.error)
    }

    async fn run(&self, user: &str) -> RunReport {
        self.run_with(user, RunOptions::default()).await.unwrap()
    }

    /// `rollback --abort [--delete-new]`.
    async fn rollback(&self, user: &str, delete_new: bool) -> Result<RunReport, EngineError> {
        self.rollback_with(
            user,
            RollbackOptions {
                abort: true,
                delete_new,
            },
        )
        .await
        .map(|(report, _)| report)
    }

    async fn rollback_with(
        &self,
        user: &str,
        options: RollbackOptions,
    ) -> Result<(RunReport, Option<String>), EngineError> {
        let mut locked = self.store.lock(&self.path(user)).unwrap().unwrap();
        self.engine().await.rollback(&mut locked, options).await
    }

    fn new_key(&self, user: &str) -> String {
        self.load(user).new_key.expect("plan records a new key").id
    }

    fn statuses(&self, user: &str) -> Vec<(String, KeyStatus)> {
        self.sim.keys(user)
    }
}

fn zero_policy() -> Policy {
    "adoption_wait: 0s\nquiet_period: 0s\nverify_period: 0s\nrequire_new_key_use: false\nallow_short_quiet_period: true\n"
        .parse_policy()
}

trait ParsePolicy {
    fn parse_policy(&self) -> Policy;
}

impl ParsePolicy for str {
    fn parse_policy(&self) -> Policy {
        serde_yaml::from_str(self).unwrap()
    }
}

fn waiting(report: &RunReport) -> (Option<DateTime<Utc>>, String) {
    match &report.outcome {
        Outcome::Waiting { until, reason, .. } => (*until, reason.clone()),
        other => panic!("expected a wait, got {other:?} in phase {}", report.phase),
    }
}

fn blocked(report: &RunReport) -> String {
    match &report.outcome {
        Outcome::Blocked { reason } => reason.clone(),
        other => panic!("expected blocked, got {other:?} in phase {}", report.phase),
    }
}

/// Takes a planned user to `verify` with the default policy.
async fn to_verify(w: &World, user: &str) -> (String, String) {
    let old = w.user(user);
    w.plan(user).await;
    w.run(user).await;
    let new = w.new_key(user);
    w.sim.use_key(&new, "s3", "eu-west-1");
    w.advance(Duration::days(6));
    w.sim.use_key(&old, "s3", "eu-west-1");
    w.advance(Duration::days(1));
    let report = w.run(user).await;
    // The old key was used a day ago: quiet_period runs from then.
    assert_eq!(report.phase, Phase::CheckLastUsed, "{report:?}");
    w.advance(Duration::days(2));
    w.advance(Duration::days(3));
    let report = w.run(user).await;
    assert_eq!(report.phase, Phase::Verify, "{report:?}");
    (old, new)
}

#[tokio::test]
async fn happy_path_with_zero_policy_runs_to_done_in_one_run() {
    let w = World::new();
    let old = w.user("alice");
    assert!(matches!(
        w.plan_with("alice", zero_policy()).await,
        Planned::Planned { .. }
    ));
    assert!(w.sim.writes().is_empty(), "planning writes nothing to IAM");
    // The old key is used "now": quiet_period 0s still lets it go.
    let report = w.run("alice").await;
    assert_eq!(report.phase, Phase::Done, "{report:?}");
    assert_eq!(report.outcome, Outcome::Finished);
    let new = w.new_key("alice");
    assert_eq!(w.statuses("alice"), vec![(new.clone(), KeyStatus::Active)]);
    let writes = w.sim.writes();
    assert_eq!(
        writes,
        vec![
            "CreateAccessKey alice".to_string(),
            format!("UpdateAccessKey alice {old} Inactive"),
            format!("DeleteAccessKey alice {old}"),
        ]
    );
    assert_eq!(*w.deliver.delivered.lock().unwrap(), vec![new]);
    let plan = w.load("alice");
    let phases: Vec<(Phase, Phase)> = plan.history.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        phases,
        vec![
            (Phase::CreateSecondKey, Phase::CreateSecondKey),
            (Phase::CreateSecondKey, Phase::WaitForAdoption),
            (Phase::WaitForAdoption, Phase::CheckLastUsed),
            (Phase::CheckLastUsed, Phase::SetInactive),
            (Phase::SetInactive, Phase::Verify),
            (Phase::Verify, Phase::Delete),
            (Phase::Delete, Phase::Done),
        ]
    );
    assert!(plan
        .history
        .iter()
        .all(|h| h.actor == "arn:aws:iam::111122223333:user/operator"));
}

#[tokio::test]
async fn each_phase_waits_for_its_own_condition() {
    let w = World::new();
    let old = w.user("bob");
    w.plan("bob").await;

    // create_second_key -> wait_for_adoption, then waits for 7 days and use.
    let report = w.run("bob").await;
    assert_eq!(report.phase, Phase::WaitForAdoption);
    let (until, reason) = waiting(&report);
    assert_eq!(until, Some(start() + Duration::days(7)));
    assert!(
        reason.contains("to be used") && reason.contains("adoption wait of 7d"),
        "{reason}"
    );
    let new = w.new_key("bob");

    // A second run before the wait ends changes nothing in IAM.
    let writes = w.sim.writes().len();
    let report = w.run("bob").await;
    assert_eq!(report.phase, Phase::WaitForAdoption);
    assert!(report.actions.is_empty());
    assert_eq!(w.sim.writes().len(), writes);

    // Time passes but the new key is never used: still waiting, no deadline.
    w.advance(Duration::days(8));
    let (until, reason) = waiting(&w.run("bob").await);
    assert_eq!(until, None);
    assert!(reason.contains("never has been"), "{reason}");

    // Used: on to check_last_used, which waits for the old key's quiet period.
    w.sim.use_key(&new, "ec2", "us-east-1");
    w.sim.use_key(&old, "s3", "eu-west-1");
    let report = w.run("bob").await;
    assert_eq!(report.phase, Phase::CheckLastUsed);
    let (until, reason) = waiting(&report);
    assert_eq!(until, Some(w.clock.now() + Duration::days(3)));
    assert!(reason.contains("by s3 in eu-west-1"), "{reason}");

    // Quiet for three days: set inactive, then verify for 7 days.
    w.advance(Duration::days(3));
    let report = w.run("bob").await;
    assert_eq!(report.phase, Phase::Verify);
    assert_eq!(
        w.statuses("bob"),
        vec![
            (old.clone(), KeyStatus::Inactive),
            (new.clone(), KeyStatus::Active)
        ]
    );
    let (until, _) = waiting(&report);
    assert_eq!(until, Some(w.clock.now() + Duration::days(7)));

    w.advance(Duration::days(7));
    let report = w.run("bob").await;
    assert_eq!(report.phase, Phase::Done);
    assert_eq!(w.statuses("bob"), vec![(new, KeyStatus::Active)]);
}

#[tokio::test]
async fn require_new_key_use_off_moves_on_after_the_wait_alone() {
    let w = World::new();
    w.user("dave");
    let policy =
        "adoption_wait: 1d\nquiet_period: 4h\nverify_period: 1d\nrequire_new_key_use: false\n"
            .parse_policy();
    w.plan_with("dave", policy).await;
    w.run("dave").await;
    w.advance(Duration::days(1));
    let report = w.run("dave").await;
    assert_eq!(report.phase, Phase::Verify, "{report:?}");
    w.advance(Duration::days(1));
    assert_eq!(w.run("dave").await.phase, Phase::Done);
}

#[tokio::test]
async fn old_key_in_use_holds_the_plan_in_check_last_used() {
    let w = World::new();
    let old = w.user("erin");
    w.plan("erin").await;
    w.run("erin").await;
    w.sim.use_key(&w.new_key("erin"), "s3", "eu-west-1");
    w.advance(Duration::days(6));
    for _ in 0..10 {
        w.advance(Duration::days(2));
        w.sim.use_key(&old, "dynamodb", "eu-west-1");
        let report = w.run("erin").await;
        assert_eq!(report.phase, Phase::CheckLastUsed);
        let (_, reason) = waiting(&report);
        assert!(reason.contains("dynamodb in eu-west-1"), "{reason}");
    }
    assert_eq!(
        w.sim.writes().len(),
        1,
        "only the create: {:?}",
        w.sim.writes()
    );
    let plan = w.load("erin");
    assert!(!plan.observations.is_empty());
    assert!(plan.observations.len() <= 20);
}

#[tokio::test]
async fn set_inactive_rechecks_and_never_deactivates_a_key_used_again() {
    let w = World::new();
    let old = w.user("fay");
    w.plan("fay").await;
    w.run("fay").await;
    // Stop in set_inactive as an interrupted run would.
    let mut plan = w.load("fay");
    plan.phase = Phase::SetInactive;
    w.save(plan);
    w.sim.use_key(&old, "s3", "eu-west-1");
    let report = w.run("fay").await;
    assert_eq!(report.phase, Phase::CheckLastUsed);
    assert_eq!(w.sim.writes().len(), 1, "{:?}", w.sim.writes());
    assert_eq!(w.statuses("fay")[0], (old, KeyStatus::Active));
}

#[tokio::test]
async fn use_after_deactivation_blocks_verify_and_retry_rebaselines() {
    let w = World::new();
    let (old, _) = to_verify(&w, "gus").await;
    w.advance(Duration::hours(5));
    w.sim.use_key(&old, "lambda", "us-west-2");
    let report = w.run("gus").await;
    let reason = blocked(&report);
    assert!(
        reason.contains("rollback gus") && reason.contains("--retry-blocked"),
        "{reason}"
    );
    let plan = w.load("gus");
    assert_eq!(plan.phase, Phase::Blocked);
    assert_eq!(plan.blocked_in, Some(Phase::Verify));

    // Blocked stays blocked on a plain run.
    w.advance(Duration::days(30));
    assert_eq!(w.run("gus").await.phase, Phase::Blocked);

    // The operator fixed the application: retry takes the latest use as the
    // new baseline and restarts the verify period.
    let report = w
        .run_with(
            "gus",
            RunOptions {
                retry_blocked: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.phase, Phase::Verify, "{report:?}");
    let (until, _) = waiting(&report);
    assert_eq!(until, Some(w.clock.now() + Duration::days(7)));
    w.advance(Duration::days(7));
    assert_eq!(w.run("gus").await.phase, Phase::Done);
}

#[tokio::test]
async fn drift_blocks_without_any_write() {
    type Drift = fn(&World, &str, &str, &str);
    let cases: Vec<(&str, Drift, &str)> = vec![
        (
            "unknown key",
            |w, user, _old, _new| {
                // Someone removed the new key and made their own.
                w.sim.remove_key(user, &w.new_key(user));
                w.sim.add_key(user, w.clock.now());
            },
            "no longer exists",
        ),
        (
            "old key deactivated by hand",
            |w, user, old, _new| w.sim.set_status(user, old, KeyStatus::Inactive),
            "is Inactive in IAM but the plan expects it Active",
        ),
        (
            "old key deleted by hand",
            |w, user, old, _new| w.sim.remove_key(user, old),
            "Someone deleted it outside iam-rotate",
        ),
        (
            "new key deactivated by hand",
            |w, user, _old, new| w.sim.set_status(user, new, KeyStatus::Inactive),
            "Reactivate it",
        ),
        (
            "user deleted",
            |w, user, _old, _new| w.sim.remove_user(user),
            "no longer exists in account",
        ),
    ];
    for (name, drift, expect) in cases {
        let w = World::new();
        let old = w.user("hank");
        w.plan("hank").await;
        w.run("hank").await;
        let new = w.new_key("hank");
        drift(&w, "hank", &old, &new);
        let writes = w.sim.writes().len();
        w.advance(Duration::days(8));
        let report = w.run("hank").await;
        let reason = blocked(&report);
        assert!(reason.contains(expect), "{name}: {reason}");
        assert_eq!(w.sim.writes().len(), writes, "{name}: no write after drift");
        let plan = w.load("hank");
        assert_eq!(plan.phase, Phase::Blocked, "{name}");
        assert_eq!(plan.blocked_in, Some(Phase::WaitForAdoption), "{name}");
    }
}

#[tokio::test]
async fn a_stranger_key_before_create_blocks_instead_of_hitting_the_limit() {
    let w = World::new();
    w.user("ivan");
    w.plan("ivan").await;
    // Someone made a second key long after the plan: not ours.
    w.advance(Duration::hours(2));
    let mut plan = w.load("ivan");
    plan.create_intent_at = Some(w.clock.now() - Duration::hours(1));
    w.save(plan);
    w.sim.add_key("ivan", w.clock.now());
    let reason = blocked(&w.run("ivan").await);
    assert!(reason.contains("does not know"), "{reason}");
    assert!(w.sim.writes().is_empty());
}

#[tokio::test]
async fn wrong_account_touches_nothing_and_keeps_the_plan() {
    let w = World::new();
    w.user("jane");
    w.plan("jane").await;
    let before = std::fs::read(w.path("jane")).unwrap();
    w.sim.set_caller_account("999988887777");
    let report = w.run("jane").await;
    match &report.outcome {
        Outcome::WrongAccount { reason } => {
            assert!(
                reason.contains("999988887777") && reason.contains(ACCOUNT),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(w.sim.writes().is_empty());
    assert_eq!(std::fs::read(w.path("jane")).unwrap(), before);
    let err = w.rollback("jane", true).await.unwrap_err().to_string();
    assert!(err.contains("999988887777"), "{err}");
}

#[tokio::test]
async fn an_interrupted_create_leaves_an_orphan_that_is_deleted_then_replaced() {
    let w = World::new();
    let old = w.user("kim");
    w.plan("kim").await;
    w.sim.lose_next_create_response();
    let err = w.run_with("kim", RunOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    let plan = w.load("kim");
    assert_eq!(plan.phase, Phase::CreateSecondKey);
    assert!(plan.create_intent_at.is_some());
    assert!(plan.last_error.is_some());
    let orphan = w
        .statuses("kim")
        .into_iter()
        .find(|(id, _)| *id != old)
        .unwrap()
        .0;

    let report = w.run("kim").await;
    assert_eq!(report.phase, Phase::WaitForAdoption, "{report:?}");
    let new = w.new_key("kim");
    assert_ne!(new, orphan);
    assert_eq!(
        w.statuses("kim"),
        vec![(old, KeyStatus::Active), (new.clone(), KeyStatus::Active)]
    );
    // The orphan was made inactive before it was deleted.
    let writes = w.sim.writes();
    assert_eq!(
        writes[1..],
        [
            format!("UpdateAccessKey kim {orphan} Inactive"),
            format!("DeleteAccessKey kim {orphan}"),
            "CreateAccessKey kim".to_string(),
        ]
    );
    let plan = w.load("kim");
    assert!(plan.last_error.is_none());
    assert!(plan.create_intent_at.is_none());
    assert_eq!(*w.deliver.delivered.lock().unwrap(), vec![new]);
}

#[tokio::test]
async fn delivery_failures_leave_no_key_and_a_retryable_plan() {
    let w = World::new();
    let old = w.user("lee");
    w.plan("lee").await;

    *w.deliver.fail_check.lock().unwrap() = true;
    let err = w.run_with("lee", RunOptions::default()).await.unwrap_err();
    assert!(matches!(err, EngineError::DeliveryCheck(_)), "{err}");
    assert!(w.sim.writes().is_empty(), "checked before CreateAccessKey");
    *w.deliver.fail_check.lock().unwrap() = false;

    *w.deliver.fail_deliver.lock().unwrap() = true;
    let err = w.run_with("lee", RunOptions::default()).await.unwrap_err();
    assert!(matches!(err, EngineError::DeliveryFailed { .. }), "{err}");
    assert_eq!(w.statuses("lee"), vec![(old.clone(), KeyStatus::Active)]);
    let plan = w.load("lee");
    assert_eq!(plan.phase, Phase::CreateSecondKey);
    assert!(plan.create_intent_at.is_none());
    assert!(plan.history.last().unwrap().action.contains("delivery"));

    *w.deliver.fail_deliver.lock().unwrap() = false;
    let report = w.run("lee").await;
    assert_eq!(report.phase, Phase::WaitForAdoption);
    assert_eq!(w.statuses("lee").len(), 2);
}

#[tokio::test]
async fn interrupted_deactivate_and_delete_are_recognised() {
    // Deactivated in IAM, but the plan never recorded it.
    let w = World::new();
    let old = w.user("mia");
    w.plan("mia").await;
    w.run("mia").await;
    w.advance(Duration::days(4));
    let mut plan = w.load("mia");
    plan.phase = Phase::SetInactive;
    plan.old_key.status = KeyStatus::Active;
    w.save(plan);
    w.sim.set_status("mia", &old, KeyStatus::Inactive);
    let report = w.run("mia").await;
    assert_eq!(report.phase, Phase::Verify, "{report:?}");
    assert!(report
        .actions
        .iter()
        .any(|a| a.text.contains("already inactive")));

    // Deleted in IAM, but the plan still says delete.
    let w = World::new();
    let old = w.user("ned");
    w.plan("ned").await;
    w.run("ned").await;
    let mut plan = w.load("ned");
    plan.phase = Phase::Delete;
    plan.old_key.status = KeyStatus::Inactive;
    w.save(plan);
    w.sim.remove_key("ned", &old);
    let report = w.run("ned").await;
    assert_eq!(report.phase, Phase::Done);
    assert!(report
        .actions
        .iter()
        .any(|a| a.text.contains("already deleted")));
}

#[tokio::test]
async fn transient_failures_keep_the_plan_where_it_was() {
    let w = World::new();
    let old = w.user("olga");
    w.plan_with("olga", zero_policy()).await;
    w.sim.fail_next("UpdateAccessKey");
    let err = w.run_with("olga", RunOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("ServiceFailure"), "{err}");
    let plan = w.load("olga");
    assert_eq!(plan.phase, Phase::SetInactive);
    assert!(plan
        .last_error
        .as_deref()
        .unwrap()
        .contains("ServiceFailure"));
    assert_eq!(w.statuses("olga")[0], (old, KeyStatus::Active));
    assert_eq!(w.run("olga").await.phase, Phase::Done);
    assert!(w.load("olga").last_error.is_none());
}

#[tokio::test]
async fn rollback_from_every_phase_before_delete() {
    for phase in [
        Phase::CreateSecondKey,
        Phase::WaitForAdoption,
        Phase::CheckLastUsed,
        Phase::Verify,
    ] {
        let w = World::new();
        let old = w.user("pat");
        w.plan("pat").await;
        if phase != Phase::CreateSecondKey {
            w.run("pat").await;
            w.sim.use_key(&w.new_key("pat"), "s3", "eu-west-1");
        }
        if matches!(phase, Phase::CheckLastUsed | Phase::Verify) {
            w.advance(Duration::days(6));
            w.sim.use_key(&old, "s3", "eu-west-1");
            w.advance(Duration::days(1));
            w.run("pat").await;
        }
        if phase == Phase::Verify {
            w.advance(Duration::days(3));
            w.run("pat").await;
        }
        assert_eq!(w.load("pat").phase, phase);
        let report = w.rollback("pat", false).await.unwrap();
        assert_eq!(report.phase, Phase::RolledBack, "{phase}");
        let statuses = w.statuses("pat");
        assert_eq!(statuses[0], (old.clone(), KeyStatus::Active), "{phase}");
        // The new key, if any, stays unless asked.
        let expect_keys = if phase == Phase::CreateSecondKey {
            1
        } else {
            2
        };
        assert_eq!(statuses.len(), expect_keys, "{phase}");
        // A rolled-back plan is never advanced.
        w.advance(Duration::days(100));
        let writes = w.sim.writes().len();
        assert_eq!(w.run("pat").await.outcome, Outcome::Finished);
        assert_eq!(w.sim.writes().len(), writes);
        // --delete-new afterwards still removes the new key.
        w.rollback("pat", true).await.unwrap();
        assert_eq!(w.statuses("pat"), vec![(old, KeyStatus::Active)], "{phase}");
    }
}

#[tokio::test]
async fn rollback_with_delete_new_deactivates_before_deleting() {
    let w = World::new();
    let (old, new) = to_verify(&w, "quinn").await;
    w.rollback("quinn", true).await.unwrap();
    assert_eq!(w.statuses("quinn"), vec![(old.clone(), KeyStatus::Active)]);
    let writes = w.sim.writes();
    let tail: Vec<&String> = writes.iter().rev().take(3).rev().collect();
    assert_eq!(
        tail,
        [
            &format!("UpdateAccessKey quinn {old} Active"),
            &format!("UpdateAccessKey quinn {new} Inactive"),
            &format!("DeleteAccessKey quinn {new}"),
        ]
    );
}

#[tokio::test]
async fn rollback_after_delete_is_refused() {
    let w = World::new();
    w.user("rita");
    w.plan_with("rita", zero_policy()).await;
    assert_eq!(w.run("rita").await.phase, Phase::Done);
    let writes = w.sim.writes().len();
    let err = w.rollback("rita", false).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot come back") || err.contains("deleted"),
        "{err}"
    );
    assert_eq!(w.sim.writes().len(), writes);
    assert_eq!(w.load("rita").phase, Phase::Done);
}

#[tokio::test]
async fn a_locked_plan_is_not_run_twice() {
    let w = World::new();
    w.user("sam");
    w.plan("sam").await;
    let held = w.store.lock(&w.path("sam")).unwrap().unwrap();
    assert!(w.store.lock(&w.path("sam")).unwrap().is_none());
    drop(held);
    assert!(w.store.lock(&w.path("sam")).unwrap().is_some());
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let w = World::new();
    w.user("tess");
    w.plan("tess").await;
    let before = std::fs::read(w.path("tess")).unwrap();
    let report = w
        .run_with(
            "tess",
            RunOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    match report.outcome {
        Outcome::WouldAct { steps } => {
            assert!(
                steps[0].text.contains("would create a second access key"),
                "{steps:?}"
            );
            let last = steps.last().unwrap();
            assert!(
                matches!(last.kind, "wait" | "finished"),
                "a chain ends in a wait or the end: {steps:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(w.sim.writes().is_empty());
    assert_eq!(std::fs::read(w.path("tess")).unwrap(), before);
}

#[tokio::test]
async fn the_planner_refuses_what_cannot_be_rotated() {
    let w = World::new();
    w.user("two");
    w.sim.add_key("two", start() - Duration::days(10));
    match w.plan("two").await {
        Planned::Refused { reason } => {
            assert!(reason.contains("already has two access keys"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!w.path("two").exists());

    w.sim.add_user("idle");
    let key = w.sim.add_key("idle", start());
    w.sim.set_status("idle", &key, KeyStatus::Inactive);
    assert!(matches!(w.plan("idle").await, Planned::Refused { .. }));

    w.sim.add_user("nokey");
    assert!(matches!(w.plan("nokey").await, Planned::Refused { .. }));
    assert!(matches!(w.plan("ghost").await, Planned::Refused { .. }));

    // An unfinished plan is never reset.
    w.user("busy");
    w.plan("busy").await;
    w.run("busy").await;
    let before = std::fs::read(w.path("busy")).unwrap();
    assert!(matches!(w.plan("busy").await, Planned::Skipped { .. }));
    assert_eq!(std::fs::read(w.path("busy")).unwrap(), before);
    assert!(w.sim.writes().iter().all(|c| c.ends_with("busy")));
}

#[tokio::test]
async fn outlook_says_what_happens_next() {
    let w = World::new();
    w.user("uma");
    w.plan("uma").await;
    w.run("uma").await;
    let plan = w.load("uma");
    let outlook = super::outlook(&plan, w.clock.now());
    let text = format!("{outlook:?}");
    assert!(text.contains("adoption"), "{text}");
}

#[tokio::test]
async fn a_delivered_but_unrecorded_key_is_kept_not_deleted() {
    let w = World::new();
    let old = w.user("vic");
    w.plan("vic").await;
    w.run("vic").await;
    let new = w.new_key("vic");
    // As if the run died after delivering, before saving the plan.
    let mut plan = w.load("vic");
    plan.new_key = None;
    plan.phase = Phase::CreateSecondKey;
    plan.create_intent_at = Some(w.clock.now());
    w.save(plan);
    let writes = w.sim.writes().len();
    let report = w.run("vic").await;
    assert_eq!(report.phase, Phase::WaitForAdoption, "{report:?}");
    assert!(
        report.actions[0].text.contains("already delivered"),
        "{report:?}"
    );
    assert_eq!(w.new_key("vic"), new);
    assert_eq!(
        w.sim.writes().len(),
        writes,
        "nothing deleted, nothing created"
    );
    assert_eq!(
        w.statuses("vic"),
        vec![(old, KeyStatus::Active), (new, KeyStatus::Active)]
    );
}

#[tokio::test]
async fn delete_new_never_leaves_a_user_without_an_active_key() {
    let w = World::new();
    let old = w.user("wes");
    w.plan("wes").await;
    w.run("wes").await;
    w.rollback("wes", false).await.unwrap();
    // Someone deactivates the old key after the rollback.
    w.sim.set_status("wes", &old, KeyStatus::Inactive);
    let writes = w.sim.writes().len();
    let err = w.rollback("wes", true).await.unwrap_err().to_string();
    assert!(err.contains("without a working key"), "{err}");
    assert_eq!(w.sim.writes().len(), writes);
    assert_eq!(w.statuses("wes").len(), 2);
}

#[tokio::test]
async fn a_refused_create_clears_the_intent_so_a_strangers_key_is_never_taken_for_an_orphan() {
    let w = World::new();
    w.user("xia");
    w.plan("xia").await;
    w.sim.fail_next("CreateAccessKey");
    let err = w.run_with("xia", RunOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("ServiceFailure"), "{err}");
    assert!(w.load("xia").create_intent_at.is_none());
    // Minutes later someone else makes a key for the user.
    w.advance(Duration::minutes(3));
    let stranger = w.sim.add_key("xia", w.clock.now());
    let writes = w.sim.writes().len();
    let reason = blocked(&w.run("xia").await);
    assert!(reason.contains("does not know"), "{reason}");
    assert_eq!(
        w.sim.writes().len(),
        writes,
        "the stranger's key is left alone"
    );
    assert!(w.statuses("xia").iter().any(|(id, _)| *id == stranger));
}

#[tokio::test]
async fn a_user_never_deletes_the_new_key_it_is_signed_in_with() {
    let w = World::new();
    let old = w.user("yan");
    w.plan("yan").await;
    w.run("yan").await;
    let plan = w.load("yan");
    let engine = Engine {
        caller: crate::iam::Caller {
            account: ACCOUNT.into(),
            arn: plan.user_arn.clone(),
        },
        ..w.engine().await
    };
    let mut locked = w.store.lock(&w.path("yan")).unwrap().unwrap();
    let writes = w.sim.writes().len();
    let err = engine
        .rollback(
            &mut locked,
            RollbackOptions {
                abort: true,
                delete_new: true,
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing --delete-new"), "{err}");
    assert_eq!(w.sim.writes().len(), writes);
    assert_eq!(w.statuses("yan").len(), 2);
    assert_eq!(w.statuses("yan")[0], (old, KeyStatus::Active));
}

/// The orphan rule, in the pure core: a plan with an unanswered create
/// intent at `intent`, and IAM holding the old key plus `candidate`.
mod orphans {
    use super::*;
    use crate::iam::{LastUse, LiveKey};
    use crate::rotation::{decide, orphan_window, Decision, Observed, Step, ORPHAN_SKEW};

    const CANDIDATE: &str = "AKIACANDIDATE0000001";

    async fn planned() -> (World, Plan) {
        let w = World::new();
        w.user("oona");
        w.plan("oona").await;
        let mut plan = w.load("oona");
        plan.create_intent_at = Some(start());
        (w, plan)
    }

    fn seen(
        plan: &Plan,
        created_at: DateTime<Utc>,
        used: Option<DateTime<Utc>>,
        delivered: Held,
    ) -> Observed {
        let now = start() + Duration::minutes(10);
        Observed {
            now,
            system_now: now,
            caller_account: ACCOUNT.into(),
            keys: Some(vec![
                LiveKey {
                    id: plan.old_key.id.clone(),
                    status: KeyStatus::Active,
                    created_at: plan.old_key.created_at,
                },
                LiveKey {
                    id: CANDIDATE.into(),
                    status: KeyStatus::Active,
                    created_at,
                },
            ]),
            old_use: None,
            new_use: None,
            orphan_use: Some(LastUse {
                at: used,
                service: used.map(|_| "sts".to_string()),
                region: used.map(|_| "us-east-1".to_string()),
            }),
            delivered: Some(delivered),
        }
    }

    fn deletes(decision: &Decision) -> bool {
        *decision
            == Decision::Act(Step::DeleteOrphan {
                key_id: CANDIDATE.into(),
            })
    }

    fn block_reason(decision: Decision) -> String {
        match decision {
            Decision::Block { reason } => reason,
            other => panic!("expected a block, got {other:?}"),
        }
    }

    #[test]
    fn the_window_runs_from_the_intent_to_the_calls_timeout_with_a_minute_of_skew() {
        let intent = start();
        let timeout = Duration::seconds(crate::iam::CREATE_ACCESS_KEY_TIMEOUT.as_secs() as i64);
        assert_eq!(ORPHAN_SKEW, Duration::minutes(1));
        assert_eq!(
            orphan_window(intent),
            (intent - ORPHAN_SKEW, intent + timeout + ORPHAN_SKEW)
        );
    }

    #[tokio::test]
    async fn inside_the_window_and_never_used_is_deleted() {
        let (_w, plan) = planned().await;
        let decision = decide(
            &plan,
            &seen(&plan, start() + Duration::seconds(2), None, Held::Nothing),
        );
        assert!(deletes(&decision), "{decision:?}");
        // The destination holding the old key (or another) changes nothing.
        let old = Held::Key(plan.old_key.id.clone());
        let decision = decide(
            &plan,
            &seen(&plan, start() + Duration::seconds(2), None, old),
        );
        assert!(deletes(&decision), "{decision:?}");
    }

    #[tokio::test]
    async fn inside_the_window_but_used_blocks_naming_the_key() {
        let (_w, plan) = planned().await;
        let created = start() + Duration::seconds(5);
        let used = start() + Duration::minutes(2);
        let reason = block_reason(decide(
            &plan,
            &seen(&plan, created, Some(used), Held::Nothing),
        ));
        for words in [
            "AKIA…0001",
            "created 2026-03-02T09:00:05Z",
            "last used",
            "2026-03-02T09:02:00Z",
            "not provably",
            "--retry-blocked oona",
            &format!("--access-key-id {CANDIDATE}"),
        ] {
            assert!(reason.contains(words), "{words:?} in {reason}");
        }
    }

    #[tokio::test]
    async fn created_after_the_window_blocks_even_unused() {
        let (_w, plan) = planned().await;
        let reason = block_reason(decide(
            &plan,
            &seen(&plan, start() + Duration::minutes(10), None, Held::Nothing),
        ));
        assert!(reason.contains("AKIA…0001"), "{reason}");
        assert!(reason.contains("never used"), "{reason}");
        assert!(reason.contains("after the window"), "{reason}");
        assert!(reason.contains("2026-03-02T09:01:30Z"), "{reason}");
    }

    #[tokio::test]
    async fn the_bounds_of_the_window_are_inside_it_and_a_second_beyond_is_not() {
        let (_w, plan) = planned().await;
        let (first, last) = orphan_window(start());
        assert_eq!(first, start() - Duration::seconds(60));
        assert_eq!(last, start() + Duration::seconds(90));
        for (created, inside) in [
            (first, true),
            (last, true),
            (first - Duration::seconds(1), false),
            (last + Duration::seconds(1), false),
        ] {
            let decision = decide(&plan, &seen(&plan, created, None, Held::Nothing));
            assert_eq!(deletes(&decision), inside, "{created}: {decision:?}");
            if !inside {
                let reason = block_reason(decision);
                let side = if created < first {
                    "before the window"
                } else {
                    "after the window"
                };
                assert!(reason.contains(side), "{reason}");
            }
        }
    }

    #[tokio::test]
    async fn a_key_the_destination_holds_is_adopted_wherever_and_however_used() {
        let (_w, plan) = planned().await;
        let held = Held::Key(CANDIDATE.into());
        for (created, used) in [
            (start() + Duration::seconds(3), None),
            (
                start() + Duration::seconds(3),
                Some(start() + Duration::minutes(1)),
            ),
            (start() + Duration::hours(3), None),
        ] {
            assert_eq!(
                decide(&plan, &seen(&plan, created, used, held.clone())),
                Decision::Act(Step::AdoptDelivered {
                    key_id: CANDIDATE.into()
                })
            );
        }
    }

    #[tokio::test]
    async fn a_destination_that_cannot_be_read_deletes_nothing() {
        let (_w, plan) = planned().await;
        let mut observed = seen(
            &plan,
            start() + Duration::seconds(3),
            None,
            Held::Unknown("GetSecretValue failed (AccessDeniedException: no)".into()),
        );
        match decide(&plan, &observed) {
            Decision::Unsure { reason } => {
                assert!(reason.contains("AKIA…0001"), "{reason}");
                assert!(reason.contains("AccessDeniedException"), "{reason}");
                assert!(reason.contains("Nothing was deleted"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        // Not read at all is no better.
        observed.delivered = None;
        assert!(matches!(decide(&plan, &observed), Decision::Unsure { .. }));
        // Nor is a last use that was not read.
        observed.delivered = Some(Held::Nothing);
        observed.orphan_use = None;
        let reason = block_reason(decide(&plan, &observed));
        assert!(reason.contains("could not be read"), "{reason}");
    }

    #[tokio::test]
    async fn a_delivered_key_someone_deactivated_blocks() {
        let (_w, plan) = planned().await;
        let mut observed = seen(
            &plan,
            start() + Duration::seconds(3),
            None,
            Held::Key(CANDIDATE.into()),
        );
        observed.keys.as_mut().unwrap()[1].status = KeyStatus::Inactive;
        let reason = block_reason(decide(&plan, &observed));
        assert!(reason.contains("Inactive"), "{reason}");
        assert!(reason.contains("AKIA…0001"), "{reason}");
    }
}

#[tokio::test]
async fn an_orphan_someone_used_is_kept_and_blocks_the_plan() {
    let w = World::new();
    let old = w.user("uma");
    w.plan("uma").await;
    w.sim.lose_next_create_response();
    w.run_with("uma", RunOptions::default()).await.unwrap_err();
    let orphan = w
        .statuses("uma")
        .into_iter()
        .find(|(id, _)| *id != old)
        .unwrap()
        .0;
    w.advance(Duration::minutes(1));
    w.sim.use_key(&orphan, "s3", "eu-west-1");
    let writes = w.sim.writes().len();
    let reason = blocked(&w.run("uma").await);
    assert!(reason.contains(&crate::plan::mask_key(&orphan)), "{reason}");
    assert!(reason.contains("last used"), "{reason}");
    assert_eq!(w.sim.writes().len(), writes, "nothing touched");
    assert_eq!(w.statuses("uma").len(), 2);
    // rollback --delete-new keeps it too, and says so.
    let report = w.rollback("uma", true).await.unwrap();
    assert_eq!(report.phase, Phase::RolledBack);
    assert!(
        report.actions[0].text.contains("kept key")
            && report.actions[0].text.contains("not provably"),
        "{report:?}"
    );
    assert_eq!(w.sim.writes().len(), writes, "nothing touched");
    assert_eq!(w.statuses("uma").len(), 2);
}

#[tokio::test]
async fn rollback_with_delete_new_deletes_an_orphan_that_is_provably_ours() {
    let w = World::new();
    let old = w.user("ulf");
    w.plan("ulf").await;
    w.sim.lose_next_create_response();
    w.run_with("ulf", RunOptions::default()).await.unwrap_err();
    assert_eq!(w.statuses("ulf").len(), 2);
    w.rollback("ulf", true).await.unwrap();
    assert_eq!(w.statuses("ulf"), vec![(old, KeyStatus::Active)]);
}

#[tokio::test]
async fn an_orphan_at_an_unreadable_destination_is_left_and_the_run_fails() {
    let w = World::new();
    let old = w.user("una");
    w.plan("una").await;
    w.sim.lose_next_create_response();
    w.run_with("una", RunOptions::default()).await.unwrap_err();
    *w.deliver.held.lock().unwrap() = Some(Held::Unknown("the network is down (test)".into()));
    let writes = w.sim.writes().len();
    let err = w
        .run_with("una", RunOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("could not tell"), "{err}");
    assert!(err.contains("the network is down"), "{err}");
    assert_eq!(w.sim.writes().len(), writes, "nothing deleted");
    let plan = w.load("una");
    assert_eq!(plan.phase, Phase::CreateSecondKey);
    assert!(plan.create_intent_at.is_some());
    // Once it can be read, the orphan goes and the key is made again.
    *w.deliver.held.lock().unwrap() = None;
    assert_eq!(w.run("una").await.phase, Phase::WaitForAdoption);
    assert_eq!(w.statuses("una").len(), 2);
    assert_eq!(w.statuses("una")[0], (old, KeyStatus::Active));
}

#[tokio::test]
async fn dry_run_lists_the_whole_chain_a_real_run_then_takes() {
    let w = World::new();
    let old = w.user("tara");
    w.plan_with("tara", zero_policy()).await;
    let before = std::fs::read(w.path("tara")).unwrap();
    let dry = w
        .run_with(
            "tara",
            RunOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let Outcome::WouldAct { steps } = dry.outcome else {
        panic!("{:?}", dry.outcome);
    };
    let texts: Vec<&str> = steps.iter().map(|s| s.text.as_str()).collect();
    assert!(w.sim.writes().is_empty(), "a dry run writes nothing");
    assert_eq!(std::fs::read(w.path("tara")).unwrap(), before);
    assert_eq!(steps.len(), 7, "{texts:#?}");
    assert!(
        texts[0].starts_with("would create a second access key"),
        "{texts:#?}"
    );
    assert!(
        texts[1].starts_with("would move to check_last_used"),
        "{texts:#?}"
    );
    assert!(
        texts[2].starts_with("would move to set_inactive"),
        "{texts:#?}"
    );
    assert_eq!(
        texts[3],
        format!("would set old key {} inactive", mask_key(&old))
    );
    assert!(texts[4].starts_with("would move to delete"), "{texts:#?}");
    assert_eq!(texts[5], format!("would delete old key {}", mask_key(&old)));
    assert_eq!(texts[6], "would be done: nothing more to do");
    assert_eq!(steps[3].key_id.as_deref(), Some(old.as_str()));
    // The real run takes exactly those steps.
    let real = w.run("tara").await;
    assert_eq!(real.phase, Phase::Done);
    assert_eq!(real.actions.len(), 6, "{:?}", real.actions);
}

#[tokio::test]
async fn rollback_goes_back_to_step_2_and_the_same_rotation_finishes() {
    let w = World::new();
    let old = w.user("ulla");
    let policy: Policy = serde_yaml::from_str(
        "adoption_wait: 1d\nquiet_period: 4h\nverify_period: 2d\nrequire_new_key_use: true\n",
    )
    .unwrap();
    w.plan_with("ulla", policy).await;
    w.run("ulla").await;
    let new = w.new_key("ulla");
    w.sim.use_key(&new, "s3", "eu-west-1");
    w.advance(Duration::days(2));
    w.run("ulla").await;
    assert_eq!(w.load("ulla").phase, Phase::Verify);
    // An application still on the old key breaks: it is used while inactive.
    w.advance(Duration::hours(1));
    w.sim.use_key(&old, "lambda", "us-west-2");
    let blocked = w.run("ulla").await;
    assert!(
        matches!(blocked.outcome, Outcome::Blocked { .. }),
        "{blocked:?}"
    );

    let restart_at = w.clock.now();
    let (report, unchanged) = w
        .rollback_with(
            "ulla",
            RollbackOptions {
                abort: false,
                delete_new: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(unchanged, None);
    assert_eq!(report.phase, Phase::WaitForAdoption);
    let plan = w.load("ulla");
    assert_eq!(plan.restarted_at, Some(restart_at));
    assert_eq!(plan.old_key.status, KeyStatus::Active);
    assert_eq!(plan.old_key.deactivated_at, None);
    assert_eq!(plan.new_key.as_ref().unwrap().id, new, "the same new key");
    assert_eq!(
        plan.history.last().unwrap().kind,
        Some(ActionKind::Restarted)
    );
    assert_eq!(
        w.statuses("ulla"),
        vec![
            (old.clone(), KeyStatus::Active),
            (new.clone(), KeyStatus::Active)
        ]
    );
    assert_eq!(
        rotation::next_command(&plan),
        Some(rotation::NextCommand::Run)
    );

    // The adoption wait counts again from the rollback.
    w.advance(Duration::hours(23));
    w.run("ulla").await;
    assert_eq!(w.load("ulla").phase, Phase::WaitForAdoption);
    // The failing application used the old key until it was switched.
    w.advance(Duration::hours(1));
    w.sim.use_key(&old, "lambda", "us-west-2");
    w.advance(Duration::hours(1));
    w.run("ulla").await;
    assert_eq!(w.load("ulla").phase, Phase::CheckLastUsed);
    w.advance(Duration::hours(4));
    w.run("ulla").await;
    assert_eq!(w.load("ulla").phase, Phase::Verify);
    w.advance(Duration::days(2));
    let done = w.run("ulla").await;
    assert_eq!(done.phase, Phase::Done, "{done:?}");
    assert_eq!(w.statuses("ulla"), vec![(new, KeyStatus::Active)]);
}

#[tokio::test]
async fn rollback_before_the_old_key_went_inactive_changes_nothing() {
    let w = World::new();
    w.user("vic");
    w.plan("vic").await;
    w.run("vic").await;
    let before = std::fs::read(w.path("vic")).unwrap();
    let writes = w.sim.writes().len();
    let (_, unchanged) = w
        .rollback_with("vic", RollbackOptions::default())
        .await
        .unwrap();
    let why = unchanged.expect("nothing to undo");
    assert!(why.contains("is still active"), "{why}");
    assert_eq!(std::fs::read(w.path("vic")).unwrap(), before);
    assert_eq!(w.sim.writes().len(), writes);
}
