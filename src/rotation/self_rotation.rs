//! The rules of a self-rotation, pure: its policy, which key the profile
//! must sign with at each phase, and which existing plan it may resume.

use std::path::Path;

use crate::duration::HumanDuration;
use crate::plan::{mask_key, Phase, Plan, PlanKind};
use crate::rotation::policy::Policy;

/// The policy of a self-rotation. The key's one consumer is the profile
/// self-rotate rewrites itself, so there is nothing to wait for before the
/// old key goes inactive: the new key authenticating is the adoption signal.
/// The old key is kept (inactive) for a day in case something else used it.
pub fn self_policy() -> Policy {
    Policy {
        adoption_wait: HumanDuration::from_secs(0),
        quiet_period: HumanDuration::from_secs(0),
        verify_period: HumanDuration::from_days(1),
        require_new_key_use: true,
        allow_short_quiet_period: true,
    }
}

/// The profile signs with another key than the plan expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMismatch {
    /// The old key is back in the profile after the new one was written.
    OldKeyBack {
        old: String,
        new: Option<String>,
        user: String,
    },
    /// Some other key.
    Other { in_use: String, expected: String },
}

impl KeyMismatch {
    pub fn message(&self, profile: &str, plan_path: &Path) -> String {
        match self {
            KeyMismatch::OldKeyBack { old, new, user } => format!(
                "profile [{profile}] holds the old key {} again, but this self-rotation already \
                 created the new key {} and wrote it there; its secret is no longer in the \
                 profile. Undo the rotation with `iam-rotate rollback {user} --delete-new`, then \
                 self-rotate anew",
                mask_key(old),
                new.as_deref().map(mask_key).unwrap_or_default(),
            ),
            KeyMismatch::Other { in_use, expected } => format!(
                "profile [{profile}] signs with the key {}, but the plan {} expects {}. Check the \
                 profile, or move the plan away if it is stale",
                mask_key(in_use),
                plan_path.display(),
                mask_key(expected)
            ),
        }
    }
}

/// The key in use must be the one the plan expects the profile to hold:
/// the old key before the new one is created, the new key after.
pub fn check_plan_key(plan: &Plan, in_use: &str) -> Result<(), KeyMismatch> {
    let new_key = plan.new_key.as_ref().map(|k| k.id.as_str());
    let expected = match plan.effective_phase() {
        Phase::CreateSecondKey => Some(plan.old_key.id.as_str()),
        Phase::Done | Phase::RolledBack => None,
        _ => new_key,
    };
    match expected {
        None => Ok(()),
        Some(id) if id == in_use => Ok(()),
        Some(_) if in_use == plan.old_key.id => Err(KeyMismatch::OldKeyBack {
            old: plan.old_key.id.clone(),
            new: new_key.map(str::to_string),
            user: plan.user.clone(),
        }),
        Some(id) => Err(KeyMismatch::Other {
            in_use: in_use.to_string(),
            expected: id.to_string(),
        }),
    }
}

/// Whether an existing plan is an unfinished self-rotation of `delivery`
/// to resume (`Ok(false)`: it is finished, and a new plan replaces it).
/// Any other unfinished plan is never taken over: `Err` says why.
pub fn resumable(existing: &Plan, path: &Path, delivery: &str) -> Result<bool, String> {
    let user = &existing.user;
    if existing.phase.is_finished() {
        return Ok(false);
    }
    if existing.kind != PlanKind::SelfRotate {
        let policy = &existing.policy;
        return Err(format!(
            "{user} already has an unfinished rotation plan at {} (phase {}, kind {}), made by \
             `iam-rotate plan`, not by self-rotate. Its policy (adoption_wait {}, quiet_period \
             {}, verify_period {}) gives everything that uses the old key time to move to the \
             new one, and self-rotate would cut that short, so the plan and the keys were left \
             as they were. Finish it with `iam-rotate run {user}`, end it with `iam-rotate \
             rollback {user}`, or move the plan file away if it is stale; then self-rotate again",
            path.display(),
            existing.phase,
            existing.kind,
            policy.adoption_wait,
            policy.quiet_period,
            policy.verify_period
        ));
    }
    if existing.delivery != delivery {
        return Err(format!(
            "{user} already has an unfinished rotation plan at {} (phase {}) delivering to {}, \
             not {delivery}. Carry it on with `iam-rotate run {user}`, or roll it back with \
             `iam-rotate rollback {user}`, before self-rotating",
            path.display(),
            existing.phase,
            existing.delivery
        ));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_rotation_policy_is_the_documented_one() {
        let policy = self_policy();
        assert_eq!(policy.adoption_wait.to_string(), "0s");
        assert_eq!(policy.quiet_period.to_string(), "0s");
        assert_eq!(policy.verify_period.to_string(), "1d");
        assert!(policy.require_new_key_use);
    }
}
