//! `run --all`: every plan advanced concurrently, each under its own lock.
//!
//! Plans run as tokio tasks, at most `concurrency` at a time. A task takes
//! its plan's OS lock, or skips the plan when another process holds it; an
//! error is recorded on that plan by the engine (`last_error`) and becomes
//! that plan's result. A panic in one task is caught here and reported as
//! that plan's failure.
//!
//! The tasks share one IAM client, and so the account's request pacer
//! ([`crate::aws::pacing`]): when IAM throttles, the whole batch slows
//! down to the account's rate together, and each plan's throttled
//! requests are retried within that plan's own budget.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::aws::pacing::within_plan_budget;
use crate::clock::Clock;
use crate::commands::user_of;
use crate::deliver::Deliver;
use crate::engine::{Engine, Outcome, RunAction, RunOptions, RunReport};
use crate::iam::{Caller, Iam};
use crate::notify::{self, Notifier};
use crate::plan::store::Busy;
use crate::plan::PlanStore;

use super::stop::{Stop, GRACE};

/// One plan's line in the result: a report, or why there is none.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum RunResult {
    Report(RunReport),
    Other {
        user: String,
        path: PathBuf,
        state: NotRun,
        reason: String,
        /// What the run did before it failed, as history has it.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        actions: Vec<RunAction>,
    },
}

impl std::fmt::Display for NotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NotRun::Failed => "failed",
            NotRun::Skipped => "skipped",
            NotRun::Stopped => "not run",
        })
    }
}

/// Why a plan has no report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotRun {
    /// An error stopped it; what was done is in the plan.
    Failed,
    /// Left alone (locked by another process).
    Skipped,
    /// Not started: the batch stopped first (deadline or signal).
    Stopped,
}

impl RunResult {
    pub fn user(&self) -> &str {
        match self {
            RunResult::Report(r) => &r.user,
            RunResult::Other { user, .. } => user,
        }
    }

    /// Where this plan goes in the batch summary.
    pub fn category(&self) -> Category {
        match self {
            RunResult::Other {
                state: NotRun::Failed,
                ..
            } => Category::Failed,
            RunResult::Other {
                state: NotRun::Stopped,
                ..
            } => Category::NotRun,
            RunResult::Other { .. } => Category::Skipped,
            RunResult::Report(r) => match &r.outcome {
                Outcome::Blocked { .. } => Category::Blocked,
                Outcome::WrongAccount { .. } => Category::WrongAccount,
                Outcome::WouldAct { .. } => Category::DryRun,
                _ if !r.actions.is_empty() => Category::Advanced,
                Outcome::Waiting { .. } => Category::Waiting,
                Outcome::Finished => Category::Finished,
            },
        }
    }
}

/// How one plan fared in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Took at least one step (and may now wait, or be done).
    Advanced,
    /// Nothing was due; waits as before.
    Waiting,
    /// Done or rolled back already; nothing to do.
    Finished,
    /// A person must act.
    Blocked,
    /// The plan belongs to another account than the credentials': nothing
    /// was read or changed; the invocation, not the plan, is wrong.
    WrongAccount,
    /// An error: recorded on the plan, the batch went on.
    Failed,
    /// Locked by another iam-rotate process; not touched.
    Skipped,
    /// `--dry-run`: would act.
    DryRun,
    /// Not started: the batch stopped first (`--deadline`, a signal).
    NotRun,
}

impl Category {
    pub const ALL: [Category; 9] = [
        Category::Advanced,
        Category::Waiting,
        Category::Finished,
        Category::Blocked,
        Category::WrongAccount,
        Category::Failed,
        Category::Skipped,
        Category::DryRun,
        Category::NotRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Advanced => "advanced",
            Category::Waiting => "waiting",
            Category::Finished => "finished",
            Category::Blocked => "blocked",
            Category::WrongAccount => "other account",
            Category::Failed => "failed",
            Category::Skipped => "skipped",
            Category::DryRun => "would act (dry run)",
            Category::NotRun => "not run",
        }
    }
}

/// The users of a batch, by category, in plan order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub total: usize,
    pub users: HashMap<Category, Vec<String>>,
}

impl Summary {
    pub fn of(results: &[RunResult]) -> Self {
        let mut users: HashMap<Category, Vec<String>> = HashMap::new();
        for result in results {
            users
                .entry(result.category())
                .or_default()
                .push(result.user().to_string());
        }
        Summary {
            total: results.len(),
            users,
        }
    }

    pub fn names(&self, category: Category) -> &[String] {
        self.users.get(&category).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn count(&self, category: Category) -> usize {
        self.names(category).len()
    }
}

/// What a batch's tasks share. Cheap to clone: every part is behind an `Arc`.
#[derive(Clone)]
pub struct Fleet {
    pub iam: Arc<dyn Iam>,
    pub clock: Arc<dyn Clock>,
    pub deliver: Arc<dyn Deliver>,
    /// STS GetCallerIdentity, taken once for the whole batch.
    pub caller: Caller,
    /// Tells people when a plan needs them; `None`: nobody is told.
    pub notifier: Option<Arc<Notifier>>,
    /// Where the plans are (a folder, or S3).
    pub store: PlanStore,
}

impl Fleet {
    pub fn engine(&self) -> Engine<'_> {
        Engine {
            iam: self.iam.as_ref(),
            clock: self.clock.as_ref(),
            deliver: self.deliver.as_ref(),
            caller: self.caller.clone(),
        }
    }
}

/// Told as plans start and finish, in the batch's own task: progress bars
/// or plain lines live behind it.
pub trait RunProgress {
    fn started(&mut self, user: &str);
    fn finished(&mut self, result: &RunResult);
}

