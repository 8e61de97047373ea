//! Which events a run causes, and how notices are sent, kept pending and
//! retried, against a transport that records what it was given.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::plan::{PlanStore, Stamp};

const RUNNER_TOPIC: &str = "sns:arn:aws:sns:us-east-1:123456789012:ops";
const OWNERS_HOOK: &str = "webhook:https://hooks.example.com/owners/t0ken";
const RUNNER_HOOK: &str = "webhook:https://hooks.example.com/runner/t0ken";

const PLAN: &str = "version: 1
account: '123456789012'
user: alice
user_arn: arn:aws:iam::123456789012:user/alice
delivery: file:/tmp/alice.csv
policy:
  adoption_wait: 7d
  quiet_period: 3d
  verify_period: 7d
  require_new_key_use: true
old_key:
  id: AKIAIOSFODNN7EXAMPLE
  created_at: 2025-06-02T08:14:51Z
  status: Active
new_key:
  id: AKIAI44QH8DHBEXAMPLE
  created_at: 2026-11-20T10:00:00Z
phase: wait_for_adoption
phase_since: 2026-11-20T10:00:00Z
";

fn t0() -> DateTime<Utc> {
    "2026-12-01T12:00:00Z".parse().unwrap()
}

/// Every notice given to it, by target label; targets in `down` refuse.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(String, Notice)>>,
    down: Mutex<HashSet<String>>,
}

impl Recorder {
    fn set_down(&self, label: &str, down: bool) {
        let mut set = self.down.lock().unwrap();
        if down {
            set.insert(label.to_string());
        } else {
            set.remove(label);
        }
    }

    fn take(&self) -> Vec<(String, NoticeEvent)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
            .into_iter()
            .map(|(label, notice)| (label, notice.event))
            .collect()
    }
}

#[async_trait]
impl Transport for Recorder {
    async fn send(&self, target: &Target, notice: &Notice) -> Result<(), String> {
        let label = target.label();
        if self.down.lock().unwrap().contains(&label) {
            return Err("connection refused".into());
        }
        self.sent.lock().unwrap().push((label, notice.clone()));
        Ok(())
    }
}

fn label(spec: &str) -> String {
    Target::parse(spec).unwrap().label()
}

/// A plan for alice in a fresh plans folder, locked, with `notify:`.
fn locked_plan(dir: &Path, notify: &[&str]) -> LockedPlan {
    let path = dir.join("123456789012/alice.yaml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut plan = crate::plan::store::parse(PLAN, &path).unwrap();
    plan.notify = notify.iter().map(|s| s.to_string()).collect();
    PlanStore::new(dir).create(&path, plan).unwrap().unwrap()
}

fn notifier(recorder: &Arc<Recorder>, runner: &[&str]) -> Notifier {
    let targets = runner.iter().map(|s| Target::parse(s).unwrap()).collect();
    Notifier::new(targets, recorder.clone())
}

fn stamp(at: DateTime<Utc>) -> Stamp {
    Stamp {
        at,
        actor: "arn:aws:iam::123456789012:user/ops".into(),
        clock: None,
    }
}

#[test]
fn entering_blocked_or_done_is_an_event_and_staying_there_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = locked_plan(dir.path(), &[]).plan;
    let before = Before::of(&plan);
    plan.block(
        "the old key was reactivated by hand; check it",
        &stamp(t0()),
    );
    let found = events(&before, &plan, RunEnd::Ran, None, t0());
    assert_eq!(
        found,
        vec![(
            NoticeEvent::Blocked,
            "the old key was reactivated by hand; check it".to_string()
        )]
    );
    // The next run finds it still blocked: nothing new.
    let before = Before::of(&plan);
    assert!(events(&before, &plan, RunEnd::Ran, None, t0()).is_empty());
    // --retry-blocked, and the cause is still there: news again.
    plan.unblock(&stamp(t0()));
    plan.block("still reactivated", &stamp(t0()));
    let found = events(&before, &plan, RunEnd::Ran, None, t0());
    assert_eq!(
        found,
        vec![(NoticeEvent::Blocked, "still reactivated".into())]
    );

    let mut plan = locked_plan(tempfile::tempdir().unwrap().path(), &[]).plan;
    let before = Before::of(&plan);
    plan.phase = Phase::Delete;
    plan.transition(
        Phase::Done,
        "deleted old key AKIA…MPLE".to_string(),
        &stamp(t0()),
    );
    let found = events(&before, &plan, RunEnd::Ran, None, t0());
    assert_eq!(
        found,
        vec![(NoticeEvent::Done, "deleted old key AKIA…MPLE".into())]
    );
}

