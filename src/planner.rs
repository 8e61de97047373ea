//! Writing new plans: reads the user and their keys, refuses what cannot be
//! rotated safely (two keys, no active key, an unfinished plan), and writes
//! the plan in phase `create_second_key`. Changes nothing in AWS.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::deliver::Destination;
use crate::iam::{Caller, Iam, IamError, LiveKey, User};
use crate::plan::store::{is_valid_user_name, PlanError};
use crate::plan::{
    mask_key, KeyStatus, LockedPlan, OldKey, Phase, Plan, PlanKind, PlanStore, PlanVersion, Stamp,
};
use crate::rotation::policy::Policy;

/// What `plan` did for one user.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Planned {
    /// A new plan was written.
    Planned {
        path: PathBuf,
        old_key: String,
        replaced: Option<Phase>,
    },
    /// Left alone: nothing is wrong, but nothing to do (for example an
    /// unfinished plan exists, or the key is young).
    Skipped { reason: String },
    /// Cannot be planned as things are; the reason says what to do.
    Refused { reason: String },
}

/// What to plan with.
pub struct PlanRequest<'a> {
    pub user: &'a str,
    pub policy: &'a Policy,
    /// The delivery spec, placeholders unfilled.
    pub delivery: &'a str,
    /// With `--older-than`: only plan when the active key is older than this.
    pub older_than: Option<chrono::Duration>,
    /// The command planning: `plan` or `self-rotate`.
    pub kind: PlanKind,
    /// `plan --notify`: notification targets kept in the plan (checked).
    pub notify: &'a [String],
}

/// Plans one user named on the command line: reads the user (GetUser) and
/// their keys, refusing what cannot be rotated safely.
pub async fn plan_user(
    iam: &dyn Iam,
    store: &PlanStore,
    caller: &Caller,
    stamp: &Stamp,
    request: &PlanRequest<'_>,
) -> Result<Planned, PlanError> {
    let user = request.user;
    let account = &caller.account;
    let prepared = match prepare(store, caller, request)? {
        Ok(prepared) => prepared,
        Err(planned) => return Ok(planned),
    };
    let user_info = match iam.get_user(user).await {
        Ok(u) => u,
        Err(IamError::NoSuchEntity { .. }) => {
            return Ok(Planned::Refused {
                reason: no_such_user(iam, user, account).await,
            })
        }
        Err(e) => {
            return Ok(Planned::Refused {
                reason: e.to_string(),
            })
        }
    };
    let keys = match iam.list_access_keys(user).await {
        Ok(keys) => keys,
        Err(e) => {
            return Ok(Planned::Refused {
                reason: e.to_string(),
            })
        }
    };
    write_plan(store, caller, stamp, request, &user_info, &keys, prepared)
}

/// Why a user named on the command line cannot be planned when IAM does
/// not know them: the closest user names of the account (one ListUsers,
/// made only now that the name was not found), and what to do.
async fn no_such_user(iam: &dyn Iam, user: &str, account: &str) -> String {
    let base = format!("there is no IAM user {user} in account {account}.");
    match iam.list_users(None).await {
        Ok(users) => {
            let closest = crate::suggest::closest(user, users.iter().map(|u| u.name.as_str()));
            if closest.is_empty() {
                format!(
                    "{base} No user of the account has a similar name; `iam-rotate report` \
                     lists them all. Check the name, and that the credentials are for the \
                     account you mean"
                )
            } else {
                format!(
                    "{base}{} Plan that user instead, or check the credentials' account",
                    crate::suggest::did_you_mean(&closest)
                )
            }
        }
        // A suggestion is a courtesy: without iam:ListUsers there is none.
        Err(_) => format!(
            "{base} Check the name (`iam-rotate report` lists the account's users), and \
             that the credentials are for the account you mean"
        ),
    }
}

