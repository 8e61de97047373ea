//! What `rollback` may do, decided from the plan, the live keys and the
//! caller. Plain `rollback` is the guide's step 5 → step 2: the old key
//! Active again, the new key kept, the plan back in `wait_for_adoption`
//! with its clocks restarted. `--abort` ends the rotation (`rolled_back`),
//! and with `--delete-new` retires the new key too. Every refusal is a
//! [`Refusal`]; everything to carry out is a list of [`RollbackStep`]s, in
//! order.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::iam::{Caller, KeyStatus, LastUse, LiveKey};
use crate::plan::{mask_key, Phase, Plan};

use super::orphan::{describe_candidate, find_orphan, orphan_candidate_in, stamp, Orphan};

/// What the operator asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RollbackOptions {
    /// `--abort`: end the rotation (`rolled_back`) instead of going back to
    /// `wait_for_adoption`.
    pub abort: bool,
    /// `--delete-new` (with `--abort`): retire the new key as well.
    pub delete_new: bool,
}

/// One thing to carry out, in order. Each but [`RollbackStep::Finish`] has
/// the history text [`RollbackStep::action`] gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackStep {
    /// UpdateAccessKey(old key, Active).
    Reactivate { key_id: String },
    /// Nothing to do in IAM; history says why.
    Note { text: String },
    /// A key this plan owns (its new key, or the provably-ours key of an
    /// interrupted create): UpdateAccessKey(Inactive) when `deactivate`
    /// (it is Active), then DeleteAccessKey. Nothing active is deleted.
    RetireNew { key_id: String, deactivate: bool },
    /// The plan change once every step before it was carried out.
    Finish(RollbackEnd),
}

impl RollbackStep {
    /// The step in history's words; `None` for [`RollbackStep::Finish`].
    pub fn action(&self) -> Option<String> {
        match self {
            RollbackStep::Reactivate { key_id } => {
                Some(format!("reactivated old key {}", mask_key(key_id)))
            }
            RollbackStep::Note { text } => Some(text.clone()),
            RollbackStep::RetireNew { key_id, .. } => {
                Some(format!("deleted new key {}", mask_key(key_id)))
            }
            RollbackStep::Finish(_) => None,
        }
    }
}

/// How the plan ends a rollback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RollbackEnd {
    /// Move to `rolled_back` recording `action`: the old key is Active, the
    /// create intent and any block are cleared.
    RolledBack { action: String },
    /// Back to `wait_for_adoption` recording `action` (the guide's step 5 →
    /// step 2): the old key is Active, the new key kept, any block cleared,
    /// and the adoption, quiet and verify clocks start again now.
    Restart { action: String },
    /// The old key was never made inactive in this rotation: nothing to
    /// undo, nothing changed; `why` says so.
    NothingToUndo { why: String },
    /// The plan was already rolled back: record `action`, phase unchanged.
    Record { action: String },
    /// The plan was already rolled back and nothing was done.
    Unchanged,
}

