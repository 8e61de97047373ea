//! The driver: observe IAM, ask [`rotation::decide`], carry the decision
//! out, record it in the plan, save, and ask again, until the plan waits,
//! blocks or finishes. Every change to a plan is saved before the next AWS
//! call, so a crash at any point leaves a plan that says what was done.

use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

use crate::clock::Clock;
use crate::deliver::{Deliver, DeliverError, Destination, Held};
use crate::iam::{Caller, Iam, IamError, LastUse, LiveKey, CREATE_ACCESS_KEY_TIMEOUT};
use crate::plan::store::PlanError;
use crate::plan::{mask_key, KeyStatus, LockedPlan, NewKey, Observation, Phase, Plan, Stamp};
use crate::rotation::{self, Decision, Observed, Step};

/// A generous bound on steps in one run; a full rotation takes seven.
const MAX_STEPS: usize = 32;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "{0}. Nothing was created; fix the destination (or `delivery:` in the plan) and run again."
    )]
    DeliveryCheck(DeliverError),
    #[error("{error}. The new key {key} was deleted again, since its secret cannot be recovered; the plan stays in create_second_key. Fix the destination and run again.")]
    DeliveryFailed { error: DeliverError, key: String },
    #[error("{0}")]
    Refused(String),
}

/// How one plan ended this run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Done or rolled back; nothing more will ever happen.
    Finished,
    /// The next step is not due; AWS was left alone.
    Waiting {
        until: Option<DateTime<Utc>>,
        reason: String,
        next: String,
    },
    /// A person must act.
    Blocked { reason: String },
    /// The credentials belong to another account; nothing was touched.
    WrongAccount { reason: String },
    /// `--dry-run`: what would happen next.
    WouldAct { step: String },
}

/// What one run did to one plan.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub user: String,
    pub account: String,
    pub phase: Phase,
    /// The actions taken, in order, as recorded in history.
    pub actions: Vec<String>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    pub dry_run: bool,
    pub retry_blocked: bool,
}

/// Carries decisions out for one caller.
pub struct Engine<'a> {
    pub iam: &'a dyn Iam,
    pub clock: &'a dyn Clock,
    pub deliver: &'a dyn Deliver,
    /// STS GetCallerIdentity, taken once per process.
    pub caller: Caller,
}