/// Plans one user of a `plan --all` batch. The user comes from ListUsers,
/// so only their keys are read (no GetUser). A user with no access key at
/// all (a console-only user, say) is skipped rather than refused: there is
/// nothing to rotate and nothing wrong. A user with two keys is refused
/// (needs triage) unless `--older-than` is given and every key is younger.
pub async fn plan_listed_user(
    iam: &dyn Iam,
    store: &PlanStore,
    caller: &Caller,
    stamp: &Stamp,
    request: &PlanRequest<'_>,
    user_info: &User,
) -> Result<Planned, PlanError> {
    let prepared = match prepare(store, caller, request)? {
        Ok(prepared) => prepared,
        Err(planned) => return Ok(planned),
    };
    let keys = match iam.list_access_keys(request.user).await {
        Ok(keys) => keys,
        Err(e) => {
            return Ok(Planned::Refused {
                reason: e.to_string(),
            })
        }
    };
    if keys.is_empty() {
        return Ok(Planned::Skipped {
            reason: "no access key: nothing to rotate".into(),
        });
    }
    if let Some(min_age) = request.older_than {
        if keys.iter().all(|k| stamp.at - k.created_at < min_age) {
            return Ok(Planned::Skipped {
                reason: young_reason(&keys),
            });
        }
    }
    write_plan(store, caller, stamp, request, user_info, &keys, prepared)
}

fn young_reason(keys: &[LiveKey]) -> String {
    let ids: Vec<String> = keys.iter().map(|k| mask_key(&k.id)).collect();
    let noun = if keys.len() == 1 { "key" } else { "keys" };
    format!(
        "its {noun} {} younger than the --older-than limit",
        if keys.len() == 1 {
            format!("{} is", ids[0])
        } else {
            format!("{} are", ids.join(", "))
        }
    )
}

/// What both ways of planning check before reading IAM: a valid name, no
/// unfinished plan (never reset), a delivery spec that resolves. `Err` holds
/// the answer when planning stops here.
fn prepare(
    store: &PlanStore,
    caller: &Caller,
    request: &PlanRequest<'_>,
) -> Result<Result<Prepared, Planned>, PlanError> {
    let user = request.user;
    let account = &caller.account;
    if !is_valid_user_name(user) {
        return Ok(Err(Planned::Refused {
            reason: format!(
                "{user:?} is not a valid IAM user name (letters, digits and +=,.@_- only)"
            ),
        }));
    }
    let path = store.path_for(account, user);
    let mut replaced = None;
    if let Some(existing) = store.find(&path)? {
        if !existing.phase.is_finished() {
            return Ok(Err(Planned::Skipped {
                reason: format!(
                    "an unfinished plan exists at {} (phase {}); it is never reset. Run it, roll \
                     it back, or move it away to plan again",
                    path.display(),
                    existing.phase
                ),
            }));
        }
        replaced = Some(existing.phase);
    }
    match Destination::resolve(request.delivery, user, account) {
        Ok(destination) => Ok(Ok(Prepared {
            path,
            replaced,
            destination,
        })),
        Err(e) => Ok(Err(Planned::Refused {
            reason: e.to_string(),
        })),
    }
}

/// Where a plan will be written, what it replaces, where its secret goes.
struct Prepared {
    path: PathBuf,
    replaced: Option<Phase>,
    destination: Destination,
}

/// Picks the key to rotate and writes the plan in `create_second_key`.
fn write_plan(
    store: &PlanStore,
    caller: &Caller,
    stamp: &Stamp,
    request: &PlanRequest<'_>,
    user_info: &User,
    keys: &[LiveKey],
    prepared: Prepared,
) -> Result<Planned, PlanError> {
    let Prepared {
        path,
        replaced,
        destination,
    } = prepared;
    let user = request.user;
    let account = &caller.account;
    let old = match pick_old_key(user, keys) {
        Ok(old) => old,
        Err(reason) => return Ok(Planned::Refused { reason }),
    };
    if let Some(min_age) = request.older_than {
        if stamp.at - old.created_at < min_age {
            return Ok(Planned::Skipped {
                reason: format!(
                    "its key {} is younger than the --older-than limit",
                    mask_key(&old.id)
                ),
            });
        }
    }
    let mut plan = Plan {
        version: PlanVersion,
        kind: request.kind,
        account: account.clone(),
        user: user.to_string(),
        user_arn: user_info.arn.clone(),
        delivery: destination.to_string(),
        credentials_file: destination.credentials_file().map(Into::into),
        notify: request.notify.to_vec(),
        policy: request.policy.clone(),
        old_key: OldKey {
            id: old.id.clone(),
            created_at: old.created_at,
            status: KeyStatus::Active,
            deactivated_at: None,
            last_used_at_deactivation: None,
        },
        new_key: None,
        phase: Phase::CreateSecondKey,
        phase_since: stamp.at,
        create_intent_at: None,
        restarted_at: None,
        blocked_in: None,
        blocked_reason: None,
        last_error: None,
        notifications: Default::default(),
        observations: Vec::new(),
        history: Vec::new(),
    };
    let text = format!(
        "planned: rotate key {} (created {}) with adoption_wait {}, quiet_period {}, \
         verify_period {}",
        mask_key(&old.id),
        old.created_at.format("%Y-%m-%d"),
        plan.policy.adoption_wait,
        plan.policy.quiet_period,
        plan.policy.verify_period
    );
    plan.record(
        crate::plan::Action::new(crate::plan::ActionKind::Planned, Some(&old.id), text),
        stamp,
    );
    match store.create(&path, plan)? {
        Some(_) => Ok(Planned::Planned {
            path,
            old_key: old.id.clone(),
            replaced,
        }),
        None => Ok(Planned::Skipped {
            reason: format!("{} is locked by another iam-rotate process", path.display()),
        }),
    }
}

