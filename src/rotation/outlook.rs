//! What `status` and `show` say comes next for a plan, from the plan alone.

use chrono::{DateTime, Utc};

use crate::plan::{Phase, Plan};

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
                .map(|k| k.created_at + policy.adoption_wait.to_chrono());
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
            let due = last
                .and_then(|o| o.old_last_used)
                .map(|at| at + policy.quiet_period.to_chrono())
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
            next_step: "nothing: rolled back; plan again to rotate anew".into(),
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
