//! The invariants, checked at the moment of every IAM write (before the
//! account applies it) and after every step of a simulation:
//!
//! 1. no key is deleted or deactivated that its plan did not name (save the
//!    provable orphan of an interrupted create: made by iam-rotate, held by
//!    no destination, never used), and no Active key is deleted;
//! 2. a user never has more than two keys, nor (after a run that ended
//!    normally) a key iam-rotate made that the plan does not record,
//!    unless the plan is blocked;
//! 3. every key whose secret reached a destination is recorded in the plan
//!    or deleted, and every recorded new key's secret is at its
//!    destination;
//! 4. the old key is not deactivated while its last use is within the
//!    quiet period, nor deleted before verification passed;
//! 5. every plan on disk loads, and after a run that ended normally agrees
//!    with IAM or is blocked with a reason;
//! 6. no secret appears in a plan, an error, a report or a log line.
//!
//! Times are compared on the true clock, allowing for the runners' skew.

use chrono::Duration;

use super::world::{Purpose, SimIam, World};
use crate::iam::KeyStatus;
use crate::plan::{Phase, Plan};

/// Checks an UpdateAccessKey(Inactive) about to reach the account.
pub fn check_deactivation(iam: &SimIam, user: &str, key_id: &str) {
    let world = &iam.world;
    let Some(plan) = world.plan_on_disk(user) else {
        world.violation(format!(
            "{user}: key {key_id} deactivated, but no plan loads"
        ));
        return;
    };
    let named_old = plan.old_key.id == key_id;
    let named_new = plan.new_key.as_ref().is_some_and(|n| n.id == key_id);
    match iam.purpose {
        Purpose::Run | Purpose::SelfRotate { .. } if named_old => {
            let quiet = plan.policy.quiet_period.to_chrono();
            let tolerance = iam.skew.max(Duration::zero());
            if let Some(at) = last_use(world, user, key_id) {
                if world.now() + tolerance < at + quiet {
                    world.violation(format!(
                        "{user}: old key {key_id} deactivated at {} although it was used at {at}, \
                         within the quiet period of {}",
                        world.now(),
                        plan.policy.quiet_period
                    ));
                }
            }
        }
        Purpose::Rollback { delete_new: true } if named_new => {}
        _ if named_old || named_new => world.violation(format!(
            "{user}: {:?} deactivated key {key_id}, which its plan names but this command may \
             not deactivate",
            iam.purpose
        )),
        _ => check_unnamed(iam, user, key_id, "deactivated"),
    }
}

/// Checks a DeleteAccessKey about to reach the account.
pub fn check_deletion(iam: &SimIam, user: &str, key_id: &str) {
    let world = &iam.world;
    let states = world.account().key_states(user);
    if let Some((key, _)) = states.iter().find(|(k, _)| k.id == key_id) {
        if key.status == KeyStatus::Active {
            world.violation(format!("{user}: Active key {key_id} deleted"));
        }
    }
    let Some(plan) = world.plan_on_disk(user) else {
        world.violation(format!("{user}: key {key_id} deleted, but no plan loads"));
        return;
    };
    let named_old = plan.old_key.id == key_id;
    let named_new = plan.new_key.as_ref().is_some_and(|n| n.id == key_id);
    match iam.purpose {
        Purpose::Run | Purpose::SelfRotate { delete_now: false } if named_old => {
            check_verified(world, user, &plan)
        }
        // `self-rotate --delete-now` deletes the old key as soon as the
        // new one proved itself, by design: it must have been used.
        Purpose::SelfRotate { delete_now: true } if named_old => {
            let new_used = plan
                .new_key
                .as_ref()
                .and_then(|n| last_use(world, user, &n.id));
            if new_used.is_none() {
                world.violation(format!(
                    "{user}: self-rotate --delete-now deleted the old key before the new key \
                     was used"
                ));
            }
        }
        Purpose::Rollback { delete_new: true } if named_new => {}
        _ if named_old || named_new => world.violation(format!(
            "{user}: {:?} deleted key {key_id}, which its plan names but this command may not \
             delete",
            iam.purpose
        )),
        _ => check_unnamed(iam, user, key_id, "deleted"),
    }
}

/// The old key is deleted only after verification: it was deactivated at
/// least `verify_period` ago, and the new key was used when the policy
/// asks for that.
fn check_verified(world: &World, user: &str, plan: &Plan) {
    let tolerance = world.state().max_skew * 2;
    // `self-rotate --delete-now` moved the plan to delete on purpose: the
    // run that carries the deletion out after it was interrupted does what
    // the operator asked.
    let skipped = plan
        .history
        .iter()
        .rev()
        .find(|h| h.to == Phase::Delete)
        .is_some_and(|h| h.action.starts_with("verify_period skipped (--delete-now)"));
    let Some(deactivated) = plan.old_key.deactivated_at else {
        world.violation(format!(
            "{user}: old key deleted, but the plan never recorded deactivating it"
        ));
        return;
    };
    let verify = plan.policy.verify_period.to_chrono();
    if !skipped && world.now() + tolerance < deactivated + verify {
        world.violation(format!(
            "{user}: old key deleted at {}, before verify_period {} had passed since it was \
             deactivated at {deactivated}",
            world.now(),
            plan.policy.verify_period
        ));
    }
    if plan.policy.require_new_key_use {
        let used = plan
            .new_key
            .as_ref()
            .and_then(|n| last_use(world, user, &n.id));
        if used.is_none() {
            world.violation(format!(
                "{user}: old key deleted, but the new key was never used"
            ));
        }
    }
}

