//! One decision per phase, once the guards passed: the account is the
//! plan's, the user exists and the live keys are what the plan recorded
//! (see [`super::guards`]). Each says whether the phase's step is due now
//! or what it waits for.

use chrono::{DateTime, Utc};

use crate::iam::LastUse;
use crate::plan::{mask_key, Phase, Plan};

use super::{Decision, Observed, Step};

/// A key whose last use was not read: taken as never used, which in every
/// phase below is the reading that waits rather than acts.
static NEVER_USED: LastUse = LastUse {
    at: None,
    service: None,
    region: None,
};

fn old_use(seen: &Observed) -> &LastUse {
    seen.old_use.as_ref().unwrap_or(&NEVER_USED)
}

fn new_use(seen: &Observed) -> &LastUse {
    seen.new_use.as_ref().unwrap_or(&NEVER_USED)
}

/// `create_second_key`: nothing to wait for.
pub fn decide_create(_plan: &Plan, _seen: &Observed) -> Decision {
    Decision::Act(Step::CreateKey)
}

/// `wait_for_adoption`: the new key must have been used (unless
/// `require_new_key_use` is off) and `adoption_wait` have passed since it
/// was created.
pub fn decide_wait_for_adoption(plan: &Plan, seen: &Observed) -> Decision {
    let Some(new_key) = &plan.new_key else {
        return missing_new_key(plan);
    };
    let policy = &plan.policy;
    let now = seen.now;
    let new_use = new_use(seen);
    let old = mask_key(&plan.old_key.id);
    let new = mask_key(&new_key.id);
    let due = adoption_start(plan, new_key) + policy.adoption_wait.to_chrono();
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
        let since = match plan.restarted_at {
            Some(at) if at > new_key.created_at => {
                format!(
                    "restarted by rollback {}",
                    crate::duration::relative(at, now)
                )
            }
            _ => format!(
                "new key created {}",
                crate::duration::relative(new_key.created_at, now)
            ),
        };
        waits.push(format!(
            "the adoption wait of {} to pass ({since})",
            policy.adoption_wait,
        ));
    }
    // Right after the create, the old key's use is not read: only time can
    // move this plan on, and the next run reads it.
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

/// `check_last_used`: the old key must have been unused for `quiet_period`.
pub fn decide_check_last_used(plan: &Plan, seen: &Observed) -> Decision {
    let policy = &plan.policy;
    let now = seen.now;
    let old_use = old_use(seen);
    let old = mask_key(&plan.old_key.id);
    match quiet_until(plan, old_use) {
        Some(until) if now < until => Decision::Wait {
            until: Some(until),
            reason: format!(
                "old key {old} last used {}{}; it must be unused for {} (quiet_period) before it \
                 is set inactive",
                old_use.describe(now),
                plan.restarted_at
                    .filter(|at| old_use.at.is_none_or(|used| used < *at))
                    .map(|at| format!(
                        " and made active again by rollback {}",
                        crate::duration::relative(at, now)
                    ))
                    .unwrap_or_default(),
                policy.quiet_period
            ),
            next: format!(
                "find what still uses {old} (CloudTrail events with this access key id) and \
                 switch it to the new key"
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
    }
}

/// `set_inactive`: deactivate the old key, unless it was used again since
/// `check_last_used` (never deactivate a key in use): then back there.
pub fn decide_set_inactive(plan: &Plan, seen: &Observed) -> Decision {
    let old_use = old_use(seen);
    match quiet_until(plan, old_use) {
        Some(until) if seen.now < until => Decision::Act(Step::Advance {
            to: Phase::CheckLastUsed,
            action: format!(
                "old key {} was used again {}; back to checking its last use",
                mask_key(&plan.old_key.id),
                old_use.describe(seen.now)
            ),
        }),
        _ => Decision::Act(Step::Deactivate {
            key_id: plan.old_key.id.clone(),
        }),
    }
}

/// `verify`: the old key must not have been used since it went inactive
/// (else block), the new key must have been used (when required), and
/// `verify_period` must have passed.
pub fn decide_verify(plan: &Plan, seen: &Observed) -> Decision {
    let policy = &plan.policy;
    let now = seen.now;
    let old_use = old_use(seen);
    let new_use = new_use(seen);
    let old = mask_key(&plan.old_key.id);
    let baseline = plan.old_key.last_used_at_deactivation;
    if let Some(used) = old_use.at {
        if baseline.is_none_or(|b| used > b) {
            return Decision::Block {
                reason: format!(
                    "the old key {old} was used {} after it was set inactive: something still \
                     holds it and is now failing. Roll back now with `iam-rotate rollback {}` \
                     to reactivate it; or switch that application to the new key and run \
                     `iam-rotate run --retry-blocked {}` to restart verification.",
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
                "the old key {old} is inactive and the new key was never used: check the \
                 applications; if one broke, `iam-rotate rollback {}`",
                plan.user
            ),
        };
    }
    let due = plan.phase_since + policy.verify_period.to_chrono();
    if now < due {
        return Decision::Wait {
            until: Some(due),
            reason: format!(
                "verifying: old key {old} inactive since {}; it is deleted once {} pass without \
                 it being used",
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

/// `delete`: nothing to wait for; the guards saw the old key Inactive (or
/// already gone by an interrupted delete).
pub fn decide_delete(plan: &Plan, _seen: &Observed) -> Decision {
    Decision::Act(Step::DeleteOld {
        key_id: plan.old_key.id.clone(),
    })
}

/// Until when the old key must stay unused: `quiet_period` after its last
/// use, or after a rollback made it Active again (its use since then may
/// not be recorded yet); `None` when it never was used and never restarted.
pub fn quiet_until(plan: &Plan, old_use: &LastUse) -> Option<DateTime<Utc>> {
    old_use
        .at
        .into_iter()
        .chain(plan.restarted_at)
        .max()
        .map(|at| at + plan.policy.quiet_period.to_chrono())
}

/// When the adoption wait starts: at the new key's creation, or at the last
/// rollback that sent the rotation back to `wait_for_adoption`.
pub fn adoption_start(plan: &Plan, new_key: &crate::plan::NewKey) -> DateTime<Utc> {
    plan.restarted_at
        .map_or(new_key.created_at, |at| at.max(new_key.created_at))
}

pub(super) fn missing_new_key(plan: &Plan) -> Decision {
    Decision::Block {
        reason: format!(
            "the plan is in {} but records no new_key; it was edited by hand. Restore it from \
             version control, or roll back with `iam-rotate rollback {}`.",
            plan.effective_phase(),
            plan.user
        ),
    }
}
