//! Reconcile before resuming: the live keys against the plan. Drift
//! blocks; the key of an interrupted create is adopted (when the
//! destination holds it), deleted (when provably ours) or left to a person.

use crate::deliver::Held;
use crate::iam::LiveKey;
use crate::plan::{mask_key, KeyStatus, Phase, Plan};

use super::orphan::{describe_candidate, find_orphan, stamp, Orphan};
use super::{Decision, Observed, Step};

/// Compares the live keys with the plan. `Err`: drift (a block, with the
/// reason) or a destination that could not be read (unsure). `Ok(Some)`:
/// what to do with the key of an interrupted create, adopt it or delete it.
pub fn reconcile(plan: &Plan, keys: &[LiveKey], seen: &Observed) -> Result<Option<Step>, Decision> {
    let compared = reconcile_keys(plan, keys).map_err(|reason| Decision::Block { reason })?;
    if !compared {
        return Ok(None);
    }
    let known = |k: &&LiveKey| {
        k.id == plan.old_key.id || plan.new_key.as_ref().is_some_and(|n| n.id == k.id)
    };
    let Some(stranger) = keys.iter().find(|k| !known(k)) else {
        return Ok(None);
    };
    if plan.phase == Phase::CreateSecondKey && plan.new_key.is_none() {
        let known = [plan.old_key.id.as_str()];
        let orphan = find_orphan(
            plan.create_intent_at,
            keys,
            &known,
            seen.orphan_use.as_ref(),
        );
        let judged = match orphan {
            Orphan::NoCandidate => None,
            Orphan::Ours(key) => Some((key, None)),
            Orphan::NotProvablyOurs { key, why } => Some((key, Some(why))),
        };
        if let Some((key, not_ours)) = judged {
            return judge_orphan(plan, key, not_ours, seen).map(Some);
        }
    }
    Err(Decision::Block {
        reason: format!(
            "user {user} has a key iam-rotate does not know: {} ({}, created {}). iam-rotate \
             never touches a key its plan does not name. Find out who created it; if it is not \
             needed, delete it yourself (`aws iam delete-access-key --user-name {user} \
             --access-key-id {}`), then run `iam-rotate run --retry-blocked {user}`.",
            mask_key(&stranger.id),
            stranger.status,
            stamp(stranger.created_at),
            stranger.id,
            user = plan.user,
        ),
    })
}

/// The key of an interrupted create: kept when the destination holds it,
/// deleted when it is provably ours (`not_ours` is `None`), else left to a
/// person (`not_ours` says why it may be someone else's).
fn judge_orphan(
    plan: &Plan,
    key: &LiveKey,
    not_ours: Option<String>,
    seen: &Observed,
) -> Result<Step, Decision> {
    let user = &plan.user;
    let masked = mask_key(&key.id);
    match &seen.delivered {
        Some(Held::Key(id)) if *id == key.id => {
            if key.status == KeyStatus::Active {
                return Ok(Step::AdoptDelivered {
                    key_id: key.id.clone(),
                });
            }
            return Err(Decision::Block {
                reason: format!(
                    "the key {masked} (created {}), left by this plan's interrupted \
                     CreateAccessKey, was delivered to {} but is {} in IAM: someone changed it \
                     outside iam-rotate. To keep it as the new key, reactivate it (`aws iam \
                     update-access-key --user-name {user} --access-key-id {} --status Active`); \
                     to start over, delete it (`aws iam delete-access-key --user-name {user} \
                     --access-key-id {}`). Then run `iam-rotate run --retry-blocked {user}`.",
                    stamp(key.created_at),
                    plan.delivery,
                    key.status,
                    key.id,
                    key.id
                ),
            });
        }
        Some(Held::Key(_)) | Some(Held::Nothing) => {}
        unknown => {
            let why = match unknown {
                Some(Held::Unknown(why)) => why.as_str(),
                _ => "it was not read",
            };
            return Err(Decision::Unsure {
                reason: format!(
                    "could not tell whether the key {masked} (created {}), left by this plan's \
                     interrupted CreateAccessKey, was delivered to {} before that run stopped: \
                     {why}. Nothing was deleted: a delivered key may already be in use. Fix \
                     what stops the read and run again; if you know its secret was never \
                     delivered, delete the key yourself (`aws iam delete-access-key --user-name \
                     {user} --access-key-id {}`) and run again.",
                    stamp(key.created_at),
                    plan.delivery,
                    key.id
                ),
            });
        }
    }
    let Some(why) = not_ours else {
        return Ok(Step::DeleteOrphan {
            key_id: key.id.clone(),
        });
    };
    Err(Decision::Block {
        reason: format!(
            "user {user} has a key iam-rotate does not know: {masked} ({}). \
             It is not provably the key of this plan's interrupted CreateAccessKey: {why}. \
             iam-rotate deletes only a key that is provably its own and never touches one that \
             may be someone else's. Find out who created it (CloudTrail: CreateAccessKey for \
             user {user}) and what uses it; if it is not needed, delete it yourself (`aws iam \
             delete-access-key --user-name {user} --access-key-id {}`), then run `iam-rotate \
             run --retry-blocked {user}`.",
            describe_candidate(key, seen.orphan_use.as_ref(), seen.system_now),
            key.id
        ),
    })
}

/// The old and new keys against the plan; `Err`: drift, with the reason.
/// `Ok(false)`: the old key is gone by the plan's own interrupted delete,
/// and there is nothing more to compare.
fn reconcile_keys(plan: &Plan, keys: &[LiveKey]) -> Result<bool, String> {
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
            return Ok(false);
        }
        return Err(format!(
            "the old key {old} no longer exists on user {user}, although the plan is in {}. \
             Someone deleted it outside iam-rotate. Check that the applications work with the \
             remaining key; this plan cannot go on: move it away and plan again if needed.",
            plan.effective_phase()
        ));
    };
    if old_live.status == KeyStatus::Active
        && plan.old_key.status == KeyStatus::Inactive
        && !interrupted_step
    {
        // Also what a `rollback` leaves whose UpdateAccessKey answer was
        // lost: the key is Active again, the plan never recorded it.
        return Err(format!(
            "the old key {old} is Active in IAM but the plan recorded it inactive: it was made \
             active again outside this plan's runs (by hand, or by a `rollback` whose answer \
             was lost). If an application needs it, `iam-rotate rollback {user}` records that \
             and goes back to waiting for adoption; otherwise set it inactive again (`aws iam \
             update-access-key --user-name {user} --access-key-id {} --status Inactive`) and \
             run `iam-rotate run --retry-blocked {user}`.",
            plan.old_key.id
        ));
    }
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
    Ok(true)
}
