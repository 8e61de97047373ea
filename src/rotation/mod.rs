//! The rotation state machine: given a plan, what was just observed in IAM
//! and the time, decide the one next thing to do. Pure: no I/O, no clock, no
//! AWS. The [`crate::engine`] carries the decision out and asks again.

pub mod policy;

use chrono::{DateTime, Duration, Utc};

use crate::iam::{LastUse, LiveKey};
use crate::plan::{mask_key, KeyStatus, Phase, Plan};

/// A key created this long before the recorded create intent (clock skew
/// between this machine and IAM) can still be the intent's orphan.
pub const ORPHAN_SKEW_BEFORE: Duration = Duration::minutes(5);
/// A key created this long after the intent cannot have come from the
/// interrupted CreateAccessKey call (the SDK gives up well before).
pub const ORPHAN_WINDOW_AFTER: Duration = Duration::minutes(15);

/// What the engine saw just now.
#[derive(Clone, Debug)]
pub struct Observed {
    /// Policy time (the system clock, or `IAM_ROTATE_NOW`).
    pub now: DateTime<Utc>,
    /// Real time, to compare with timestamps IAM stamps itself.
    pub system_now: DateTime<Utc>,
    /// The account of the credentials in use.
    pub caller_account: String,
    /// ListAccessKeys for the plan's user; `None` when the user is gone.
    pub keys: Option<Vec<LiveKey>>,
    /// Last use of the old key, when it was fetched.
    pub old_use: Option<LastUse>,
    /// Last use of the new key, when it was fetched.
    pub new_use: Option<LastUse>,
}

/// The one next thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The plan is done or rolled back: nothing more, ever.
    Finished,
    /// Not due yet. AWS is left alone.
    Wait {
        /// The earliest time the plan can go on, when time alone decides it.
        until: Option<DateTime<Utc>>,
        /// What it waits for, in the operator's words.
        reason: String,
        /// What the operator can do meanwhile.
        next: String,
    },
    /// A person must look: the plan must not go on as it is.
    Block { reason: String },
    /// The credentials in use belong to another account: nothing may be
    /// touched, and the plan itself is fine.
    WrongAccount { reason: String },
    /// An AWS write or a plan transition, due now.
    Act(Step),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A key created by an interrupted CreateAccessKey whose secret may be
    /// lost: delete it, then create again.
    DeleteOrphan { key_id: String },
    /// Record the intent, CreateAccessKey, deliver the secret, record the key.
    CreateKey,
    /// A transition that needs no AWS write.
    Advance { to: Phase, action: String },
    /// UpdateAccessKey(old, Inactive).
    Deactivate { key_id: String },
    /// DeleteAccessKey(old); the key is Inactive.
    DeleteOld { key_id: String },
}

/// Whether [`decide`] looks at IAM at all in this phase. A finished plan
/// is finished and a blocked one stays blocked (until `--retry-blocked`
/// moves it back), whatever IAM holds: no call is made for them.
pub fn needs_observation(phase: Phase) -> bool {
    !matches!(phase, Phase::Done | Phase::RolledBack | Phase::Blocked)
}

/// Which GetAccessKeyLastUsed samples a phase needs: (old key, new key).
///
/// Each is one IAM call per key per run, so only what [`decide`] reads:
/// - `wait_for_adoption`: the new key's use decides; the old key's is what
///   the operator is told to watch meanwhile.
/// - `check_last_used`, `set_inactive`: the old key's use alone decides.
/// - `verify`: both (the old key must not have moved, the new one be used).
/// - `create_second_key`, `delete`: the key listing alone decides.
pub fn needs_last_used(phase: Phase) -> (bool, bool) {
    match phase {
        Phase::WaitForAdoption | Phase::Verify => (true, true),
        Phase::CheckLastUsed | Phase::SetInactive => (true, false),
        Phase::CreateSecondKey
        | Phase::Delete
        | Phase::Done
        | Phase::RolledBack
        | Phase::Blocked => (false, false),
    }
}

