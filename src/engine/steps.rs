//! Carrying out one step: each AWS write, guarded, followed by a save.

use crate::deliver::Destination;
use crate::iam::{IamError, LastUse, LiveKey, CREATE_ACCESS_KEY_TIMEOUT};
use crate::plan::{mask_key, Action, ActionKind, KeyStatus, LockedPlan, NewKey, Phase, Plan};
use crate::rotation::{self, Observed, Step};

use super::{Engine, EngineError, Refusal};

use super::observe::{live_key, live_status};

impl Engine<'_> {
    /// Carries out one step and saves the plan. Returns what was observed
    /// before the step when it still holds for the phase the plan is in now
    /// (nothing in IAM changed but what this step did itself), so the next
    /// decision needs no new IAM call; `None` when IAM must be read again.
    pub(super) async fn act(
        &self,
        locked: &mut LockedPlan,
        step: Step,
        seen: Observed,
    ) -> Result<Option<Observed>, EngineError> {
        let user = locked.plan.user.clone();
        let seen = &seen;
        match step {
            Step::DeleteOrphan { key_id } => {
                self.retire_key(&user, &key_id, seen).await?;
                let created = live_key(seen, &key_id)
                    .map(|k| format!("created {}, ", k.created_at.format("%Y-%m-%dT%H:%M:%SZ")))
                    .unwrap_or_default();
                locked.plan.create_intent_at = None;
                locked.plan.record(
                    Action::new(
                        ActionKind::DeletedOrphan,
                        Some(&key_id),
                        format!(
                            "deleted orphan key {} left by an interrupted CreateAccessKey \
                             ({created}within that call's window, never used; its secret was \
                             never delivered); creating again",
                            mask_key(&key_id)
                        ),
                    ),
                    &self.stamp(),
                );
                locked.save()?;
            }
            Step::AdoptDelivered { key_id } => {
                let Some(live) = live_key(seen, &key_id) else {
                    return Ok(None);
                };
                let destination = Destination::of_plan(&locked.plan)
                    .map(|d| d.to_string())
                    .unwrap_or_else(|_| locked.plan.delivery.clone());
                locked.plan.new_key = Some(NewKey {
                    id: live.id.clone(),
                    created_at: live.created_at,
                    deleted_at: None,
                });
                locked.plan.create_intent_at = None;
                locked.plan.transition(
                    Phase::WaitForAdoption,
                    Action::new(
                        ActionKind::AdoptedDeliveredKey,
                        Some(&key_id),
                        format!(
                            "found new key {} already delivered to {destination}: an earlier run \
                             was interrupted before recording it; kept as the new key",
                            mask_key(&key_id)
                        ),
                    ),
                    &self.stamp(),
                );
                locked.save()?;
            }
            Step::CreateKey => {
                self.create_key(locked).await?;
                // IAM now holds what was listed plus the key just created,
                // which nothing can have used yet; only time can move the
                // plan on from here, and no IAM call is needed to tell.
                let Some(new_key) = &locked.plan.new_key else {
                    return Ok(None);
                };
                let mut after = self.carry(seen.clone());
                if let Some(keys) = after.keys.as_mut() {
                    keys.push(LiveKey {
                        id: new_key.id.clone(),
                        status: KeyStatus::Active,
                        created_at: new_key.created_at,
                    });
                }
                after.old_use = None;
                after.new_use = Some(LastUse::default());
                return Ok(Some(after));
            }
            Step::Advance { to, action } => {
                locked.plan.transition(
                    to,
                    Action::new(ActionKind::Advanced, None, action),
                    &self.stamp(),
                );
                locked.save()?;
                // A plan-only transition: what was read still holds, if it
                // covers what the new phase reads.
                let (want_old, want_new) = rotation::needs_last_used(to);
                if (!want_old || seen.old_use.is_some()) && (!want_new || seen.new_use.is_some()) {
                    return Ok(Some(self.carry(seen.clone())));
                }
            }
            Step::Deactivate { key_id } => {
                guard_named(&locked.plan, &key_id)?;
                let live = live_status(seen, &key_id);
                let action = if live == Some(KeyStatus::Inactive) {
                    format!(
                        "old key {} found already inactive (an earlier run was interrupted after \
                         deactivating it)",
                        mask_key(&key_id)
                    )
                } else {
                    self.iam
                        .update_access_key(&user, &key_id, KeyStatus::Inactive)
                        .await?;
                    format!("set old key {} inactive", mask_key(&key_id))
                };
                let stamp = self.stamp();
                let old = &mut locked.plan.old_key;
                old.status = KeyStatus::Inactive;
                old.deactivated_at = Some(stamp.at);
                old.last_used_at_deactivation = seen.old_use.as_ref().and_then(|u| u.at);
                locked.plan.transition(
                    Phase::Verify,
                    Action::new(ActionKind::DeactivatedOldKey, Some(&key_id), action),
                    &stamp,
                );
                locked.save()?;
            }
            Step::DeleteOld { key_id } => self.delete_old(locked, &key_id, seen).await?,
        }
        Ok(None)
    }

    /// DeleteAccessKey on the old key, which must be Inactive.
    async fn delete_old(
        &self,
        locked: &mut LockedPlan,
        key_id: &str,
        seen: &Observed,
    ) -> Result<(), EngineError> {
        guard_named(&locked.plan, key_id)?;
        let action = match live_status(seen, key_id) {
            None => format!(
                "old key {} found already deleted (an earlier run was interrupted after \
                 deleting it)",
                mask_key(key_id)
            ),
            Some(KeyStatus::Active) => {
                return Err(Refusal::ActiveKey {
                    key: key_id.to_string(),
                }
                .into())
            }
            Some(KeyStatus::Inactive) => {
                self.iam
                    .delete_access_key(&locked.plan.user, key_id)
                    .await?;
                format!("deleted old key {}", mask_key(key_id))
            }
        };
        locked.plan.transition(
            Phase::Done,
            Action::new(ActionKind::DeletedOldKey, Some(key_id), action),
            &self.stamp(),
        );
        locked.save()?;
        Ok(())
    }

    pub(super) async fn create_key(&self, locked: &mut LockedPlan) -> Result<(), EngineError> {
        let plan = &locked.plan;
        let destination = Destination::of_plan(plan).map_err(EngineError::DeliveryCheck)?;
        self.deliver
            .check(&destination)
            .await
            .map_err(EngineError::DeliveryCheck)?;

        // CreateAccessKey has no idempotency token: the intent goes to disk
        // first, so a crash after the call is recognised on resume. The call
        // must end within CREATE_ACCESS_KEY_TIMEOUT of the intent, however
        // long the save took: a key it made can only have been created in
        // that window, which is what tells an orphan of ours from a key
        // someone else made.
        let intent = std::time::Instant::now();
        locked.plan.create_intent_at = Some(self.clock.system_now());
        locked.save()?;
        let user = locked.plan.user.clone();
        let budget = CREATE_ACCESS_KEY_TIMEOUT.saturating_sub(intent.elapsed());
        if budget.is_zero() {
            // Too late for the window the intent promises: no call at all.
            locked.plan.create_intent_at = None;
            locked.save()?;
            return Err(Refusal::IntentSaveTooSlow.into());
        }
        let answer = tokio::time::timeout(budget, self.iam.create_access_key(&user))
            .await
            .unwrap_or_else(|_| {
                Err(IamError::Unanswered {
                    operation: "CreateAccessKey".into(),
                    message: format!(
                        "no answer within {}s of the create intent",
                        CREATE_ACCESS_KEY_TIMEOUT.as_secs()
                    ),
                })
            });
        let created = match answer {
            Ok(created) => created,
            Err(error) => {
                if error.is_definite() {
                    // IAM answered and refused: no key was made, and the
                    // intent must not later mistake someone else's new key
                    // for an orphan of ours.
                    locked.plan.create_intent_at = None;
                    locked.save()?;
                }
                return Err(error.into());
            }
        };

        if let Err(error) = self.deliver.deliver(&destination, &created).await {
            let key = mask_key(&created.id);
            drop(created.secret);
            let cleanup = async {
                self.iam
                    .update_access_key(&user, &created.id, KeyStatus::Inactive)
                    .await?;
                self.iam.delete_access_key(&user, &created.id).await
            };
            if let Err(e) = cleanup.await {
                // The intent stays: the next run finds the key and deletes it.
                locked.plan.record(
                    Action::new(
                        ActionKind::DeliveryFailed,
                        Some(&created.id),
                        format!(
                            "delivery to {destination} failed ({error}); deleting the new key \
                             {key} failed too ({e}); the next run deletes it"
                        ),
                    ),
                    &self.stamp(),
                );
                locked.save()?;
                return Err(EngineError::DeliveryFailed { error, key });
            }
            locked.plan.create_intent_at = None;
            locked.plan.record(
                Action::new(
                    ActionKind::DeliveryFailed,
                    Some(&created.id),
                    format!("delivery to {destination} failed ({error}); new key {key} deleted"),
                ),
                &self.stamp(),
            );
            locked.save()?;
            return Err(EngineError::DeliveryFailed { error, key });
        }

        let key = mask_key(&created.id);
        let key_id = created.id.clone();
        locked.plan.new_key = Some(NewKey {
            id: created.id.clone(),
            created_at: created.created_at,
            deleted_at: None,
        });
        drop(created);
        locked.plan.create_intent_at = None;
        locked.plan.transition(
            Phase::WaitForAdoption,
            Action::new(
                ActionKind::CreatedKey,
                Some(&key_id),
                format!("created new key {key}; secret delivered to {destination}"),
            ),
            &self.stamp(),
        );
        locked.save()?;
        Ok(())
    }

    /// Deactivates then deletes a key this plan owns: nothing active is
    /// ever deleted.
    pub(super) async fn retire_key(
        &self,
        user: &str,
        key_id: &str,
        seen: &Observed,
    ) -> Result<(), IamError> {
        if live_status(seen, key_id) == Some(KeyStatus::Active) {
            self.iam
                .update_access_key(user, key_id, KeyStatus::Inactive)
                .await?;
        }
        self.iam.delete_access_key(user, key_id).await
    }
}

/// Defence in depth: the only keys the engine deactivates or deletes as
/// "old" are the one the plan names.
fn guard_named(plan: &Plan, key_id: &str) -> Result<(), EngineError> {
    if plan.old_key.id == key_id {
        Ok(())
    } else {
        Err(Refusal::NotNamed {
            key: key_id.to_string(),
            old: plan.old_key.id.clone(),
        }
        .into())
    }
}