/// Progress nobody watches.
impl RunProgress for () {
    fn started(&mut self, _user: &str) {}
    fn finished(&mut self, _result: &RunResult) {}
}

/// Advances every plan in `paths`, at most `concurrency` at once. Results
/// come back in the order of `paths`; `progress` hears of each as it ends.
pub async fn run_all(
    fleet: &Fleet,
    paths: Vec<PathBuf>,
    options: RunOptions,
    concurrency: usize,
    progress: &mut dyn RunProgress,
) -> Vec<RunResult> {
    let batch = Batch {
        concurrency,
        stop: Stop::new(),
        grace: GRACE,
    };
    run_all_until(fleet, paths, options, &batch, progress).await
}

/// How a batch runs: plans at once, and what stops it early.
#[derive(Clone, Debug)]
pub struct Batch {
    pub concurrency: usize,
    pub stop: Stop,
    /// How long plans in flight may go on after a stop.
    pub grace: std::time::Duration,
}

/// [`run_all`] that takes no new plan once `batch.stop` is asked for,
/// cancels plans still in flight `batch.grace` later (dropping, and so
/// releasing, their locks), and reports the plans never started as
/// [`NotRun::Stopped`].
pub async fn run_all_until(
    fleet: &Fleet,
    paths: Vec<PathBuf>,
    options: RunOptions,
    batch: &Batch,
    progress: &mut dyn RunProgress,
) -> Vec<RunResult> {
    let stop = &batch.stop;
    let cancel = stop.cancel_in_flight(batch.grace);
    tokio::pin!(cancel);
    let mut cancelled = false;
    let concurrency = batch.concurrency.max(1);
    let mut results: Vec<Option<RunResult>> = vec![None; paths.len()];
    let mut pending = paths.iter().cloned().enumerate();
    let mut tasks = JoinSet::new();
    // Which plan a task works on, for a task that panics.
    let mut task_index = HashMap::new();
    loop {
        while tasks.len() < concurrency && stop.reason().is_none() {
            let Some((index, path)) = pending.next() else {
                break;
            };
            progress.started(&user_of(&path));
            let fleet = fleet.clone();
            let handle = tasks.spawn(async move {
                let notifier = fleet.notifier.as_deref();
                run_one_with(&fleet.engine(), &fleet.store, notifier, path, options).await
            });
            task_index.insert(handle.id(), index);
        }
        let joined = tokio::select! {
            joined = tasks.join_next_with_id() => joined,
            () = &mut cancel, if !cancelled && !tasks.is_empty() => {
                cancelled = true;
                tasks.abort_all();
                continue;
            }
        };
        let Some(joined) = joined else {
            break;
        };
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(error) => {
                let index = task_index.get(&error.id()).copied().unwrap_or_default();
                let path = paths[index].clone();
                let reason = if error.is_cancelled() {
                    format!(
                        "cancelled {}s after the batch stopped ({}); the plan file holds every \
                         step that completed and its lock was released. Run it again",
                        batch.grace.as_secs(),
                        stop.reason().map(|r| r.to_string()).unwrap_or_default()
                    )
                } else {
                    format!(
                        "iam-rotate failed unexpectedly on this plan ({error}); the plan file \
                         holds every step that completed. Report this, then run it again."
                    )
                };
                let result = RunResult::Other {
                    user: user_of(&path),
                    path,
                    state: NotRun::Failed,
                    actions: Vec::new(),
                    reason,
                };
                (error.id(), result)
            }
        };
        let index = task_index.remove(&id).unwrap_or_default();
        progress.finished(&result);
        results[index] = Some(result);
    }
    for (index, path) in pending {
        let reason = stop.reason().map(|r| r.to_string()).unwrap_or_default();
        let result = RunResult::Other {
            user: user_of(&path),
            path,
            state: NotRun::Stopped,
            actions: Vec::new(),
            reason: format!("not started: {reason}; nothing was done. Run it again"),
        };
        progress.finished(&result);
        results[index] = Some(result);
    }
    results.into_iter().flatten().collect()
}

/// Locks, loads and advances one plan; never fails the batch.
pub async fn run_one(
    engine: &Engine<'_>,
    store: &PlanStore,
    path: PathBuf,
    options: RunOptions,
) -> RunResult {
    run_one_with(engine, store, None, path, options).await
}

/// [`run_one`], then (unless a dry run) the plan's notices are sent under
/// the same lock.
pub async fn run_one_with(
    engine: &Engine<'_>,
    store: &PlanStore,
    notifier: Option<&Notifier>,
    path: PathBuf,
    options: RunOptions,
) -> RunResult {
    let user = user_of(&path);
    let failed = |path: PathBuf, reason: String, actions: Vec<RunAction>| RunResult::Other {
        user: user.clone(),
        path,
        state: NotRun::Failed,
        reason,
        actions,
    };
    let mut locked = match store.try_lock(&path) {
        Ok(Ok(locked)) => locked,
        Ok(Err(Busy(reason))) => {
            return RunResult::Other {
                user: user.clone(),
                path,
                state: NotRun::Skipped,
                actions: Vec::new(),
                reason,
            }
        }
        Err(e) => return failed(path, e.to_string(), Vec::new()),
    };
    let before = notify::Before::of(&locked.plan);
    // Each plan has its own budget for being throttled, from its start.
    let result = within_plan_budget(engine.run(&mut locked, options)).await;
    if let (Some(notifier), false) = (notifier, options.dry_run) {
        let now = engine.clock.now();
        notifier.after_run(&mut locked, &before, &result, now).await;
    }
    match result {
        Ok(report) => RunResult::Report(report),
        Err(failure) => failed(path, failure.error.to_string(), failure.actions),
    }
}