/// Decides the next step for `plan`.
pub fn decide(plan: &Plan, seen: &Observed) -> Decision {
    match plan.phase {
        Phase::Done | Phase::RolledBack => return Decision::Finished,
        Phase::Blocked => {
            return Decision::Block {
                reason: plan
                    .blocked_reason
                    .clone()
                    .unwrap_or_else(|| "the plan is blocked".into()),
            }
        }
        _ => {}
    }
    if seen.caller_account != plan.account {
        return Decision::WrongAccount {
            reason: format!(
                "the credentials in use belong to account {}, but this plan is for account {}. \
                 Nothing was changed. Run again with a profile for account {} (--profile or AWS_PROFILE).",
                seen.caller_account, plan.account, plan.account
            ),
        };
    }
    let Some(keys) = &seen.keys else {
        return Decision::Block {
            reason: format!(
                "IAM user {} no longer exists in account {}. Someone deleted it outside \
                 iam-rotate; there is nothing left to rotate. Confirm the deletion was intended, \
                 then move this plan file away.",
                plan.user, plan.account
            ),
        };
    };
    let orphan = match reconcile(plan, keys, seen.system_now) {
        Ok(orphan) => orphan,
        Err(reason) => return Decision::Block { reason },
    };
    if let Some(key_id) = orphan {
        return Decision::Act(Step::DeleteOrphan { key_id });
    }
    let no_use = LastUse::default();
    let old_use = seen.old_use.as_ref().unwrap_or(&no_use);
    let new_use = seen.new_use.as_ref().unwrap_or(&no_use);
    let now = seen.now;
    let policy = &plan.policy;
    let old = mask_key(&plan.old_key.id);

    match plan.phase {
        Phase::CreateSecondKey => Decision::Act(Step::CreateKey),
        Phase::WaitForAdoption => {
            let Some(new_key) = &plan.new_key else {
                return missing_new_key(plan);
            };
            let new = mask_key(&new_key.id);
            let due = new_key.created_at + policy.adoption_wait.to_chrono();
            let used = new_use.at.is_some();
            let used_ok = used || !policy.require_new_key_use;
            if used_ok && now >= due {
                let how = if used {
                    format!("new key {new} used {}", new_use.describe(now))
                } else {
                    format!("new key {new} not used (require_new_key_use is off)")
                };
                return Decision::Act(Step::Advance {
                    to: Phase::CheckLastUsed,
                    action: format!("adoption wait of {} over; {how}", policy.adoption_wait),
                });
            }
            let mut waits = Vec::new();
            if !used_ok {
                waits.push(format!("the new key {new} to be used (it never has been)"));
            }
            if now < due {
                waits.push(format!(
                    "the adoption wait of {} to pass (new key created {})",
                    policy.adoption_wait,
                    crate::duration::relative(new_key.created_at, now)
                ));
            }
            // Right after the create, the old key's use is not read: only
            // time can move this plan on, and the next run reads it.
            let old_seen = seen
                .old_use
                .as_ref()
                .map(|u| format!("; old key last used {}", u.describe(now)))
                .unwrap_or_default();
            Decision::Wait {
                until: (now < due).then_some(due),
                reason: format!("waiting for {}", waits.join(" and ")),
                next: format!(
                    "deploy the new key from {} to every application that uses {old}{old_seen}",
                    plan.delivery,
                ),
            }
        }
        Phase::CheckLastUsed => match quiet_until(plan, old_use) {
            Some(until) if now < until => Decision::Wait {
                until: Some(until),
                reason: format!(
                    "old key {old} last used {}; it must be unused for {} (quiet_period) \
                     before it is set inactive",
                    old_use.describe(now),
                    policy.quiet_period
                ),
                next: format!(
                    "find what still uses {old} (CloudTrail events with this access key id) \
                     and switch it to the new key"
                ),
            },
            _ => Decision::Act(Step::Advance {
                to: Phase::SetInactive,
                action: format!(
                    "old key {old} quiet: last used {} (quiet_period {})",
                    old_use.describe(now),
                    policy.quiet_period
                ),
            }),
        },
        Phase::SetInactive => match quiet_until(plan, old_use) {
            // Used again since check_last_used: never deactivate a key in use.
            Some(until) if now < until => Decision::Act(Step::Advance {
                to: Phase::CheckLastUsed,
                action: format!(
                    "old key {old} was used again {}; back to checking its last use",
                    old_use.describe(now)
                ),
            }),
            _ => Decision::Act(Step::Deactivate {
                key_id: plan.old_key.id.clone(),
            }),
        },
        Phase::Verify => {
            let baseline = plan.old_key.last_used_at_deactivation;
            if let Some(used) = old_use.at {
                if baseline.is_none_or(|b| used > b) {
                    return Decision::Block {
                        reason: format!(
                            "the old key {old} was used {} after it was set inactive: something \
                             still holds it and is now failing. Roll back now with `iam-rotate \
                             rollback {}` to reactivate it; or switch that application to the new \
                             key and run `iam-rotate run --retry-blocked {}` to restart verification.",
                            old_use.describe(now),
                            plan.user,
                            plan.user
                        ),
                    };
                }
            }
            let Some(new_key) = &plan.new_key else {
                return missing_new_key(plan);
            };
            let new = mask_key(&new_key.id);
            if policy.require_new_key_use && new_use.at.is_none() {
                return Decision::Wait {
                    until: None,
                    reason: format!("waiting for the new key {new} to be used"),
                    next: format!(
                        "the old key {old} is inactive and the new key was never used: check \
                         the applications; if one broke, `iam-rotate rollback {}`",
                        plan.user
                    ),
                };
            }
            let due = plan.phase_since + policy.verify_period.to_chrono();
            if now < due {
                return Decision::Wait {
                    until: Some(due),
                    reason: format!(
                        "verifying: old key {old} inactive since {}; it is deleted once {} pass \
                         without it being used",
                        crate::duration::relative(plan.phase_since, now),
                        policy.verify_period
                    ),
                    next: format!(
                        "if anything broke, `iam-rotate rollback {}` reactivates the old key",
                        plan.user
                    ),
                };
            }
            Decision::Act(Step::Advance {
                to: Phase::Delete,
                action: format!(
                    "verified: old key {old} unused for {} while inactive; new key last used {}",
                    policy.verify_period,
                    new_use.describe(now)
                ),
            })
        }
        Phase::Delete => Decision::Act(Step::DeleteOld {
            key_id: plan.old_key.id.clone(),
        }),
        Phase::Done | Phase::RolledBack | Phase::Blocked => Decision::Finished,
    }
}