#[test]
fn a_failure_is_told_once_until_the_error_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = locked_plan(dir.path(), &[]).plan;
    let first = RunEnd::Failed {
        error: "AccessDenied: iam:ListAccessKeys",
    };
    let found = events(&Before::of(&plan), &plan, first, None, t0());
    assert_eq!(found[0].0, NoticeEvent::Failed);
    plan.last_error = Some("AccessDenied: iam:ListAccessKeys".into());
    assert!(events(&Before::of(&plan), &plan, first, None, t0()).is_empty());
    let other = RunEnd::Failed {
        error: "Throttling: rate exceeded",
    };
    let found = events(&Before::of(&plan), &plan, other, None, t0());
    assert_eq!(
        found,
        vec![(NoticeEvent::Failed, "Throttling: rate exceeded".into())]
    );
}

#[test]
fn overdue_is_told_at_most_once_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = locked_plan(dir.path(), &[]).plan;
    let overdue = Some("waiting for adoption since 2026-11-20");
    let at = |hours| t0() + Duration::hours(hours);
    assert_eq!(
        events(&Before::of(&plan), &plan, RunEnd::Ran, overdue, at(0))[0].0,
        NoticeEvent::Overdue
    );
    plan.notifications.overdue_sent_at = Some(at(0));
    for hours in [1, 12, 23] {
        assert!(events(&Before::of(&plan), &plan, RunEnd::Ran, overdue, at(hours)).is_empty());
    }
    assert_eq!(
        events(&Before::of(&plan), &plan, RunEnd::Ran, overdue, at(24))[0].0,
        NoticeEvent::Overdue
    );
    // Not overdue: nothing, whenever it was last told.
    assert!(events(&Before::of(&plan), &plan, RunEnd::Ran, None, at(48)).is_empty());
}

#[tokio::test]
async fn a_notice_goes_to_the_runner_s_and_the_plan_s_targets() {
    let dir = tempfile::tempdir().unwrap();
    let mut locked = locked_plan(dir.path(), &[OWNERS_HOOK, RUNNER_TOPIC]);
    let recorder = Arc::new(Recorder::default());
    let guidance = Guidance {
        next_command: Some("iam-rotate run alice".into()),
        overdue: None,
    };
    notifier(&recorder, &[RUNNER_TOPIC])
        .deliver(
            &mut locked,
            vec![(NoticeEvent::Done, "deleted".into())],
            &guidance,
            t0(),
        )
        .await;
    let sent = recorder.sent.lock().unwrap().clone();
    // The topic named twice is sent to once.
    let labels: Vec<&str> = sent.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, [label(RUNNER_TOPIC), label(OWNERS_HOOK)]);
    let body: serde_json::Value = serde_json::from_str(&sent[0].1.to_json()).unwrap();
    let mut fields: Vec<&str> = body
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
        ]
    );
    assert_eq!(body["event"], "done");
    assert_eq!(body["user"], "alice");
    assert_eq!(body["next_command"], "iam-rotate run alice");
    assert_eq!(body["plan"], locked.path.display().to_string());
    let saved = PlanStore::new("/").load(&locked.path).unwrap();
    assert!(saved.notifications.pending.is_empty());
    assert_eq!(
        saved.notifications.last_sent,
        Some(SentNotice {
            event: NoticeEvent::Done,
            at: t0()
        })
    );
}

#[tokio::test]
async fn an_unsent_notice_is_kept_and_retried_only_where_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut locked = locked_plan(dir.path(), &[]);
    let recorder = Arc::new(Recorder::default());
    recorder.set_down(&label(RUNNER_HOOK), true);
    // Each run is a new process with a new notifier.
    let run = || notifier(&recorder, &[RUNNER_TOPIC, RUNNER_HOOK]);
    let overdue = vec![(NoticeEvent::Overdue, "waiting too long".into())];
    run()
        .deliver(&mut locked, overdue, &Guidance::default(), t0())
        .await;
    assert_eq!(
        recorder.take(),
        [(label(RUNNER_TOPIC), NoticeEvent::Overdue)]
    );
    let saved = PlanStore::new("/").load(&locked.path).unwrap();
    assert_eq!(saved.notifications.overdue_sent_at, Some(t0()));
    let pending = &saved.notifications.pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].to, [label(RUNNER_HOOK)]);
    assert_eq!(pending[0].at, t0());
    // The runner's webhook is named in the plan, its token never.
    assert!(!std::fs::read_to_string(&locked.path)
        .unwrap()
        .contains("t0ken"));

    // Still down: still pending, nothing sent twice to the topic.
    let later = t0() + Duration::hours(1);
    run()
        .deliver(&mut locked, Vec::new(), &Guidance::default(), later)
        .await;
    assert!(recorder.take().is_empty());
    assert_eq!(locked.plan.notifications.pending.len(), 1);

    // Back up: the notice goes out as it was, to the webhook alone.
    recorder.set_down(&label(RUNNER_HOOK), false);
    run()
        .deliver(&mut locked, Vec::new(), &Guidance::default(), later)
        .await;
    let sent = std::mem::take(&mut *recorder.sent.lock().unwrap());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, label(RUNNER_HOOK));
    assert_eq!(sent[0].1.event, NoticeEvent::Overdue);
    assert_eq!(sent[0].1.at, t0());
    let saved = PlanStore::new("/").load(&locked.path).unwrap();
    assert!(saved.notifications.pending.is_empty());
    assert_eq!(saved.notifications.overdue_sent_at, Some(t0()));
}