/// A key the plan does not name may be retired only when it is provably
/// the orphan of iam-rotate's own interrupted create: iam-rotate made it,
/// no destination holds it, and it was never used. `rollback --delete-new`
/// retires such a key even when its destination holds it: it is the
/// rotation's new key, recorded or not, and deleting that is what was
/// asked (a recorded new key goes from its destination's hands alike).
fn check_unnamed(iam: &SimIam, user: &str, key_id: &str, what: &str) {
    let world = &iam.world;
    let state = world.state();
    let made_by_us = state.created.contains_key(key_id);
    let held = state.destinations.values().any(|h| h.key_id == key_id)
        && iam.purpose != (Purpose::Rollback { delete_new: true });
    drop(state);
    let used = last_use(world, user, key_id).is_some();
    if !made_by_us || held || used {
        world.violation(format!(
            "{user}: key {key_id} {what}, which its plan does not name (made by iam-rotate: \
             {made_by_us}, held by a destination: {held}, used: {used})"
        ));
    }
}

fn last_use(world: &World, user: &str, key_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    world
        .account()
        .key_states(user)
        .into_iter()
        .find(|(k, _)| k.id == key_id)
        .and_then(|(_, used)| used.at)
}

/// After every step: plans load, the key limit holds, no secret leaked
/// into a plan or into `texts` (errors, reports, log lines).
pub fn check_always(world: &World, users: &[String], texts: &[String]) {
    let secrets: Vec<String> = world.state().secrets.values().cloned().collect();
    for user in users {
        let keys = world.account().keys(user);
        if keys.len() > 2 {
            world.violation(format!("{user} has {} keys", keys.len()));
        }
        if let Some(Err(e)) = world.load_plan(user) {
            world.violation(format!("{user}: the plan on disk does not load: {e}"));
        }
        let text = std::fs::read_to_string(world.plan_path(user)).unwrap_or_default();
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            world.violation(format!("{user}: a secret is in the plan file"));
        }
    }
    for text in texts {
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            world.violation(format!(
                "a secret is in an error, report or log line: {text:.80}"
            ));
        }
    }
}

/// After a command that ended normally for `user`'s plan: the plan and IAM
/// agree (or it is blocked with a reason), no key iam-rotate made is left
/// unrecorded, and the recorded new key's secret is at its destination.
pub fn check_settled(world: &World, user: &str) {
    let Some(plan) = world.plan_on_disk(user) else {
        return;
    };
    let keys = world.account().key_states(user);
    let live = |id: &str| keys.iter().find(|(k, _)| k.id == id).map(|(k, _)| k.status);
    let recorded =
        |id: &str| plan.old_key.id == id || plan.new_key.as_ref().is_some_and(|n| n.id == id);
    if plan.phase == Phase::Blocked {
        if plan.blocked_reason.as_deref().is_none_or(str::is_empty) {
            world.violation(format!("{user}: blocked without a reason"));
        }
        return;
    }
    let created = world.state().created.clone();
    // A rolled-back plan may end with such a key when it named it in its
    // history as kept (`rollback --delete-new` keeps a key it cannot prove
    // its own): the operator was told, as a blocked plan tells.
    let named_in_history = |id: &str| {
        plan.phase == Phase::RolledBack
            && plan.history.last().is_some_and(|h| {
                h.action
                    .contains(&format!("kept key {}", crate::plan::mask_key(id)))
            })
    };
    for (key, _) in &keys {
        if created.contains_key(&key.id) && !recorded(&key.id) && !named_in_history(&key.id) {
            world.violation(format!(
                "{user}: key {} made by iam-rotate is not recorded in the plan ({}) after a run \
                 that ended normally",
                key.id, plan.phase
            ));
        }
    }
    let old = live(&plan.old_key.id);
    let agrees = match plan.phase {
        Phase::Done => old.is_none(),
        Phase::RolledBack => old == Some(KeyStatus::Active),
        _ => old == Some(plan.old_key.status),
    };
    if !agrees {
        world.violation(format!(
            "{user}: plan in {} says the old key {} is {}, IAM has it {:?}",
            plan.phase, plan.old_key.id, plan.old_key.status, old
        ));
    }
    if let Some(new_key) = &plan.new_key {
        let status = live(&new_key.id);
        if status.is_none() && !matches!(plan.phase, Phase::RolledBack) {
            world.violation(format!(
                "{user}: plan in {} records new key {}, which IAM does not have",
                plan.phase, new_key.id
            ));
        }
        if status.is_some() {
            check_new_key_delivered(world, user, &plan, &new_key.id);
        }
    }
}

fn check_new_key_delivered(world: &World, user: &str, plan: &Plan, key_id: &str) {
    let spec = match crate::deliver::Destination::of_plan(plan) {
        Ok(d) => d.to_string(),
        Err(e) => {
            world.violation(format!(
                "{user}: the plan's destination does not parse: {e}"
            ));
            return;
        }
    };
    let state = world.state();
    let secret = state.secrets.get(key_id);
    let held = state.destinations.get(&spec);
    let ok = held.is_some_and(|h| h.key_id == key_id && secret.is_some_and(|s| *s == h.secret));
    drop(state);
    if !ok {
        world.violation(format!(
            "{user}: the recorded new key {key_id}'s secret is not at {spec}"
        ));
    }
}