/// Why a rollback is refused. `Display` is the message the operator reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `delete` ran: the old key is gone for ever.
    OldKeyDeleted {
        user: String,
        old_key: String,
        /// When the plan moved to `done`, as history says.
        deleted_at: Option<DateTime<Utc>>,
    },
    /// The credentials belong to another account than the plan's.
    WrongAccount {
        user: String,
        plan_account: String,
        caller_account: String,
    },
    /// `--delete-new` signed by the plan's own user (a self-rotation): the
    /// new key is most likely the one signing.
    DeleteNewAsSelf { user: String },
    /// ListAccessKeys says the user does not exist.
    UserGone { user: String, account: String },
    /// The old key is not in IAM any more (deleted outside iam-rotate).
    OldKeyGone { user: String, old_key: String },
    /// `--delete-new` on a rolled-back plan whose old key is not Active:
    /// the user would be left without a working key.
    OldKeyNotActive { user: String, old_key: String },
    /// Back to step 2 asked of a blocked plan that records no new key:
    /// there is no rotation to resume.
    NoNewKeyToResume { user: String },
    /// Without `--delete-new`, a plan whose CreateAccessKey went
    /// unanswered and left a key: rolling back would end the plan, clear
    /// the intent that tells that key is ours, and leave it in IAM for
    /// good. The old key is still Active, so nothing needs rolling back.
    InterruptedCreate { user: String, key: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OldKeyDeleted {
                user,
                old_key,
                deleted_at,
            } => write!(
                f,
                "cannot roll back {user}: the old key {} was deleted{}, and a deleted access key \
                 can never come back. The new key is the user's key now; to replace it, plan a \
                 new rotation.",
                mask_key(old_key),
                deleted_at
                    .map(|at| format!(" at {}", stamp(at)))
                    .unwrap_or_default()
            ),
            Refusal::WrongAccount {
                user,
                plan_account,
                caller_account,
            } => write!(
                f,
                "the credentials in use belong to account {caller_account}, but the plan for \
                 {user} is for account {plan_account}. Nothing was changed. Run again with a \
                 profile for account {plan_account} (--profile or AWS_PROFILE)."
            ),
            Refusal::DeleteNewAsSelf { user } => write!(
                f,
                "refusing --delete-new: you are signed in as {user} itself, most likely with the \
                 new key, and the old key's secret was replaced by it. Roll back without \
                 --delete-new, or run this with another principal's credentials once the old \
                 key's secret is back where the applications read it."
            ),
            Refusal::UserGone { user, account } => write!(
                f,
                "cannot roll back {user}: the user no longer exists in account {account}"
            ),
            Refusal::OldKeyGone { user, old_key } => write!(
                f,
                "cannot roll back {user}: the old key {} no longer exists in IAM (deleted \
                 outside iam-rotate). The remaining key is the user's key now.",
                mask_key(old_key)
            ),
            Refusal::OldKeyNotActive { user, old_key } => write!(
                f,
                "cannot delete {user}'s new key: the old key {} is not Active any more, and the \
                 user would be left without a working key. Reactivate the old key first (`aws \
                 iam update-access-key --user-name {user} --access-key-id {old_key} --status \
                 Active`), then run this again.",
                mask_key(old_key)
            ),
            Refusal::NoNewKeyToResume { user } => f.write_str(&Refusal::no_new_key_text(user)),
            Refusal::InterruptedCreate { user, key } => write!(
                f,
                "not rolled back: {user}'s old key is still active, and an interrupted \
                 CreateAccessKey left key {} that the plan has not recorded yet. Run \
                 `iam-rotate run {user}` first (it keeps the key if it was delivered, deletes it \
                 if it provably was not, or blocks naming it), or `iam-rotate rollback --abort \
                 --delete-new {user}` to end the rotation without it.",
                mask_key(key)
            ),
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    fn no_new_key_text(user: &str) -> String {
        format!(
            "cannot send {user}'s rotation back to wait for adoption: the plan records no new \
             key. Fix what blocked it and run `iam-rotate run --retry-blocked {user}`, or end \
             the rotation with `iam-rotate rollback --abort {user}`."
        )
    }
}

/// The refusals that need no IAM call, checked before the user's keys are
/// listed: after `delete`, with another account's credentials, and
/// `--delete-new` signed by the plan's own user.
pub fn check_rollback(
    plan: &Plan,
    caller: &Caller,
    options: RollbackOptions,
) -> Result<(), Refusal> {
    if plan.old_key_deleted() {
        return Err(Refusal::OldKeyDeleted {
            user: plan.user.clone(),
            old_key: plan.old_key.id.clone(),
            deleted_at: plan
                .history
                .iter()
                .rev()
                .find(|h| h.to == Phase::Done)
                .map(|h| h.at),
        });
    }
    if caller.account != plan.account {
        return Err(Refusal::WrongAccount {
            user: plan.user.clone(),
            plan_account: plan.account.clone(),
            caller_account: caller.account.clone(),
        });
    }
    if options.delete_new && caller.arn == plan.user_arn {
        // A self-rotation: the credentials signing this call are, in all
        // likelihood, the new key itself, and the old key's secret was
        // overwritten where it was kept. Deleting the new key would leave
        // the user with no key whose secret anyone holds.
        return Err(Refusal::DeleteNewAsSelf {
            user: plan.user.clone(),
        });
    }
    Ok(())
}

