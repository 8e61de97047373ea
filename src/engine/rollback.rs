//! Rollback: carries out what [`rotation::decide_rollback`] decided — the
//! old key back to Active, and with `--delete-new` the new key retired —
//! and records it in the plan.

use crate::iam::IamError;
use crate::plan::{KeyStatus, LockedPlan, Phase};
use crate::rotation::rollback::{RollbackEnd, RollbackOptions, RollbackStep};
use crate::rotation::{self};

use super::{Engine, EngineError, Outcome, Refusal, RunReport};

impl Engine<'_> {
    /// Reactivates the old key (and with `delete_new`, removes the new one)
    /// from any phase before the old key was deleted.
    pub async fn rollback(
        &self,
        locked: &mut LockedPlan,
        delete_new: bool,
    ) -> Result<RunReport, EngineError> {
        let history_before = locked.plan.history.len();
        let options = RollbackOptions { delete_new };
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
                            plan.transition(Phase::RolledBack, action, &stamp);
                        }
                        RollbackEnd::Record { action } => plan.record(action, &stamp),
                        RollbackEnd::Unchanged => {}
                    }
                }
            }
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
