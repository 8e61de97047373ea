//! Rollback: the old key back to Active, and with `--delete-new` the new
//! key retired.

use crate::iam::IamError;
use crate::plan::{mask_key, KeyStatus, LockedPlan, Phase};
use crate::rotation::{self, Observed};

use super::{Engine, EngineError};

use super::{wrong_account, Outcome, Refusal, RunReport};

impl Engine<'_> {
    /// Reactivates the old key (and with `delete_new`, removes the new one)
    /// from any phase before the old key was deleted.
    pub async fn rollback(
        &self,
        locked: &mut LockedPlan,
        delete_new: bool,
    ) -> Result<RunReport, EngineError> {
        let history_before = locked.plan.history.len();
        let plan = &locked.plan;
        if plan.old_key_deleted() {
            return Err(refuse(format!(
                "cannot roll back {}: the old key {} was deleted{}, and a deleted access key can \
                 never come back. The new key is the user's key now; to replace it, plan a new \
                 rotation.",
                plan.user,
                mask_key(&plan.old_key.id),
                plan.history
                    .iter()
                    .rev()
                    .find(|h| h.to == Phase::Done)
                    .map(|h| format!(" at {}", h.at.format("%Y-%m-%dT%H:%M:%SZ")))
                    .unwrap_or_default()
            )));
        }
        if self.caller.account != plan.account {
            return Err(refuse(wrong_account(plan, &self.caller)));
        }
        if delete_new && self.caller.arn == plan.user_arn {
            // A self-rotation: the credentials signing this call are, in all
            // likelihood, the new key itself, and the old key's secret was
            // overwritten where it was kept. Deleting the new key would
            // leave the user with no key whose secret anyone holds.
            return Err(refuse(format!(
                "refusing --delete-new: you are signed in as {} itself, most likely with the \
                 new key, and the old key's secret was replaced by it. Roll back without \
                 --delete-new, or run this with another principal's credentials once the old \
                 key's secret is back where the applications read it.",
                plan.user
            )));
        }
        let user = plan.user.clone();
        let keys = match self.iam.list_access_keys(&user).await {
            Ok(keys) => keys,
            Err(IamError::NoSuchEntity { .. }) => {
                return Err(refuse(format!(
                    "cannot roll back {user}: the user no longer exists in account {}",
                    plan.account
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let seen = Observed {
            now: self.clock.now(),
            system_now: self.clock.system_now(),
            caller_account: self.caller.account.clone(),
            keys: Some(keys.clone()),
            old_use: None,
            new_use: None,
            orphan_use: None,
            delivered: None,
        };
        let mut done = Vec::new();
        if plan.phase != Phase::RolledBack {
            let Some(old_live) = keys.iter().find(|k| k.id == plan.old_key.id) else {
                return Err(refuse(format!(
                    "cannot roll back {user}: the old key {} no longer exists in IAM (deleted \
                     outside iam-rotate). The remaining key is the user's key now.",
                    mask_key(&plan.old_key.id)
                )));
            };
            if old_live.status == KeyStatus::Inactive {
                self.iam
                    .update_access_key(&user, &plan.old_key.id, KeyStatus::Active)
                    .await?;
                done.push(format!(
                    "reactivated old key {}",
                    mask_key(&plan.old_key.id)
                ));
            } else {
                done.push(format!(
                    "old key {} was still active",
                    mask_key(&plan.old_key.id)
                ));
            }
        }
        if delete_new && plan.phase == Phase::RolledBack {
            // Nothing was reactivated this time: the old key must still be
            // Active, or deleting the new one leaves the user with none.
            let old_active = keys
                .iter()
                .any(|k| k.id == plan.old_key.id && k.status == KeyStatus::Active);
            if !old_active {
                return Err(refuse(format!(
                    "cannot delete {user}'s new key: the old key {} is not Active any more, and \
                     the user would be left without a working key. Reactivate the old key first \
                     (`aws iam update-access-key --user-name {user} --access-key-id {} --status \
                     Active`), then run this again.",
                    mask_key(&plan.old_key.id),
                    plan.old_key.id
                )));
            }
        }
        if delete_new {
            let mut owned: Vec<String> = Vec::new();
            if let Some(new_key) = &plan.new_key {
                if keys.iter().any(|k| k.id == new_key.id) {
                    owned.push(new_key.id.clone());
                }
            } else if let Some(candidate) = rotation::orphan_candidate(plan, &keys) {
                // An interrupted create may have left a key: deleted only
                // when provably this plan's, as `run` would.
                let used = self.last_used(&candidate.id).await?;
                match rotation::not_provably_ours(plan, candidate, Some(&used)) {
                    None => owned.push(candidate.id.clone()),
                    Some(why) => done.push(format!(
                        "kept key {} ({}): it is not provably this plan's ({why}); delete it \
                         yourself if it is not needed",
                        mask_key(&candidate.id),
                        rotation::describe_candidate(candidate, Some(&used), seen.system_now),
                    )),
                }
            }
            for key_id in owned {
                self.retire_key(&user, &key_id, &seen).await?;
                done.push(format!("deleted new key {}", mask_key(&key_id)));
            }
        }
        let stamp = self.stamp();
        let plan = &mut locked.plan;
        if plan.phase == Phase::RolledBack {
            if !done.is_empty() {
                plan.record(done.join("; "), &stamp);
            }
        } else {
            plan.old_key.status = KeyStatus::Active;
            plan.create_intent_at = None;
            plan.blocked_in = None;
            plan.blocked_reason = None;
            if done.is_empty() {
                done.push("rolled back".into());
            }
            plan.transition(
                Phase::RolledBack,
                format!("rollback: {}", done.join("; ")),
                &stamp,
            );
        }
        locked.save()?;
        Ok(RunReport {
            user: locked.plan.user.clone(),
            account: locked.plan.account.clone(),
            phase: locked.plan.phase,
            actions: locked.plan.history[history_before..]
                .iter()
                .map(|h| h.action.clone())
                .collect(),
            outcome: Outcome::Finished,
        })
    }
}

fn refuse(message: String) -> EngineError {
    Refusal::Rollback(message).into()
}
