//! `run --retry-blocked`: whether a blocked plan may leave `blocked`, and
//! the new verify baseline when it goes back to `verify` (the operator
//! switched what still used the old key, so the uses seen so far are not
//! evidence against it any more).

use chrono::{DateTime, Utc};

use crate::iam::Caller;
use crate::plan::{Phase, Plan};

use super::orphan::stamp;
use super::rollback::Refusal;
use super::Observed;

/// What `--retry-blocked` does with a plan before the run goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The plan is not blocked, or no retry was asked for: the run goes on
    /// as it is.
    AsItIs,
    /// The credentials belong to another account: nothing is touched.
    WrongAccount { reason: String },
    /// Leave `blocked` for the phase it was in; when that is `verify`, the
    /// first observation after it sets a new baseline
    /// ([`verification_restart`]).
    Unblock { restart_verification: bool },
}

/// Whether a plan leaves `blocked` for this run (`retry_blocked`: the
/// operator asked for it).
pub fn decide_retry(plan: &Plan, caller: &Caller, retry_blocked: bool) -> Retry {
    if plan.phase != Phase::Blocked || !retry_blocked {
        return Retry::AsItIs;
    }
    if caller.account != plan.account {
        let refusal = Refusal::WrongAccount {
            user: plan.user.clone(),
            plan_account: plan.account.clone(),
            caller_account: caller.account.clone(),
        };
        return Retry::WrongAccount {
            reason: refusal.to_string(),
        };
    }
    Retry::Unblock {
        restart_verification: plan.blocked_in == Some(Phase::Verify),
    }
}

/// Verification restarted: the old key's last use as just observed is the
/// new baseline (`None`: never used). Returns it and the history text.
pub fn verification_restart(seen: &Observed) -> (Option<DateTime<Utc>>, String) {
    let baseline = seen.old_use.as_ref().and_then(|u| u.at);
    let action = format!(
        "verification restarted; old key's last use {} taken as the new baseline",
        baseline.map(stamp).unwrap_or_else(|| "(never)".into())
    );
    (baseline, action)
}
