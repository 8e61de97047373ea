//! Notifications: telling people when a plan needs them. A notice is one
//! JSON object (`event`, `user`, `account`, `phase`, `reason`,
//! `next_command`, `at`, `plan`) sent to every target of the run
//! (`--notify`, `IAM_ROTATE_NOTIFY`) and of the plan (`plan --notify`), on
//! five events: `blocked`, `overdue` (at most once a day per plan),
//! `failed`, `rolled_back` and `done`.
//!
//! A notice never holds a secret: it is built only from plan fields, which
//! never hold one. Sending is best effort and never changes the rotation or
//! the exit code: a notice a target did not accept is a warning, kept in
//! the plan (`notifications.pending`) and sent again by the next run.

mod events;
mod sns;
mod spec;
mod webhook;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use events::{events, Before, RunEnd};
pub use spec::{parse_all, Target, ENV};

use crate::commands::command_line;
use crate::engine::{Outcome, RunFailure, RunReport};
use crate::plan::model::{NoticeEvent, PendingNotice, SentNotice};
use crate::plan::{LockedPlan, Phase, Plan};
use crate::rotation;

/// How many undelivered notices a plan keeps; older ones are dropped.
pub const MAX_PENDING: usize = 20;

/// The one JSON object every target gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub event: NoticeEvent,
    pub user: String,
    pub account: String,
    /// The plan's phase when it happened.
    pub phase: Phase,
    /// What happened and what a person should do.
    pub reason: String,
    /// The exact `iam-rotate …` command to run next, or null.
    pub next_command: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The plan file.
    pub plan: String,
}

impl Notice {
    /// The notice of a pending entry of `plan`, which is at `location`.
    fn of(pending: &PendingNotice, plan: &Plan, location: &str) -> Notice {
        Notice {
            event: pending.event,
            user: plan.user.clone(),
            account: plan.account.clone(),
            phase: pending.phase,
            reason: pending.reason.clone(),
            next_command: pending.next_command.clone(),
            at: pending.at,
            plan: location.to_string(),
        }
    }

    /// The body: one line of JSON.
    pub fn to_json(&self) -> String {
        // Plain strings, a time and enums: serializing cannot fail.
        serde_json::to_string(self).expect("a notice always serializes")
    }
}

/// Carries one notice to one target.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Delivers `notice`; the error says why it was not accepted.
    async fn send(&self, target: &Target, notice: &Notice) -> Result<(), String>;
}

/// The real transports: SNS Publish with the process's SDK configuration,
/// and an HTTPS POST for webhooks.
pub struct Senders {
    sdk: Option<SdkConfig>,
    webhook: webhook::Client,
}

impl Senders {
    /// `sdk` is the configuration every AWS client of the process is built
    /// from; without it an `sns:` target fails (and stays pending).
    pub fn new(sdk: Option<SdkConfig>) -> Self {
        Senders {
            sdk,
            webhook: webhook::Client::default(),
        }
    }
}

#[async_trait]
impl Transport for Senders {
    async fn send(&self, target: &Target, notice: &Notice) -> Result<(), String> {
        match target {
            Target::Sns { .. } => {
                let Some(sdk) = &self.sdk else {
                    return Err("no AWS configuration to publish to SNS with".into());
                };
                sns::publish(sdk, target, notice).await
            }
            Target::Webhook { url } => self.webhook.post(url, &notice.to_json()).await,
        }
    }
}

/// What the caller knows about a plan once a command ended: the command to
/// run next and, when the plan is overdue, what a person must do.
#[derive(Clone, Debug, Default)]
pub struct Guidance {
    pub next_command: Option<String>,
    /// Set when the plan is overdue: why, and what to do.
    pub overdue: Option<String>,
}

impl Guidance {
    /// What the core says about `plan` at `now`; the next command repeats
    /// `flags` (the invocation's plans folder, profile, endpoint, …) as
    /// every printed next command does.
    pub fn of(plan: &Plan, now: DateTime<Utc>, flags: &[String]) -> Guidance {
        Guidance {
            next_command: rotation::next_command(plan)
                .map(|next| command_line(flags, next.words(), &plan.user)),
            overdue: rotation::overdue(plan, now).map(|overdue| overdue.what),
        }
    }
}

/// Sends a plan's notices: the runner's own targets plus the plan's.
pub struct Notifier {
    targets: Vec<Target>,
    transport: Arc<dyn Transport>,
    /// The global flags a notice's next command repeats.
    command_flags: Vec<String>,
    /// Targets that failed in this process: not tried again until the next
    /// run, so that a dead endpoint costs one timeout, not one per plan.
    down: Mutex<HashSet<String>>,
}

impl Notifier {
    pub fn new(targets: Vec<Target>, transport: Arc<dyn Transport>) -> Self {
        Notifier {
            targets,
            transport,
            command_flags: Vec::new(),
            down: Mutex::default(),
        }
    }

    /// Next commands in notices repeat `flags`, as printed ones do.
    pub fn with_command_flags(mut self, flags: Vec<String>) -> Self {
        self.command_flags = flags;
        self
    }

