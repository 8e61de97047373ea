//! The driver, and the only place that turns decisions into AWS calls and
//! plan saves: observe IAM, ask [`rotation::decide`], carry the decision
//! out, record it in the plan, save, and ask again, until the plan waits,
//! blocks or finishes. Every change to a plan is saved before the next AWS
//! call, so a crash at any point leaves a plan that says what was done.

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::clock::Clock;
use crate::deliver::{Deliver, DeliverError};
use crate::iam::{Caller, Iam, IamError};
use crate::plan::store::PlanError;
use crate::plan::{mask_key, ActionKind, HistoryEntry, LockedPlan, Phase, Stamp};
use crate::rotation::{self, Decision, NextCommand, Observed, Overdue, Retry, WouldStep};

mod observe;
mod rollback;
pub mod self_rotation;
mod steps;

use observe::record_observation;

/// A generous bound on steps in one run; a full rotation takes seven.
const MAX_STEPS: usize = 32;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "{0}. Nothing was created; fix the destination (or `delivery:` in the plan) and run again."
    )]
    DeliveryCheck(DeliverError),
    #[error("{error}. The new key {key} was deleted again, since its secret cannot be recovered; the plan stays in create_second_key. Fix the destination and run again.")]
    DeliveryFailed { error: DeliverError, key: String },
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Why the engine would not go on: each reason a refusal can have, with
/// the words a person reads.
#[derive(Debug, Error)]
pub enum Refusal {
    /// Whether an interrupted run delivered its key cannot be told.
    #[error("{0}")]
    CannotTell(String),
    #[error(
        "the plan for {user} took more than {MAX_STEPS} steps in one run, which no rotation \
         needs; it was left as it is. Report this with the plan file."
    )]
    TooManySteps { user: String },
    #[error("the old key {} is Active; iam-rotate never deletes an active key", mask_key(.key))]
    ActiveKey { key: String },
    #[error(
        "saving the create intent took longer than {}s, so CreateAccessKey was not called; \
         nothing was created. Check the plans folder's storage and run again.",
        crate::iam::CREATE_ACCESS_KEY_TIMEOUT.as_secs()
    )]
    IntentSaveTooSlow,
    #[error("refusing to touch key {}: the plan's old key is {}", mask_key(.key), mask_key(.old))]
    NotNamed { key: String, old: String },
    #[error(
        "key {} vanished between listing the user's keys and reading its last use; nothing was \
         changed. Run again: the next listing shows what happened",
        mask_key(.key)
    )]
    KeyVanished { key: String },
    /// The profile signs with another key than the self-rotation expects.
    #[error("{0}")]
    KeyMismatch(String),
    /// The new key cannot sign (its secret is not where it was delivered).
    #[error("{0}")]
    CannotSign(String),
    /// The new key authenticates as someone else.
    #[error("{0}")]
    OtherIdentity(String),
    #[error("the plan records no new key; restore it from version control")]
    NoNewKey,
    /// A rollback that would not be safe.
    #[error(transparent)]
    Rollback(crate::rotation::rollback::Refusal),
}

/// A run that failed: the error, and the actions it took before it (each
/// recorded in the plan's history).
#[derive(Debug, Error)]
#[error("{error}")]
pub struct RunFailure {
    pub error: EngineError,
    pub actions: Vec<RunAction>,
}

impl From<RunFailure> for EngineError {
    fn from(failure: RunFailure) -> Self {
        failure.error
    }
}

/// How one plan ended this run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Done or rolled back; nothing more will ever happen.
    Finished,
    /// The next step is not due; AWS was left alone.
    Waiting {
        until: Option<DateTime<Utc>>,
        reason: String,
        next: String,
    },
    /// A person must act.
    Blocked { reason: String },
    /// The credentials belong to another account; nothing was touched.
    WrongAccount { reason: String },
    /// `--dry-run`: every step that would happen now, in order.
    WouldAct { steps: Vec<WouldStep> },
}

/// One action a run took, as its history entry records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunAction {
    pub kind: ActionKind,
    /// The key it was about, in full (an access key id is not a secret).
    pub key_id: Option<String>,
    pub at: DateTime<Utc>,
    /// In the operator's words, as history has it.
    pub text: String,
}

impl From<&HistoryEntry> for RunAction {
    fn from(entry: &HistoryEntry) -> Self {
        RunAction {
            kind: entry.kind.unwrap_or(ActionKind::Note),
            key_id: entry.key_id.clone(),
            at: entry.at,
            text: entry.action.clone(),
        }
    }
}

impl std::fmt::Display for RunAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The actions recorded in `history` since entry `from`.
pub fn actions_since(history: &[HistoryEntry], from: usize) -> Vec<RunAction> {
    history[from.min(history.len())..]
        .iter()
        .map(RunAction::from)
        .collect()
}

/// What one run did to one plan.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub user: String,
    pub account: String,
    pub phase: Phase,
    /// The actions taken, in order, as recorded in history.
    pub actions: Vec<RunAction>,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The plan file.
    pub path: std::path::PathBuf,
    /// Whether the plan is overdue after this run, and why.
    #[serde(skip)]
    pub overdue: Option<Overdue>,
    /// What to run next for the plan, after this run.
    #[serde(skip)]
    pub next: Option<NextCommand>,
}

