//! The rules of `self-rotate`, which rotates the key the caller's own
//! profile signs with: its policy, which key that profile must hold at each
//! phase, and whether a wait can end within the command's bound.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::duration::HumanDuration;
use crate::plan::policy::Policy;
use crate::plan::{mask_key, Phase, Plan, PlanKind};

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
        overdue_after: crate::plan::policy::DEFAULT_OVERDUE_AFTER,
    }
}

/// How often IAM is asked again while the new key's first use is not
/// recorded yet.
pub const POLL: Duration = Duration::from_secs(3);

/// The key the profile must sign with for the plan's phase: the old key
/// before the new one is created, the new key after; `None` for a
/// finished plan (any key will do) or a plan that records no new key.
pub fn expected_key(plan: &Plan) -> Option<&str> {
    match plan.effective_phase() {
        Phase::CreateSecondKey => Some(plan.old_key.id.as_str()),
        Phase::Done | Phase::RolledBack => None,
        _ => plan.new_key.as_ref().map(|k| k.id.as_str()),
    }
}

/// The profile signs with another key than [`expected_key`].
/// `Display` is the message the operator reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMismatch {
    /// The profile holds the old key again after the new one was written
    /// there: the new key's secret is lost.
    OldKeyAgain {
        profile: String,
        user: String,
        old_key: String,
        new_key: Option<String>,
    },
    /// Neither: the plan or the profile is not what the other expects.
    Unexpected {
        profile: String,
        in_use: String,
        expected: String,
        plan_path: PathBuf,
    },
}

impl fmt::Display for KeyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMismatch::OldKeyAgain {
                profile,
                user,
                old_key,
                new_key,
            } => write!(
                f,
                "profile [{profile}] holds the old key {} again, but this self-rotation already \
                 created the new key {} and wrote it there; its secret is no longer in the \
                 profile. Undo the rotation with `iam-rotate rollback {user} --delete-new`, then \
                 self-rotate anew",
                mask_key(old_key),
                new_key.as_deref().map(mask_key).unwrap_or_default(),
            ),
            KeyMismatch::Unexpected {
                profile,
                in_use,
                expected,
                plan_path,
            } => write!(
                f,
                "profile [{profile}] signs with the key {}, but the plan {} expects {}. Check the \
                 profile, or move the plan away if it is stale",
                mask_key(in_use),
                plan_path.display(),
                mask_key(expected)
            ),
        }
    }
}

impl std::error::Error for KeyMismatch {}

/// The key in use (`in_use`, the one `profile` signs with) must be the one
/// the plan at `plan_path` expects the profile to hold: see
/// [`expected_key`].
pub fn check_plan_key(
    plan: &Plan,
    in_use: &str,
    profile: &str,
    plan_path: &Path,
) -> Result<(), KeyMismatch> {
    match expected_key(plan) {
        None => Ok(()),
        Some(id) if id == in_use => Ok(()),
        Some(_) if in_use == plan.old_key.id => Err(KeyMismatch::OldKeyAgain {
            profile: profile.to_string(),
            user: plan.user.clone(),
            old_key: plan.old_key.id.clone(),
            new_key: plan.new_key.as_ref().map(|k| k.id.clone()),
        }),
        Some(id) => Err(KeyMismatch::Unexpected {
            profile: profile.to_string(),
            in_use: in_use.to_string(),
            expected: id.to_string(),
            plan_path: plan_path.to_path_buf(),
        }),
    }
}

/// How long to pause before asking the engine again, for a plan in
/// `phase` that waits (until `until`, when time alone decides it), with
/// `left` of the command's bound remaining at `now`; `None`: stop waiting.
/// Only what can come within the bound is waited for: IAM recording the new
/// key's first use (it lags), or a due time the bound reaches. A plan that
/// waits for days (a policy other than self-rotate's) is not waited for.
pub fn worth_waiting(
    phase: Phase,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    left: Duration,
) -> Option<Duration> {
    if !matches!(phase, Phase::WaitForAdoption | Phase::CheckLastUsed) {
        return None;
    }
    let reachable = match until {
        None => true,
        Some(until) => (until - now).to_std().unwrap_or_default() <= left,
    };
    (reachable && !left.is_zero()).then(|| POLL.min(left))
}

/// The verify baseline once the old key went inactive at `deactivated`
/// (real time): the old key's last uses were self-rotate's own calls
/// seconds before, which IAM may publish only later, so verify must not
/// take them for a use after deactivation. `None`: the recorded baseline is
/// already that late.
pub fn deactivation_baseline(plan: &Plan, deactivated: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let recorded = plan.old_key.last_used_at_deactivation;
    recorded
        .is_none_or(|at| at < deactivated)
        .then_some(deactivated)
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