/// The key whose last use [`decide_rollback`] needs to judge: with
/// `--delete-new` and no new key recorded, the one key an interrupted
/// CreateAccessKey may have left.
pub fn rollback_orphan_candidate<'k>(
    plan: &Plan,
    keys: &'k [LiveKey],
    options: RollbackOptions,
) -> Option<&'k LiveKey> {
    if !options.delete_new || plan.new_key.is_some() {
        return None;
    }
    orphan_candidate_in(plan.create_intent_at, keys, &[plan.old_key.id.as_str()])
}

/// Everything `rollback` does, as steps, or why it is refused.
///
/// `keys` is ListAccessKeys for the plan's user (`None`: the user is
/// gone); `orphan_use` the last use of the [`rollback_orphan_candidate`]
/// (`None` when not read: such a key is then kept); `system_now` the real
/// time, to describe a kept key's last use.
pub fn decide_rollback(
    plan: &Plan,
    keys: Option<&[LiveKey]>,
    caller: &Caller,
    options: RollbackOptions,
    orphan_use: Option<&LastUse>,
    system_now: DateTime<Utc>,
) -> Result<Vec<RollbackStep>, Refusal> {
    check_rollback(plan, caller, options)?;
    let user = &plan.user;
    let Some(keys) = keys else {
        return Err(Refusal::UserGone {
            user: user.clone(),
            account: plan.account.clone(),
        });
    };
    let old_live = keys.iter().find(|k| k.id == plan.old_key.id);
    let rolled_back = plan.phase == Phase::RolledBack;
    if !options.abort && !rolled_back {
        return back_to_adoption(plan, keys, old_live);
    }
    let mut steps = Vec::new();
    if !rolled_back {
        let Some(old_live) = old_live else {
            return Err(Refusal::OldKeyGone {
                user: user.clone(),
                old_key: plan.old_key.id.clone(),
            });
        };
        steps.push(if old_live.status == KeyStatus::Inactive {
            RollbackStep::Reactivate {
                key_id: plan.old_key.id.clone(),
            }
        } else {
            RollbackStep::Note {
                text: format!("old key {} was still active", mask_key(&plan.old_key.id)),
            }
        });
    }
    if options.delete_new {
        // Nothing is reactivated on a rolled-back plan: its old key must
        // still be Active, or deleting the new one leaves the user with none.
        if rolled_back && old_live.is_none_or(|k| k.status != KeyStatus::Active) {
            return Err(Refusal::OldKeyNotActive {
                user: user.clone(),
                old_key: plan.old_key.id.clone(),
            });
        }
        steps.extend(retire_new(plan, keys, orphan_use, system_now));
    } else if plan.new_key.is_none() {
        let known = [plan.old_key.id.as_str()];
        if let Some(key) = orphan_candidate_in(plan.create_intent_at, keys, &known) {
            return Err(Refusal::InterruptedCreate {
                user: user.clone(),
                key: key.id.clone(),
            });
        }
    }
    let done: Vec<String> = steps.iter().filter_map(RollbackStep::action).collect();
    let end = match (rolled_back, done.is_empty()) {
        (true, true) => RollbackEnd::Unchanged,
        (true, false) => RollbackEnd::Record {
            action: done.join("; "),
        },
        (false, true) => RollbackEnd::RolledBack {
            action: "rollback: rolled back".into(),
        },
        (false, false) => RollbackEnd::RolledBack {
            action: format!("rollback: {}", done.join("; ")),
        },
    };
    steps.push(RollbackStep::Finish(end));
    Ok(steps)
}

