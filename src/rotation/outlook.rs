//! What `status` and `show` say comes next for a plan, from the plan alone:
//! the next step and when it is due, the command to run next, and whether
//! the plan is overdue (stuck in a waiting phase and needing a person).

use chrono::{DateTime, Utc};

use crate::plan::{mask_key, Phase, Plan};

use super::phases::{adoption_start, quiet_until};
use crate::iam::LastUse;

/// For `status` and `show`, from the plan alone (no AWS call): what happens
/// next and when it is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outlook {
    pub next_step: String,
    pub due_at: Option<DateTime<Utc>>,
}

pub fn outlook(plan: &Plan, now: DateTime<Utc>) -> Outlook {
    let policy = &plan.policy;
    let last = plan.last_observation();
    let user = &plan.user;
    match plan.phase {
        Phase::CreateSecondKey => Outlook {
            next_step: format!("create the second key and deliver it to {}", plan.delivery),
            due_at: Some(plan.phase_since),
        },
        Phase::WaitForAdoption => {
            let due = plan
                .new_key
                .as_ref()
                .map(|k| adoption_start(plan, k) + policy.adoption_wait.to_chrono());
            let used = last.and_then(|o| o.new_last_used).is_some();
            let next_step = if used || !policy.require_new_key_use {
                "check the old key's last use once the adoption wait is over".to_string()
            } else {
                "wait for the new key to be used, then for the adoption wait to pass".to_string()
            };
            Outlook {
                next_step,
                due_at: due,
            }
        }
        Phase::CheckLastUsed => {
            let old_use = LastUse {
                at: last.and_then(|o| o.old_last_used),
                service: None,
                region: None,
            };
            let due = quiet_until(plan, &old_use)
                .filter(|due| *due > now)
                .unwrap_or(plan.phase_since);
            Outlook {
                next_step: format!(
                    "set the old key inactive once unused for {}",
                    policy.quiet_period
                ),
                due_at: Some(due),
            }
        }
        Phase::SetInactive => Outlook {
            next_step: "set the old key inactive".into(),
            due_at: Some(plan.phase_since),
        },
        Phase::Verify => Outlook {
            next_step: format!(
                "delete the old key if it stays unused while inactive for {}",
                policy.verify_period
            ),
            due_at: Some(plan.phase_since + policy.verify_period.to_chrono()),
        },
        Phase::Delete => Outlook {
            next_step: "delete the old key".into(),
            due_at: Some(plan.phase_since),
        },
        Phase::Done => Outlook {
            next_step: "nothing: the rotation is complete".into(),
            due_at: None,
        },
        Phase::RolledBack => Outlook {
            next_step: match plan.new_key.as_ref().filter(|k| k.deleted_at.is_none()) {
                Some(new_key) => format!(
                    "rolled back with the new key {} kept: the user has two keys, so no new \
                     rotation can start until one goes; `rollback --abort --delete-new` deletes \
                     the new one",
                    mask_key(&new_key.id)
                ),
                None => "nothing: rolled back; plan again to rotate anew".into(),
            },
            due_at: None,
        },
        Phase::Blocked => Outlook {
            next_step: format!(
                "a person must act (see blocked_reason), then `iam-rotate run --retry-blocked {user}`"
            ),
            due_at: None,
        },
    }
}

/// The command a person or a scheduler runs next for a plan, from the plan
/// alone; the command layer writes it out with the invocation's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextCommand {
    /// `run USER`: takes whatever step is due, or says what it waits for.
    Run,
    /// `run --retry-blocked USER`: re-checks a blocked plan once a person
    /// fixed the cause (exit 3 while the cause is still there).
    RetryBlocked,
    /// `rollback --abort --delete-new USER`: a rotation ended with the new
    /// key kept leaves the user two keys, and no new rotation can start
    /// until one of them goes.
    DeleteNew,
}

impl NextCommand {
    /// The subcommand and its flags, without the user.
    pub fn words(self) -> &'static [&'static str] {
        match self {
            NextCommand::Run => &["run"],
            NextCommand::RetryBlocked => &["run", "--retry-blocked"],
            NextCommand::DeleteNew => &["rollback", "--abort", "--delete-new"],
        }
    }
}