/// The one active key to rotate, or why there is none.
fn pick_old_key<'k>(user: &str, keys: &'k [LiveKey]) -> Result<&'k LiveKey, String> {
    match keys {
        [] => Err(format!(
            "{user} has no access key: there is nothing to rotate"
        )),
        [only] if only.status == KeyStatus::Active => Ok(only),
        [only] => Err(format!(
            "{user}'s only access key {} is Inactive: there is nothing in use to rotate. Delete \
             it if it is not needed (`aws iam delete-access-key --user-name {user} \
             --access-key-id {}`)",
            mask_key(&only.id),
            only.id
        )),
        many => Err(format!(
            "{user} already has two access keys ({}), IAM's limit, so there is no room for a \
             second key. Find which one is no longer used (`iam-rotate report` shows last use), \
             delete it (`aws iam delete-access-key --user-name {user} --access-key-id ID`), then \
             plan again",
            many.iter()
                .map(|k| format!(
                    "{} {} created {}",
                    mask_key(&k.id),
                    k.status,
                    k.created_at.format("%Y-%m-%d")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

/// The unfinished self-rotation plan of this user (and `true`: resumed),
/// or a new one. An unfinished plan that self-rotate did not make is never
/// taken over.
pub async fn open_self_rotation(
    iam: &dyn Iam,
    store: &PlanStore,
    clock: &dyn crate::clock::Clock,
    caller: &Caller,
    delivery: &str,
    path: &Path,
) -> anyhow::Result<(LockedPlan, bool)> {
    use crate::rotation::self_rotation::{resumable, self_policy};
    use anyhow::anyhow;
    let user = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let user = user.as_str();
    let locked_elsewhere = || {
        anyhow!(
            "{} is locked by another iam-rotate process; wait for it to finish and run again",
            path.display()
        )
    };
    // Checked before the lock, so that a plan another process is driving
    // is still named for what it is, and again under it.
    let existing = store.find(path)?;
    if let Some(true) = existing
        .map(|plan| resumable(&plan, path, delivery).map_err(|m| anyhow!(m)))
        .transpose()?
    {
        let locked = store.lock(path)?.ok_or_else(locked_elsewhere)?;
        if resumable(&locked.plan, path, delivery).map_err(|m| anyhow!(m))? {
            return Ok((locked, true));
        }
    }
    let policy = self_policy();
    let stamp = Stamp::new(clock, caller);
    let request = PlanRequest {
        user,
        policy: &policy,
        delivery,
        older_than: None,
        kind: PlanKind::SelfRotate,
        notify: &[],
    };
    match plan_user(iam, store, caller, &stamp, &request).await? {
        Planned::Planned { .. } => {}
        Planned::Skipped { reason } | Planned::Refused { reason } => {
            anyhow::bail!("cannot self-rotate {user}: {reason}")
        }
    }
    let mut locked = store.lock(path)?.ok_or_else(locked_elsewhere)?;
    locked.plan.record(
        format!(
            "self-rotate of {delivery}: adoption_wait 0s and quiet_period 0s because this key's \
             one consumer is that profile, which self-rotate rewrites itself, so the new key \
             authenticating (STS GetCallerIdentity signed with it) is the adoption signal; \
             verify_period 1d keeps the old key inactive, not deleted, for a day in case \
             something else used it"
        ),
        &stamp,
    );
    locked.save()?;
    Ok((locked, false))
}