#[tokio::test]
async fn without_targets_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let mut locked = locked_plan(dir.path(), &[]);
    let bytes = std::fs::read(&locked.path).unwrap();
    let recorder = Arc::new(Recorder::default());
    notifier(&recorder, &[])
        .deliver(
            &mut locked,
            vec![(NoticeEvent::Overdue, "late".into())],
            &Guidance::default(),
            t0(),
        )
        .await;
    assert!(recorder.take().is_empty());
    assert_eq!(std::fs::read(&locked.path).unwrap(), bytes);
    assert!(locked.plan.notifications.is_empty());
}

#[tokio::test]
async fn a_plan_keeps_at_most_the_newest_pending_notices() {
    let dir = tempfile::tempdir().unwrap();
    let mut locked = locked_plan(dir.path(), &[]);
    let recorder = Arc::new(Recorder::default());
    recorder.set_down(&label(RUNNER_TOPIC), true);
    let notifier = notifier(&recorder, &[RUNNER_TOPIC]);
    for i in 0..MAX_PENDING + 3 {
        let failed = vec![(NoticeEvent::Failed, format!("error {i}"))];
        notifier
            .deliver(&mut locked, failed, &Guidance::default(), t0())
            .await;
    }
    let pending = &PlanStore::new("/")
        .load(&locked.path)
        .unwrap()
        .notifications
        .pending;
    assert_eq!(pending.len(), MAX_PENDING);
    assert_eq!(pending[0].reason, "error 3");
}

#[test]
fn guidance_is_the_core_s_next_command_and_overdue_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = locked_plan(dir.path(), &[]).plan;
    let flags = ["--plans-dir".to_string(), "/srv/key plans".to_string()];
    // The new key was created on 2026-11-20 and nothing has used it:
    // overdue after adoption_wait (7d) + overdue_after (7d).
    let early = Guidance::of(&plan, "2026-12-03T09:00:00Z".parse().unwrap(), &flags);
    assert_eq!(
        early.next_command.as_deref(),
        Some("iam-rotate --plans-dir '/srv/key plans' run alice")
    );
    assert_eq!(early.overdue, None);
    let late = Guidance::of(&plan, "2026-12-05T09:00:00Z".parse().unwrap(), &flags);
    assert!(
        late.overdue
            .as_deref()
            .is_some_and(|why| why.contains("has not been used")),
        "{late:?}"
    );
    plan.block("drift", &stamp(t0()));
    let blocked = Guidance::of(&plan, t0(), &[]);
    assert_eq!(
        blocked.next_command.as_deref(),
        Some("iam-rotate run --retry-blocked alice")
    );
}

#[test]
fn a_plan_with_a_malformed_target_is_refused_on_load_without_its_url() {
    let path = Path::new("/plans/123456789012/alice.yaml");
    let text =
        format!("{PLAN}notify:\n- {OWNERS_HOOK}\n- webhook:http://hooks.example.com/t0ken\n");
    let error = crate::plan::store::parse(&text, path)
        .expect_err("plain http to another host")
        .to_string();
    assert!(error.contains("`notify:` entry 2"), "{error}");
    assert!(!error.contains("t0ken"), "{error}");
    let fine = format!("{PLAN}notify:\n- {OWNERS_HOOK}\n- {RUNNER_TOPIC}\n");
    let plan = crate::plan::store::parse(&fine, path).unwrap();
    assert_eq!(plan.notify, [OWNERS_HOOK, RUNNER_TOPIC]);
}

#[tokio::test]
async fn a_target_that_failed_is_not_tried_again_in_the_same_run() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Counting::default());
    let notifier = Notifier::new(vec![Target::parse(RUNNER_HOOK).unwrap()], recorder.clone());
    let mut alice = locked_plan(dir.path(), &[]);
    for reason in ["first", "second"] {
        notifier
            .deliver(
                &mut alice,
                vec![(NoticeEvent::Failed, reason.into())],
                &Guidance::default(),
                t0(),
            )
            .await;
    }
    // One attempt for the whole process; both notices wait for the next.
    assert_eq!(*recorder.attempts.lock().unwrap(), 1);
    assert_eq!(alice.plan.notifications.pending.len(), 2);
    let next_run = Notifier::new(vec![Target::parse(RUNNER_HOOK).unwrap()], recorder.clone());
    next_run
        .deliver(&mut alice, Vec::new(), &Guidance::default(), t0())
        .await;
    assert_eq!(*recorder.attempts.lock().unwrap(), 2);
}

/// Refuses everything, counting the attempts.
#[derive(Default)]
struct Counting {
    attempts: Mutex<usize>,
}

#[async_trait]
impl Transport for Counting {
    async fn send(&self, _target: &Target, _notice: &Notice) -> Result<(), String> {
        *self.attempts.lock().unwrap() += 1;
        Err("no answer within 10s".into())
    }
}