impl Engine<'_> {
    fn stamp(&self) -> Stamp {
        Stamp {
            at: self.clock.now(),
            actor: self.caller.arn.clone(),
            clock: self.clock.note(),
        }
    }

    /// Takes the plan through every step that is due now.
    pub async fn run(
        &self,
        locked: &mut LockedPlan,
        options: RunOptions,
    ) -> Result<RunReport, EngineError> {
        let history_before = locked.plan.history.len();
        let result = self.run_inner(locked, options).await;
        let actions = locked.plan.history[history_before.min(locked.plan.history.len())..]
            .iter()
            .map(|h| h.action.clone())
            .collect();
        match result {
            Ok(outcome) => {
                if !options.dry_run && locked.plan.last_error.take().is_some() {
                    locked.save()?;
                }
                Ok(RunReport {
                    user: locked.plan.user.clone(),
                    account: locked.plan.account.clone(),
                    phase: locked.plan.phase,
                    actions,
                    outcome,
                })
            }
            Err(error) => {
                if !options.dry_run {
                    // Keep the failure on the plan for `status`; the error
                    // itself goes back to the caller either way.
                    locked.plan.last_error = Some(error.to_string());
                    let _ = locked.save();
                }
                Err(error)
            }
        }
    }

    async fn run_inner(
        &self,
        locked: &mut LockedPlan,
        options: RunOptions,
    ) -> Result<Outcome, EngineError> {
        let mut rebaseline = false;
        if locked.plan.phase == Phase::Blocked && options.retry_blocked {
            if self.caller.account != locked.plan.account {
                return Ok(Outcome::WrongAccount {
                    reason: wrong_account(&locked.plan, &self.caller),
                });
            }
            if options.dry_run {
                return Ok(Outcome::WouldAct {
                    step: "leave blocked and re-check the guards".into(),
                });
            }
            rebaseline = locked.plan.blocked_in == Some(Phase::Verify);
            locked.plan.unblock(&self.stamp());
            locked.save()?;
        }
        // An observation that is still good for the plan's phase: taken in
        // this run and followed only by a plan-only transition or by our own
        // CreateAccessKey, so it is reused instead of asking IAM again.
        let mut carried: Option<Observed> = None;
        for _ in 0..MAX_STEPS {
            let mut unsaved = false;
            let seen = match carried.take() {
                Some(seen) => seen,
                None => {
                    let seen = self.observe(&locked.plan).await?;
                    if !options.dry_run {
                        unsaved = record_observation(&mut locked.plan, &seen);
                        if rebaseline && locked.plan.phase == Phase::Verify {
                            rebaseline = false;
                            unsaved = true;
                            let baseline = seen.old_use.as_ref().and_then(|u| u.at);
                            locked.plan.old_key.last_used_at_deactivation = baseline;
                            locked.plan.record(
                                format!(
                                    "verification restarted; old key's last use {} taken as the \
                                     new baseline",
                                    baseline
                                        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                                        .unwrap_or_else(|| "(never)".into())
                                ),
                                &self.stamp(),
                            );
                        }
                    }
                    seen
                }
            };
            let decision = rotation::decide(&locked.plan, &seen);
            let step = match decision {
                Decision::Finished => return Ok(Outcome::Finished),
                Decision::WrongAccount { reason } => return Ok(Outcome::WrongAccount { reason }),
                Decision::Unsure { reason } => {
                    if !options.dry_run && unsaved {
                        locked.save()?;
                    }
                    return Err(EngineError::Refused(reason));
                }
                Decision::Wait {
                    until,
                    reason,
                    next,
                } => {
                    if !options.dry_run && unsaved {
                        locked.save()?;
                    }
                    return Ok(Outcome::Waiting {
                        until,
                        reason,
                        next,
                    });
                }
                Decision::Block { reason } => {
                    if !options.dry_run && locked.plan.phase != Phase::Blocked {
                        locked.plan.block(reason.clone(), &self.stamp());
                        locked.save()?;
                    }
                    return Ok(Outcome::Blocked { reason });
                }
                Decision::Act(step) => step,
            };
            if options.dry_run {
                return Ok(Outcome::WouldAct {
                    step: describe(&locked.plan, &step),
                });
            }
            carried = self.act(locked, step, seen).await?;
        }
        Err(EngineError::Refused(format!(
            "the plan for {} took more than {MAX_STEPS} steps in one run, which no rotation \
             needs; it was left as it is. Report this with the plan file.",
            locked.plan.user
        )))
    }

    /// ListAccessKeys, and the last use of the keys the phase needs. Nothing
    /// at all for a plan whose decision does not depend on IAM (finished,
    /// blocked) or that belongs to another account than the caller's: a
    /// plan run with the wrong profile reads nothing, changes nothing.
    async fn observe(&self, plan: &Plan) -> Result<Observed, EngineError> {
        if !rotation::needs_observation(plan.phase) || self.caller.account != plan.account {
            return Ok(Observed {
                now: self.clock.now(),
                system_now: self.clock.system_now(),
                caller_account: self.caller.account.clone(),
                keys: None,
                old_use: None,
                new_use: None,
                orphan_use: None,
                delivered: None,
            });
        }
        let keys = match self.iam.list_access_keys(&plan.user).await {
            Ok(keys) => Some(keys),
            Err(IamError::NoSuchEntity { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let (want_old, want_new) = rotation::needs_last_used(plan.phase);
        let present = |id: &str| {
            keys.as_ref()
                .is_some_and(|keys: &Vec<LiveKey>| keys.iter().any(|k| k.id == id))
        };
        let old_use = if want_old && present(&plan.old_key.id) {
            Some(self.last_used(&plan.old_key.id).await?)
        } else {
            None
        };
        let new_use = match &plan.new_key {
            Some(new_key) if want_new && present(&new_key.id) => {
                Some(self.last_used(&new_key.id).await?)
            }
            _ => None,
        };
        // A key an interrupted CreateAccessKey may have left: the
        // destination says whether it was delivered; if not, its last use
        // says whether anyone holds it.
        let candidate = match &keys {
            Some(keys) if plan.phase == Phase::CreateSecondKey => {
                rotation::orphan_candidate(plan, keys).cloned()
            }
            _ => None,
        };
        let (delivered, orphan_use) = match candidate {
            Some(candidate) => {
                let held = self.held(plan).await;
                let used = if held == Held::Key(candidate.id.clone()) {
                    None
                } else {
                    Some(self.last_used(&candidate.id).await?)
                };
                (Some(held), used)
            }
            None => (None, None),
        };
        Ok(Observed {
            now: self.clock.now(),
            system_now: self.clock.system_now(),
            caller_account: self.caller.account.clone(),
            keys,
            old_use,
            new_use,
            orphan_use,
            delivered,
        })
    }

    /// What the plan's destination holds now.
    async fn held(&self, plan: &Plan) -> Held {
        match Destination::of_plan(plan) {
            Ok(destination) => self.deliver.held(&destination).await,
            Err(e) => Held::Unknown(e.to_string()),
        }
    }

    /// `seen` a moment later: same facts, the clock read again (so a wait
    /// of zero that started during this run counts as over).
    fn carry(&self, mut seen: Observed) -> Observed {
        seen.now = self.clock.now();
        seen.system_now = self.clock.system_now();
        seen
    }

    async fn last_used(&self, key_id: &str) -> Result<LastUse, EngineError> {
        match self.iam.access_key_last_used(key_id).await {
            Ok(u) => Ok(u),
            // Gone between the listing and now. "Never used" would be the
            // most permissive reading there is; stop, and let the next run's
            // listing show what happened.
            Err(IamError::NoSuchEntity { .. }) => Err(EngineError::Refused(format!(
                "key {} vanished between listing the user's keys and reading its last use; \
                 nothing was changed. Run again: the next listing shows what happened",
                mask_key(key_id)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Carries out one step and saves the plan. Returns what was observed
    /// before the step when it still holds for the phase the plan is in now
    /// (nothing in IAM changed but what this step did itself), so the next
    /// decision needs no new IAM call; `None` when IAM must be read again.
    async fn act(
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
                    format!(
                        "deleted orphan key {} left by an interrupted CreateAccessKey ({created}\
                         within that call's window, never used; its secret was never delivered); \
                         creating again",
                        mask_key(&key_id)
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
                });
                locked.plan.create_intent_at = None;
                locked.plan.transition(
                    Phase::WaitForAdoption,
                    format!(
                        "found new key {} already delivered to {destination}: an earlier run was \
                         interrupted before recording it; kept as the new key",
                        mask_key(&key_id)
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
                locked.plan.transition(to, action, &self.stamp());
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
                locked.plan.transition(Phase::Verify, action, &stamp);
                locked.save()?;
            }
            Step::DeleteOld { key_id } => {
                guard_named(&locked.plan, &key_id)?;
                let action = match live_status(seen, &key_id) {
                    None => format!(
                        "old key {} found already deleted (an earlier run was interrupted after \
                         deleting it)",
                        mask_key(&key_id)
                    ),
                    Some(KeyStatus::Active) => {
                        return Err(EngineError::Refused(format!(
                            "the old key {} is Active; iam-rotate never deletes an active key",
                            mask_key(&key_id)
                        )))
                    }
                    Some(KeyStatus::Inactive) => {
                        self.iam.delete_access_key(&user, &key_id).await?;
                        format!("deleted old key {}", mask_key(&key_id))
                    }
                };
                locked.plan.transition(Phase::Done, action, &self.stamp());
                locked.save()?;
            }
        }
        Ok(None)
    }

    async fn create_key(&self, locked: &mut LockedPlan) -> Result<(), EngineError> {
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
            return Err(EngineError::Refused(format!(
                "saving the create intent took longer than {}s, so CreateAccessKey was not \
                 called; nothing was created. Check the plans folder's storage and run again.",
                CREATE_ACCESS_KEY_TIMEOUT.as_secs()
            )));
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
                    format!(
                        "delivery to {destination} failed ({error}); deleting the new key {key} \
                         failed too ({e}); the next run deletes it"
                    ),
                    &self.stamp(),
                );
                locked.save()?;
                return Err(EngineError::DeliveryFailed { error, key });
            }
            locked.plan.create_intent_at = None;
            locked.plan.record(
                format!("delivery to {destination} failed ({error}); new key {key} deleted"),
                &self.stamp(),
            );
            locked.save()?;
            return Err(EngineError::DeliveryFailed { error, key });
        }

        let key = mask_key(&created.id);
        locked.plan.new_key = Some(NewKey {
            id: created.id.clone(),
            created_at: created.created_at,
        });
        drop(created);
        locked.plan.create_intent_at = None;
        locked.plan.transition(
            Phase::WaitForAdoption,
            format!("created new key {key}; secret delivered to {destination}"),
            &self.stamp(),
        );
        locked.save()?;
        Ok(())
    }

    /// Deactivates then deletes a key this plan owns: nothing active is
    /// ever deleted.
    async fn retire_key(&self, user: &str, key_id: &str, seen: &Observed) -> Result<(), IamError> {
        if live_status(seen, key_id) == Some(KeyStatus::Active) {
            self.iam
                .update_access_key(user, key_id, KeyStatus::Inactive)
                .await?;
        }
        self.iam.delete_access_key(user, key_id).await
    }

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
            return Err(EngineError::Refused(format!(
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
            return Err(EngineError::Refused(wrong_account(plan, &self.caller)));
        }
        if delete_new && self.caller.arn == plan.user_arn {
            // A self-rotation: the credentials signing this call are, in all
            // likelihood, the new key itself, and the old key's secret was
            // overwritten where it was kept. Deleting the new key would
            // leave the user with no key whose secret anyone holds.
            return Err(EngineError::Refused(format!(
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
                return Err(EngineError::Refused(format!(
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
                return Err(EngineError::Refused(format!(
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
                return Err(EngineError::Refused(format!(
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

fn wrong_account(plan: &Plan, caller: &Caller) -> String {
    format!(
        "the credentials in use belong to account {}, but the plan for {} is for account {}. \
         Nothing was changed. Run again with a profile for account {} (--profile or AWS_PROFILE).",
        caller.account, plan.user, plan.account, plan.account
    )
}

/// Defence in depth: the only keys the engine deactivates or deletes as
/// "old" are the one the plan names.
fn guard_named(plan: &Plan, key_id: &str) -> Result<(), EngineError> {
    if plan.old_key.id == key_id {
        Ok(())
    } else {
        Err(EngineError::Refused(format!(
            "refusing to touch key {}: the plan's old key is {}",
            mask_key(key_id),
            mask_key(&plan.old_key.id)
        )))
    }
}

fn live_status(seen: &Observed, key_id: &str) -> Option<KeyStatus> {
    live_key(seen, key_id).map(|k| k.status)
}

fn live_key<'s>(seen: &'s Observed, key_id: &str) -> Option<&'s LiveKey> {
    seen.keys
        .as_ref()
        .and_then(|keys| keys.iter().find(|k| k.id == key_id))
}

/// Appends a last-used sample to the plan; `false` when nothing was read.
///
/// A key whose last use this phase did not read (the new key in
/// `check_last_used` and `set_inactive`) keeps its previous reading, so the
/// row never reads as "never used" for a key that was.
fn record_observation(plan: &mut Plan, seen: &Observed) -> bool {
    if seen.old_use.is_none() && seen.new_use.is_none() {
        return false;
    }
    let previous = plan.last_observation().cloned();
    let (old_last_used, old_service, old_region) = match &seen.old_use {
        Some(u) => (u.at, u.service.clone(), u.region.clone()),
        None => previous
            .as_ref()
            .map(|p| (p.old_last_used, p.old_service.clone(), p.old_region.clone()))
            .unwrap_or_default(),
    };
    let (new_last_used, new_service, new_region) = match &seen.new_use {
        Some(u) => (u.at, u.service.clone(), u.region.clone()),
        None => previous
            .as_ref()
            .map(|p| (p.new_last_used, p.new_service.clone(), p.new_region.clone()))
            .unwrap_or_default(),
    };
    plan.observe(Observation {
        at: seen.now,
        old_last_used,
        old_service,
        old_region,
        new_last_used,
        new_service,
        new_region,
    });
    true
}

/// A step in the operator's words, for `--dry-run`.
pub fn describe(plan: &Plan, step: &Step) -> String {
    match step {
        Step::DeleteOrphan { key_id } => format!(
            "delete orphan key {} left by an interrupted create, then create again",
            mask_key(key_id)
        ),
        Step::AdoptDelivered { key_id } => format!(
            "keep key {}, found delivered to {} after an interrupted create, as the new key",
            mask_key(key_id),
            plan.delivery
        ),
        Step::CreateKey => format!(
            "create a second access key and deliver it to {}",
            plan.delivery
        ),
        Step::Advance { to, action } => format!("move to {to}: {action}"),
        Step::Deactivate { key_id } => format!("set old key {} inactive", mask_key(key_id)),
        Step::DeleteOld { key_id } => format!("delete old key {}", mask_key(key_id)),
    }
}