impl RunReport {
    /// The report of `locked` after a run that took `actions`.
    pub fn of(
        locked: &LockedPlan,
        actions: Vec<RunAction>,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Self {
        let plan = &locked.plan;
        RunReport {
            user: plan.user.clone(),
            account: plan.account.clone(),
            phase: plan.phase,
            actions,
            outcome,
            path: locked.path.clone(),
            overdue: rotation::overdue(plan, now),
            next: rotation::next_command(plan),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    pub retry_blocked: bool,
}

/// Carries decisions out for one caller.
pub struct Engine<'a> {
    pub iam: &'a dyn Iam,
    pub clock: &'a dyn Clock,
    pub deliver: &'a dyn Deliver,
    /// STS GetCallerIdentity, taken once per process.
    pub caller: Caller,
}

impl Engine<'_> {
    pub(super) fn stamp(&self) -> Stamp {
        Stamp::new(self.clock, &self.caller)
    }

    /// Takes the plan through every step that is due now.
    pub async fn run(
        &self,
        locked: &mut LockedPlan,
        options: RunOptions,
    ) -> Result<RunReport, RunFailure> {
        let history_before = locked.plan.history.len();
        let result = self.run_inner(locked, options).await;
        let actions = actions_since(&locked.plan.history, history_before);
        match result {
            Ok(outcome) => {
                if !options.dry_run && locked.plan.last_error.take().is_some() {
                    if let Err(e) = locked.save() {
                        return Err(RunFailure {
                            error: e.into(),
                            actions,
                        });
                    }
                }
                Ok(RunReport::of(locked, actions, outcome, self.clock.now()))
            }
            Err(error) => {
                if !options.dry_run {
                    // Keep the failure on the plan for `status`; the error
                    // itself goes back to the caller either way.
                    locked.plan.last_error = Some(error.to_string());
                    let _ = locked.save();
                }
                Err(RunFailure { error, actions })
            }
        }
    }

    async fn run_inner(
        &self,
        locked: &mut LockedPlan,
        options: RunOptions,
    ) -> Result<Outcome, EngineError> {
        let mut rebaseline = false;
        match rotation::decide_retry(&locked.plan, &self.caller, options.retry_blocked) {
            Retry::AsItIs => {}
            Retry::WrongAccount { reason } => return Ok(Outcome::WrongAccount { reason }),
            Retry::Unblock { .. } if options.dry_run => {
                return Ok(Outcome::WouldAct {
                    steps: vec![WouldStep {
                        kind: "act",
                        key_id: None,
                        until: None,
                        text: "would leave blocked and re-check the guards".into(),
                    }],
                });
            }
            Retry::Unblock {
                restart_verification,
            } => {
                rebaseline = restart_verification;
                locked.plan.unblock(&self.stamp());
                locked.save()?;
            }
        }
        // An observation that is still good for the plan's phase: taken in
        // this run and followed only by a plan-only transition or by our own
        // CreateAccessKey, so it is reused instead of asking IAM again.
        let mut carried: Option<Observed> = None;
        for _ in 0..MAX_STEPS {
            let mut unsaved = false;
            let seen = match carried.take() {
                Some(seen) => seen,
                None => {
                    let seen = self.observe(&locked.plan).await?;
                    if !options.dry_run {
                        unsaved = record_observation(&mut locked.plan, &seen);
                        if rebaseline && locked.plan.phase == Phase::Verify {
                            rebaseline = false;
                            unsaved = true;
                            let (baseline, action) = rotation::verification_restart(&seen);
                            locked.plan.old_key.last_used_at_deactivation = baseline;
                            locked.plan.record(action, &self.stamp());
                        }
                    }
                    seen
                }
            };
            let decision = rotation::decide(&locked.plan, &seen);
            let step = match decision {
                Decision::Finished => return Ok(Outcome::Finished),
                Decision::WrongAccount { reason } => return Ok(Outcome::WrongAccount { reason }),
                Decision::Unsure { reason } => {
                    if !options.dry_run && unsaved {
                        locked.save()?;
                    }
                    return Err(Refusal::CannotTell(reason).into());
                }
                Decision::Wait {
                    until,
                    reason,
                    next,
                } => {
                    if !options.dry_run && unsaved {
                        locked.save()?;
                    }
                    return Ok(Outcome::Waiting {
                        until,
                        reason,
                        next,
                    });
                }
                Decision::Block { reason } => {
                    if !options.dry_run && locked.plan.phase != Phase::Blocked {
                        locked.plan.block(reason.clone(), &self.stamp());
                        locked.save()?;
                    }
                    return Ok(Outcome::Blocked { reason });
                }
                Decision::Act(step) => step,
            };
            if options.dry_run {
                let seen = self.with_every_last_use(&locked.plan, seen).await?;
                return Ok(Outcome::WouldAct {
                    steps: rotation::preview(&locked.plan, &seen),
                });
            }
            carried = self.act(locked, step, seen).await?;
        }
        Err(Refusal::TooManySteps {
            user: locked.plan.user.clone(),
        }
        .into())
    }
}
