//! The rotation state machine: given a plan, what was just observed in IAM
//! and the time, decide the one next thing to do. Pure: no I/O, no clock, no
//! AWS. The [`crate::engine`] carries the decision out and asks again.
//!
//! - [`decide`]: the guards ([`guards`]), then one function per phase
//!   ([`phases`]).
//! - [`reconcile`](mod@reconcile): the live keys against the plan (drift,
//!   interrupted create).
//! - [`orphan`]: the key an interrupted CreateAccessKey may have left.
//! - [`retry`]: whether `run --retry-blocked` may unblock a plan.
//! - [`rollback`]: what `rollback` may do, as steps or a refusal.
//! - [`self_rotation`]: the rules of `self-rotate`.
//! - [`outlook`]: what `status` and `show` say comes next.

/// The policy lives with the plan that stores it; re-exported so
/// `rotation::policy` paths keep working.
pub use crate::plan::policy;

pub mod orphan;
pub mod outlook;
pub mod phases;
pub mod preview;
pub mod reconcile;
pub mod retry;
pub mod rollback;
pub mod self_rotation;

use chrono::{DateTime, Utc};

use crate::deliver::Held;
use crate::iam::{LastUse, LiveKey};
use crate::plan::{Phase, Plan};

pub use orphan::{
    describe_candidate, find_orphan, not_provably_ours, orphan_candidate, orphan_candidate_in,
    orphan_window, why_not_ours, Orphan, ORPHAN_SKEW,
};
pub use outlook::{next_command, outlook, overdue, NextCommand, Outlook, Overdue};
pub use phases::{
    decide_check_last_used, decide_create, decide_delete, decide_set_inactive, decide_verify,
    decide_wait_for_adoption,
};
pub use preview::{preview, WouldStep, PREVIEW_NEW_KEY};
pub use reconcile::reconcile;
pub use retry::{decide_retry, verification_restart, Retry};
pub use rollback::{
    check_rollback, decide_rollback, rollback_orphan_candidate, Refusal, RollbackEnd,
    RollbackOptions, RollbackStep,
};

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
    /// Last use of the [`orphan_candidate`], when there is one (and the
    /// destination does not hold it).
    pub orphan_use: Option<LastUse>,
    /// What the plan's destination holds, read when there is an
    /// [`orphan_candidate`].
    pub delivered: Option<Held>,
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
    /// What was read does not tell what is safe (a destination that could
    /// not be read): nothing is done, the run fails, and the next run
    /// reads again.
    Unsure { reason: String },
    /// An AWS write or a plan transition, due now.
    Act(Step),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A key provably made by this plan's interrupted CreateAccessKey
    /// (created in its window, never used), whose secret never reached the
    /// destination: delete it, then create again.
    DeleteOrphan { key_id: String },
    /// The key of an interrupted CreateAccessKey that the destination
    /// holds: it was delivered before the run died, so it is the new key.
    AdoptDelivered { key_id: String },
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

/// Decides the next step for `plan`: the guards, then the phase's own rule.
pub fn decide(plan: &Plan, seen: &Observed) -> Decision {
    if let Some(decision) = guards(plan, seen) {
        return decision;
    }
    match plan.phase {
        Phase::CreateSecondKey => decide_create(plan, seen),
        Phase::WaitForAdoption => decide_wait_for_adoption(plan, seen),
        Phase::CheckLastUsed => decide_check_last_used(plan, seen),
        Phase::SetInactive => decide_set_inactive(plan, seen),
        Phase::Verify => decide_verify(plan, seen),
        Phase::Delete => decide_delete(plan, seen),
        Phase::Done | Phase::RolledBack | Phase::Blocked => Decision::Finished,
    }
}

/// What is decided before a phase's own rule is looked at, in this order:
/// a finished plan is finished and a blocked one stays blocked; another
/// account's credentials touch nothing; a vanished user blocks; then
/// [`reconcile`] (drift blocks, an interrupted create is resolved).
/// `None`: the phase decides.
pub fn guards(plan: &Plan, seen: &Observed) -> Option<Decision> {
    match plan.phase {
        Phase::Done | Phase::RolledBack => return Some(Decision::Finished),
        Phase::Blocked => {
            return Some(Decision::Block {
                reason: plan
                    .blocked_reason
                    .clone()
                    .unwrap_or_else(|| "the plan is blocked".into()),
            })
        }
        _ => {}
    }
    if seen.caller_account != plan.account {
        return Some(Decision::WrongAccount {
            reason: format!(
                "the credentials in use belong to account {}, but this plan is for account {}. \
                 Nothing was changed. Run again with a profile for account {} (--profile or AWS_PROFILE).",
                seen.caller_account, plan.account, plan.account
            ),
        });
    }
    let Some(keys) = &seen.keys else {
        return Some(Decision::Block {
            reason: format!(
                "IAM user {} no longer exists in account {}. Someone deleted it outside \
                 iam-rotate; there is nothing left to rotate. Confirm the deletion was intended, \
                 then move this plan file away.",
                plan.user, plan.account
            ),
        });
    };
    match reconcile(plan, keys, seen) {
        Ok(None) => None,
        Ok(Some(step)) => Some(Decision::Act(step)),
        Err(decision) => Some(decision),
    }
}

#[cfg(test)]
mod table_tests;
#[cfg(test)]
mod tests;