/// What to run next: `None` when nothing is left to do (a finished
/// rotation, or one rolled back with the user down to one key).
pub fn next_command(plan: &Plan) -> Option<NextCommand> {
    match plan.phase {
        Phase::Done => None,
        Phase::RolledBack => plan
            .new_key
            .as_ref()
            .filter(|k| k.deleted_at.is_none())
            .map(|_| NextCommand::DeleteNew),
        Phase::Blocked => Some(NextCommand::RetryBlocked),
        Phase::CreateSecondKey
        | Phase::WaitForAdoption
        | Phase::CheckLastUsed
        | Phase::SetInactive
        | Phase::Verify
        | Phase::Delete => Some(NextCommand::Run),
    }
}

/// A plan that stayed in a waiting phase longer than that phase's own wait
/// plus `overdue_after`: time alone will not move it, a person must.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overdue {
    /// When it became overdue.
    pub since: DateTime<Utc>,
    /// What is stuck and what a person must do, in the operator's words.
    pub what: String,
}

/// Whether `plan` is overdue at `now`, judged from the plan alone (its
/// last observation stands for IAM):
/// - `wait_for_adoption`: the new key still unused `adoption_wait` +
///   `overdue_after` after the adoption started;
/// - `check_last_used`: the old key still not quiet `quiet_period` +
///   `overdue_after` after the phase began;
/// - `verify`: not verified `verify_period` + `overdue_after` after the old
///   key went inactive.
///
/// Other phases take no wait of their own; a blocked plan needs a person
/// already and says so itself.
pub fn overdue(plan: &Plan, now: DateTime<Utc>) -> Option<Overdue> {
    let policy = &plan.policy;
    let grace = policy.overdue_after.to_chrono();
    let user = &plan.user;
    let old = mask_key(&plan.old_key.id);
    let (since, what) = match plan.phase {
        Phase::WaitForAdoption => {
            let new_key = plan.new_key.as_ref()?;
            let used = plan
                .last_observation()
                .is_some_and(|o| o.new_last_used.is_some());
            if used || !policy.require_new_key_use {
                return None;
            }
            let start = adoption_start(plan, new_key);
            (
                start + policy.adoption_wait.to_chrono() + grace,
                format!(
                    "the new key {} has not been used in the {} since the adoption began: deploy it \
                     from {} to the applications that use {old}, or end the rotation with \
                     `iam-rotate rollback --abort {user}`",
                    mask_key(&new_key.id),
                    crate::duration::relative(start, now).trim_end_matches(" ago"),
                    plan.delivery
                ),
            )
        }
        Phase::CheckLastUsed => {
            let start = plan
                .restarted_at
                .map_or(plan.phase_since, |at| at.max(plan.phase_since));
            (
                start + policy.quiet_period.to_chrono() + grace,
                format!(
                    "the old key {old} is still in use, {} after the rotation began checking it: \
                     find what uses it (CloudTrail events with this access key id) and switch \
                     it to the new key",
                    crate::duration::relative(start, now).trim_end_matches(" ago"),
                ),
            )
        }
        Phase::Verify => {
            let new_used = plan
                .last_observation()
                .is_some_and(|o| o.new_last_used.is_some());
            let why = if new_used || !policy.require_new_key_use {
                format!("nothing ran it since: `iam-rotate run {user}` finishes it")
            } else {
                format!(
                    "the new key has not been used: check the applications; if one broke, \
                     `iam-rotate rollback {user}` reactivates the old key"
                )
            };
            (
                plan.phase_since + policy.verify_period.to_chrono() + grace,
                format!(
                    "verification of {user} has not finished {} after the old key {old} was set \
                     inactive; {why}",
                    crate::duration::relative(plan.phase_since, now).trim_end_matches(" ago"),
                ),
            )
        }
        _ => return None,
    };
    (now >= since).then_some(Overdue { since, what })
}