    /// After `run` ended on a plan (not a dry run): the events it caused,
    /// and any notice still pending from earlier runs, are sent; what was
    /// sent or is still pending is saved in the plan. Failures are
    /// warnings; nothing here changes the rotation. A plan of another
    /// account was not touched and is not reported on.
    pub async fn after_run(
        &self,
        locked: &mut LockedPlan,
        before: &Before,
        result: &Result<RunReport, RunFailure>,
        now: DateTime<Utc>,
    ) {
        let error;
        let end = match result {
            Ok(report) if matches!(report.outcome, Outcome::WrongAccount { .. }) => return,
            Ok(_) => RunEnd::Ran,
            Err(failure) => {
                error = failure.error.to_string();
                RunEnd::Failed { error: &error }
            }
        };
        let guidance = Guidance::of(&locked.plan, now, &self.command_flags);
        let new = events(before, &locked.plan, end, guidance.overdue.as_deref(), now);
        self.deliver(locked, new, &guidance, now).await;
    }

    /// After `rollback` changed a plan: a `rolled_back` notice, with the
    /// last thing the rollback recorded as its reason.
    pub async fn after_rollback(
        &self,
        locked: &mut LockedPlan,
        before: &Before,
        now: DateTime<Utc>,
    ) {
        let guidance = Guidance::of(&locked.plan, now, &self.command_flags);
        let new = locked
            .plan
            .history
            .get(before.history_len..)
            .and_then(<[_]>::last)
            .map(|entry| vec![(NoticeEvent::RolledBack, entry.action.clone())])
            .unwrap_or_default();
        self.deliver(locked, new, &guidance, now).await;
    }

    /// This run's targets for `plan`: the runner's, then the plan's own.
    fn targets_for(&self, plan: &Plan) -> Vec<Target> {
        let mut targets = self.targets.clone();
        for spec in &plan.notify {
            match Target::parse(spec) {
                Ok(target) if !targets.contains(&target) => targets.push(target),
                Ok(_) => {}
                Err(e) => tracing::warn!("{}: `notify:` in the plan: {e}", plan.user),
            }
        }
        targets
    }

    fn is_down(&self, label: &str) -> bool {
        self.down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(label)
    }

    fn mark_down(&self, label: &str) {
        self.down
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(label.to_string());
    }

    async fn deliver(
        &self,
        locked: &mut LockedPlan,
        new: Vec<(NoticeEvent, String)>,
        guidance: &Guidance,
        now: DateTime<Utc>,
    ) {
        let targets = self.targets_for(&locked.plan);
        if targets.is_empty() && locked.plan.notifications.pending.is_empty() {
            return;
        }
        let before = locked.plan.notifications.clone();
        let labels: Vec<String> = targets.iter().map(Target::label).collect();
        let mut queue = std::mem::take(&mut locked.plan.notifications.pending);
        if !targets.is_empty() {
            for (event, reason) in new {
                if event == NoticeEvent::Overdue {
                    locked.plan.notifications.overdue_sent_at = Some(now);
                }
                queue.push(PendingNotice {
                    event,
                    at: now,
                    phase: locked.plan.phase,
                    reason,
                    next_command: guidance.next_command.clone(),
                    to: labels.clone(),
                });
            }
        }
        // Read far from where the run happened: the absolute path.
        let location = std::path::absolute(&locked.path)
            .unwrap_or_else(|_| locked.path.clone())
            .display()
            .to_string();
        let mut still_pending = Vec::new();
        for mut pending in queue {
            let notice = Notice::of(&pending, &locked.plan, &location);
            let mut unsent = Vec::new();
            for label in pending.to {
                let Some(target) = targets.iter().find(|t| t.label() == label) else {
                    // Not a target of this run: kept for a run that has it.
                    unsent.push(label);
                    continue;
                };
                if self.is_down(&label) {
                    unsent.push(label);
                    continue;
                }
                if let Err(error) = self.transport.send(target, &notice).await {
                    tracing::warn!(
                        "{}: could not send the {} notice to {label}: {error}. It is kept in \
                         the plan and sent again by the next run, as are this run's other \
                         notices to that target",
                        notice.user,
                        notice.event,
                        error = error.trim_end_matches('.')
                    );
                    self.mark_down(&label);
                    unsent.push(label);
                }
            }
            pending.to = unsent;
            if pending.to.is_empty() {
                locked.plan.notifications.last_sent = Some(SentNotice {
                    event: pending.event,
                    at: pending.at,
                });
            } else {
                still_pending.push(pending);
            }
        }
        if still_pending.len() > MAX_PENDING {
            let dropped = still_pending.len() - MAX_PENDING;
            tracing::warn!(
                "{}: {dropped} undelivered notices dropped; a plan keeps the newest {MAX_PENDING}",
                locked.plan.user
            );
            still_pending.drain(..dropped);
        }
        locked.plan.notifications.pending = still_pending;
        if locked.plan.notifications != before {
            if let Err(e) = locked.save() {
                tracing::warn!(
                    "{}: could not record the notices in the plan: {e}",
                    locked.plan.user
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
