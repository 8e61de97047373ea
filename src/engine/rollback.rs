//! Rollback: carries out what [`rotation::decide_rollback`] decided — the
//! old key back to Active and the plan back to `wait_for_adoption` (the
//! guide's step 5 → step 2), or with `--abort` the rotation ended and with
//! `--delete-new` the new key retired — and records it in the plan.

use crate::iam::IamError;
use crate::plan::{Action, ActionKind, KeyStatus, LockedPlan, Phase};
use crate::rotation::rollback::{RollbackEnd, RollbackOptions, RollbackStep};
use crate::rotation::{self};

use super::{Engine, EngineError, Outcome, Refusal, RunReport};

impl Engine<'_> {
    /// Reactivates the old key from any phase before it was deleted, and
    /// sends the rotation back to `wait_for_adoption` (or, with `abort`,
    /// ends it; with `delete_new` too, removes the new key). The second
    /// value says why nothing was undone, when nothing was.
    pub async fn rollback(
        &self,
        locked: &mut LockedPlan,
        options: RollbackOptions,
    ) -> Result<(RunReport, Option<String>), EngineError> {
        let history_before = locked.plan.history.len();
        let mut nothing_to_undo = None;
        let mut deleted_new: Option<String> = None;
        // What needs no IAM call is refused before any: a wrong account
        // reads nothing.
        rotation::check_rollback(&locked.plan, &self.caller, options).map_err(Refusal::Rollback)?;
        let user = locked.plan.user.clone();
        let keys = match self.iam.list_access_keys(&user).await {
            Ok(keys) => Some(keys),
            Err(IamError::NoSuchEntity { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let candidate = keys
            .as_deref()
            .and_then(|keys| rotation::rollback_orphan_candidate(&locked.plan, keys, options));
        let orphan_use = match candidate {
            Some(candidate) => Some(self.last_used(&candidate.id).await?),
            None => None,
        };
        let steps = rotation::decide_rollback(
            &locked.plan,
            keys.as_deref(),
            &self.caller,
            options,
            orphan_use.as_ref(),
            self.clock.system_now(),
        )
        .map_err(Refusal::Rollback)?;
        for step in steps {
            match step {
                RollbackStep::Reactivate { key_id } => {
                    self.iam
                        .update_access_key(&user, &key_id, KeyStatus::Active)
                        .await?;
                }
                RollbackStep::Note { .. } => {}
                RollbackStep::RetireNew { key_id, deactivate } => {
                    if deactivate {
                        self.iam
                            .update_access_key(&user, &key_id, KeyStatus::Inactive)
                            .await?;
                    }
                    self.iam.delete_access_key(&user, &key_id).await?;
                    deleted_new = Some(key_id.clone());
                    let now = self.clock.now();
                    if let Some(new_key) = locked.plan.new_key.as_mut().filter(|k| k.id == key_id) {
                        new_key.deleted_at = Some(now);
                    }
                }
                RollbackStep::Finish(end) => {
                    let stamp = self.stamp();
                    let plan = &mut locked.plan;
                    match end {
                        RollbackEnd::RolledBack { action } => {
                            plan.old_key.status = KeyStatus::Active;
                            plan.create_intent_at = None;
                            plan.blocked_in = None;
                            plan.blocked_reason = None;
                            let old = Some(plan.old_key.id.clone());
                            plan.transition(
                                Phase::RolledBack,
                                Action::new(ActionKind::RolledBack, old.as_deref(), action),
                                &stamp,
                            );
                        }
                        RollbackEnd::Restart { action } => {
                            plan.old_key.status = KeyStatus::Active;
                            plan.old_key.deactivated_at = None;
                            plan.old_key.last_used_at_deactivation = None;
                            plan.create_intent_at = None;
                            plan.blocked_in = None;
                            plan.blocked_reason = None;
                            plan.restarted_at = Some(stamp.at);
                            let old = Some(plan.old_key.id.clone());
                            plan.transition(
                                Phase::WaitForAdoption,
                                Action::new(ActionKind::Restarted, old.as_deref(), action),
                                &stamp,
                            );
                        }
                        RollbackEnd::Record { action } => {
                            let kind = match deleted_new {
                                Some(_) => ActionKind::DeletedNewKey,
                                None => ActionKind::Note,
                            };
                            plan.record(Action::new(kind, deleted_new.as_deref(), action), &stamp)
                        }
                        RollbackEnd::NothingToUndo { why } => nothing_to_undo = Some(why),
                        RollbackEnd::Unchanged => {}
                    }
                }
            }
        }
        if locked.plan.history.len() > history_before {
            locked.save()?;
        }
        let actions = super::actions_since(&locked.plan.history, history_before);
        let report = RunReport::of(locked, actions, Outcome::Finished, self.clock.now());
        Ok((report, nothing_to_undo))
    }
}
