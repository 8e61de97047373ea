//! What `self-rotate` prints: each action as it is taken, the wait's
//! spinner, where the rotation stands at the end, or one JSON document.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::super::{status_of_outcome, Context, Status};
use crate::engine::self_rotation::{SelfRotateEvents, Wait};
use crate::engine::{Outcome, RunReport};
use crate::output;
use crate::plan::{mask_key, LockedPlan, Phase, Plan};
use crate::progress::Spinner;

/// What `self-rotate` did, for `--output json`.
#[derive(Serialize)]
struct SelfRotateReport {
    user: String,
    account: String,
    profile: String,
    credentials_file: PathBuf,
    phase: Phase,
    old_key: String,
    new_key: Option<String>,
    actions: Vec<String>,
    #[serde(flatten)]
    outcome: Outcome,
}

/// Says where the rotation stands (or prints the JSON document) and picks
/// the exit status.
pub(super) fn conclude(
    context: &Context,
    locked: &LockedPlan,
    profile: &str,
    credentials_file: &Path,
    actions: Vec<String>,
    outcome: Outcome,
) -> anyhow::Result<Status> {
    let status = status_of_outcome(&outcome);
    let plan = &locked.plan;
    if !context.json() {
        say_where_it_stands(context, plan, profile, &outcome);
        return Ok(status);
    }
    output::json(&SelfRotateReport {
        user: plan.user.clone(),
        account: plan.account.clone(),
        profile: profile.to_string(),
        credentials_file: credentials_file.to_path_buf(),
        phase: plan.phase,
        old_key: plan.old_key.id.clone(),
        new_key: plan.new_key.as_ref().map(|k| k.id.clone()),
        actions,
        outcome,
    })?;
    Ok(status)
}

/// Prints what the engine does as it goes (nothing but the final document
/// with `--output json`), and draws the wait's spinner.
pub(super) struct Printer {
    pub(super) json: bool,
    pub(super) spinner: Mutex<Option<Spinner>>,
}

impl SelfRotateEvents for Printer {
    fn report(&self, report: &RunReport) {
        if self.json {
            return;
        }
        for action in report
            .actions
            .iter()
            .filter(|a| a.kind != crate::plan::ActionKind::Blocked)
        {
            output::line(format!("{}: {action}", report.user));
        }
        if let Outcome::Blocked { reason } = &report.outcome {
            output::line(format!("{}: BLOCKED - {reason}", report.user));
        }
    }

    fn action(&self, user: &str, action: &str) {
        if !self.json {
            output::line(format!("{user}: {action}"));
        }
    }

    fn blocked(&self, user: &str, reason: &str) {
        if !self.json {
            output::line(format!("{user}: BLOCKED - {reason}"));
        }
    }

    fn waiting(&self, wait: Wait<'_>) {
        let mut spinner = self.spinner.lock().unwrap_or_else(|e| e.into_inner());
        match wait {
            Wait::Start { message, announce } => {
                *spinner = Some(Spinner::start(message, announce));
            }
            Wait::Update(message) => {
                if let Some(spinner) = spinner.as_ref() {
                    spinner.update(message);
                }
            }
            Wait::End => {
                if let Some(spinner) = spinner.take() {
                    spinner.finish();
                }
            }
        }
    }
}

fn say_where_it_stands(context: &Context, plan: &Plan, profile: &str, outcome: &Outcome) {
    let user = &plan.user;
    let old = mask_key(&plan.old_key.id);
    let new = plan
        .new_key
        .as_ref()
        .map(|k| mask_key(&k.id))
        .unwrap_or_default();
    let now = context.clock.now();
    match (plan.phase, outcome) {
        (_, Outcome::WrongAccount { reason }) => {
            output::line(format!("{user}: REFUSED - {reason}"))
        }
        (Phase::Done, _) => output::line(format!(
            "{user}: done - profile [{profile}] holds the new key {new}; the old key {old} is \
             deleted"
        )),
        (Phase::Verify, _) => {
            let due = plan.phase_since + plan.policy.verify_period.to_chrono();
            output::line(format!(
                "{user}: the old key {old} is inactive; profile [{profile}] holds the new key {new}"
            ));
            output::line(format!(
                "  `iam-rotate self-rotate` (or `iam-rotate run {user}`) deletes the old key from \
                 {} ({}); `iam-rotate rollback {user}` reactivates it if something else still \
                 needs it",
                output::time(due),
                crate::duration::relative(due, now)
            ));
        }
        (_, Outcome::Waiting { reason, until, .. }) => {
            output::line(format!("{user}: {} - {reason}", plan.phase));
            let when = match until {
                Some(until) => format!(
                    "after {} ({})",
                    output::time(*until),
                    crate::duration::relative(*until, now)
                ),
                None => "in a few minutes, once IAM has recorded the new key's use".into(),
            };
            output::line(format!(
                "  the new key {new} works and is in profile [{profile}]; the old key {old} stays \
                 active for now. Run `iam-rotate self-rotate` again {when}"
            ));
        }
        (Phase::Blocked, _) => output::line(format!(
            "  once that is fixed, `iam-rotate run --retry-blocked {user}` goes on (or \
             `iam-rotate rollback {user}`)"
        )),
        (phase, _) => output::line(format!("{user}: {phase}")),
    }
}