/// Plain `rollback`, the guide's step 5 → step 2: the old key Active again
/// (when it is not), the new key kept, and the plan back in
/// `wait_for_adoption`, from any phase the old key may have been set
/// inactive in. Before that, nothing was undone: the old key is Active.
fn back_to_adoption(
    plan: &Plan,
    keys: &[LiveKey],
    old_live: Option<&LiveKey>,
) -> Result<Vec<RollbackStep>, Refusal> {
    let user = &plan.user;
    let Some(old_live) = old_live else {
        return Err(Refusal::OldKeyGone {
            user: user.clone(),
            old_key: plan.old_key.id.clone(),
        });
    };
    // An unanswered create's key is settled by `run`, not by a rollback
    // that would report success and leave it unrecorded.
    if plan.new_key.is_none() {
        let known = [plan.old_key.id.as_str()];
        if let Some(key) = orphan_candidate_in(plan.create_intent_at, keys, &known) {
            return Err(Refusal::InterruptedCreate {
                user: user.clone(),
                key: key.id.clone(),
            });
        }
    }
    let old = mask_key(&plan.old_key.id);
    let reactivate = old_live.status == KeyStatus::Inactive;
    let first = if reactivate {
        RollbackStep::Reactivate {
            key_id: plan.old_key.id.clone(),
        }
    } else {
        RollbackStep::Note {
            text: format!("old key {old} was still active"),
        }
    };
    let may_have_been_inactive = matches!(
        plan.phase,
        Phase::SetInactive | Phase::Verify | Phase::Delete | Phase::Blocked
    );
    if !may_have_been_inactive && !reactivate {
        let why = match plan.phase {
            Phase::CreateSecondKey => format!(
                "the rotation of {user} has not created its new key yet and the old key {old} \
                 is still active: there is nothing to roll back. `iam-rotate rollback --abort \
                 {user}` ends the rotation"
            ),
            _ => format!(
                "the old key {old} is still active ({user}'s rotation is in {}): there is \
                 nothing to roll back. Applications that use it keep working; switch them to \
                 the new key and let `iam-rotate run {user}` carry on, or end the rotation with \
                 `iam-rotate rollback --abort {user}`",
                plan.phase
            ),
        };
        return Ok(vec![RollbackStep::Finish(RollbackEnd::NothingToUndo {
            why,
        })]);
    }
    if plan.new_key.is_none() {
        return Err(Refusal::NoNewKeyToResume { user: user.clone() });
    }
    let done = first.action().unwrap_or_default();
    Ok(vec![
        first,
        RollbackStep::Finish(RollbackEnd::Restart {
            action: format!(
                "rollback (step 5 → 2): {done}; new key kept; back to wait_for_adoption, clocks \
                 restarted"
            ),
        }),
    ])
}

/// `--delete-new`: the recorded new key when IAM still lists it; with none
/// recorded, the key of an interrupted create only when provably this
/// plan's, as `run` would delete it.
fn retire_new(
    plan: &Plan,
    keys: &[LiveKey],
    orphan_use: Option<&LastUse>,
    system_now: DateTime<Utc>,
) -> Option<RollbackStep> {
    let retire = |key: &LiveKey| RollbackStep::RetireNew {
        key_id: key.id.clone(),
        deactivate: key.status == KeyStatus::Active,
    };
    if let Some(new_key) = &plan.new_key {
        return keys.iter().find(|k| k.id == new_key.id).map(retire);
    }
    let known = [plan.old_key.id.as_str()];
    match find_orphan(plan.create_intent_at, keys, &known, orphan_use) {
        Orphan::NoCandidate => None,
        Orphan::Ours(key) => Some(retire(key)),
        Orphan::NotProvablyOurs { key, why } => Some(RollbackStep::Note {
            text: format!(
                "kept key {} ({}): it is not provably this plan's ({why}); delete it yourself if \
                 it is not needed",
                mask_key(&key.id),
                describe_candidate(key, orphan_use, system_now),
            ),
        }),
    }
}
