//! The rotation state machine: given a plan, what was just observed in IAM
//! and the time, decide the one next thing to do. Pure: no I/O, no clock, no
//! AWS. The [`crate::engine`] carries the decision out and asks again.

/// The policy lives with the plan that stores it; re-exported so
/// `rotation::policy` paths keep working.
pub use crate::plan::policy;

use chrono::{DateTime, Duration, Utc};

use crate::deliver::Held;
use crate::iam::{LastUse, LiveKey, CREATE_ACCESS_KEY_TIMEOUT};
use crate::plan::{mask_key, KeyStatus, Phase, Plan};

/// How far IAM's clock (which stamps a key's creation) and this machine's
/// (which stamps the create intent) may disagree, either way.
pub const ORPHAN_SKEW: Duration = Duration::minutes(1);

/// When the unanswered CreateAccessKey of an intent saved at `intent` can
/// have made its key, both ends included: from the intent's save to the
/// call's timeout ([`CREATE_ACCESS_KEY_TIMEOUT`]), widened by
/// [`ORPHAN_SKEW`] on each side.
pub fn orphan_window(intent: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let timeout = Duration::milliseconds(CREATE_ACCESS_KEY_TIMEOUT.as_millis() as i64);
    (intent - ORPHAN_SKEW, intent + timeout + ORPHAN_SKEW)
}

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
    match reconcile(plan, keys, seen) {
        Ok(None) => {}
        Ok(Some(step)) => return Decision::Act(step),
        Err(decision) => return decision,
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
    if plan.phase == Phase::CreateSecondKey {
        if let Some(candidate) = orphan_candidate(plan, keys) {
            return judge_orphan(plan, candidate, seen).map(Some);
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

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The one key an unanswered CreateAccessKey of this plan can have made:
/// the plan records a create intent and no new key, and IAM lists exactly
/// one key besides the old one. Whether it really is that key is for
/// [`not_provably_ours`] and the destination to say.
pub fn orphan_candidate<'k>(plan: &Plan, keys: &'k [LiveKey]) -> Option<&'k LiveKey> {
    if plan.new_key.is_some() || plan.create_intent_at.is_none() {
        return None;
    }
    let mut others = keys.iter().filter(|k| k.id != plan.old_key.id);
    let first = others.next()?;
    others.next().is_none().then_some(first)
}

/// Why `key` is not provably the key of this plan's interrupted create,
/// or `None` when it is: it was created within the call's
/// [`orphan_window`] and has never been used (`used` is its
/// GetAccessKeyLastUsed; `None` when it was not read, which proves
/// nothing). Such a key's secret reached no one, so deleting it harms no
/// one; any other key may be someone else's.
pub fn not_provably_ours(plan: &Plan, key: &LiveKey, used: Option<&LastUse>) -> Option<String> {
    let Some(intent) = plan.create_intent_at else {
        return Some("the plan records no interrupted CreateAccessKey".into());
    };
    let (start, end) = orphan_window(intent);
    let side = if key.created_at < start {
        "before"
    } else if key.created_at > end {
        "after"
    } else {
        return match used {
            None => Some("its last use could not be read".into()),
            Some(LastUse { at: Some(at), .. }) => Some(format!(
                "it was created in the window of that call, but it has been used (last {}), and \
                 the key of an interrupted create has a secret that reached no one: something \
                 else holds this key",
                stamp(*at)
            )),
            Some(_) => None,
        };
    };
    Some(format!(
        "it was created {}, {side} the window in which this plan's interrupted CreateAccessKey \
         can have made its key: {} to {} (the intent saved {}, the call's {}s timeout, and {}s of \
         clock skew either side)",
        stamp(key.created_at),
        stamp(start),
        stamp(end),
        stamp(intent),
        CREATE_ACCESS_KEY_TIMEOUT.as_secs(),
        ORPHAN_SKEW.num_seconds(),
    ))
}

/// A candidate key in a few words: "Active, created …, never used".
pub fn describe_candidate(
    key: &LiveKey,
    used: Option<&LastUse>,
    system_now: DateTime<Utc>,
) -> String {
    let used = match used {
        Some(u) if u.at.is_some() => format!("last used {}", u.describe(system_now)),
        Some(_) => "never used".into(),
        None => "last use unknown".into(),
    };
    format!("{}, created {}, {used}", key.status, stamp(key.created_at))
}

/// The key of an interrupted create: kept when the destination holds it,
/// deleted when it is provably ours, else left to a person.
fn judge_orphan(plan: &Plan, key: &LiveKey, seen: &Observed) -> Result<Step, Decision> {
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
    let Some(why) = not_provably_ours(plan, key, seen.orphan_use.as_ref()) else {
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