/// Until when the old key must stay unused; `None` when it never was used.
fn quiet_until(plan: &Plan, old_use: &LastUse) -> Option<DateTime<Utc>> {
    old_use
        .at
        .map(|at| at + plan.policy.quiet_period.to_chrono())
}

fn missing_new_key(plan: &Plan) -> Decision {
    Decision::Block {
        reason: format!(
            "the plan is in {} but records no new_key; it was edited by hand. Restore it from \
             version control, or roll back with `iam-rotate rollback {}`.",
            plan.effective_phase(),
            plan.user
        ),
    }
}

/// Compares the live keys with the plan. `Err`: drift, with the reason.
/// `Ok(Some(id))`: the orphan of an interrupted create, safe to delete.
pub fn reconcile(
    plan: &Plan,
    keys: &[LiveKey],
    system_now: DateTime<Utc>,
) -> Result<Option<String>, String> {
    let user = &plan.user;
    let old = mask_key(&plan.old_key.id);
    let old_live = keys.iter().find(|k| k.id == plan.old_key.id);
    // An interrupted run may have deactivated (in set_inactive) or deleted
    // (in delete) the old key without recording it: that is the step itself.
    let interrupted_step = match (plan.phase, old_live) {
        (Phase::Delete, None) => true,
        (Phase::SetInactive, Some(k)) => k.status == KeyStatus::Inactive,
        _ => false,
    };
    let Some(old_live) = old_live else {
        if interrupted_step {
            return Ok(None);
        }
        return Err(format!(
            "the old key {old} no longer exists on user {user}, although the plan is in {}. \
             Someone deleted it outside iam-rotate. Check that the applications work with the \
             remaining key; this plan cannot go on: move it away and plan again if needed.",
            plan.effective_phase()
        ));
    };
    if old_live.status != plan.old_key.status && !interrupted_step {
        return Err(format!(
            "the old key {old} is {} in IAM but the plan expects it {}: someone changed it \
             outside iam-rotate. Set it back (`aws iam update-access-key --user-name {user} \
             --access-key-id {} --status {}`) and run `iam-rotate run --retry-blocked {user}`, \
             or roll back with `iam-rotate rollback {user}`.",
            old_live.status, plan.old_key.status, plan.old_key.id, plan.old_key.status
        ));
    }
    if let Some(new_key) = &plan.new_key {
        let new = mask_key(&new_key.id);
        match keys.iter().find(|k| k.id == new_key.id) {
            None => {
                return Err(format!(
                    "the new key {new} no longer exists on user {user}: someone deleted it \
                     outside iam-rotate. Its applications are failing if they adopted it. Roll \
                     back with `iam-rotate rollback {user}` to keep the old key, then plan again."
                ))
            }
            Some(k) if k.status != KeyStatus::Active => {
                return Err(format!(
                    "the new key {new} is {} in IAM: someone changed it outside iam-rotate. \
                     Reactivate it (`aws iam update-access-key --user-name {user} \
                     --access-key-id {} --status Active`) and run `iam-rotate run \
                     --retry-blocked {user}`, or roll back with `iam-rotate rollback {user}`.",
                    k.status, new_key.id
                ))
            }
            Some(_) => {}
        }
    }
    let known = |k: &&LiveKey| {
        k.id == plan.old_key.id || plan.new_key.as_ref().is_some_and(|n| n.id == k.id)
    };
    let unknown: Vec<&LiveKey> = keys.iter().filter(|k| !known(k)).collect();
    let Some(stranger) = unknown.first() else {
        return Ok(None);
    };
    if let (Phase::CreateSecondKey, None, Some(intent)) =
        (plan.phase, &plan.new_key, plan.create_intent_at)
    {
        let window_start = intent - ORPHAN_SKEW_BEFORE;
        let window_end = (intent + ORPHAN_WINDOW_AFTER).min(system_now + ORPHAN_SKEW_BEFORE);
        if unknown.len() == 1
            && stranger.created_at >= window_start
            && stranger.created_at <= window_end
        {
            return Ok(Some(stranger.id.clone()));
        }
    }
    Err(format!(
        "user {user} has a key iam-rotate does not know: {} ({}, created {}). iam-rotate never \
         touches a key its plan does not name. Find out who created it; if it is not needed, \
         delete it yourself (`aws iam delete-access-key --user-name {user} --access-key-id {}`), \
         then run `iam-rotate run --retry-blocked {user}`.",
        mask_key(&stranger.id),
        stranger.status,
        stranger.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
        stranger.id
    ))
}

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

#[cfg(test)]
mod tests;
