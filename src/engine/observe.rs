//! Reading IAM (and the destination) for a decision: only what the
//! plan's phase needs.

use crate::deliver::{Destination, Held};
use crate::iam::{IamError, LastUse, LiveKey};
use crate::plan::{KeyStatus, Observation, Phase, Plan};
use crate::rotation::{self, Observed};

use super::{Engine, EngineError, Refusal};

impl Engine<'_> {
    /// `seen` with the last use of both keys the plan names, for a dry run
    /// whose chain may reach phases that judge them (reads only).
    pub(super) async fn with_every_last_use(
        &self,
        plan: &Plan,
        mut seen: Observed,
    ) -> Result<Observed, EngineError> {
        let present = |seen: &Observed, id: &str| seen.keys.iter().flatten().any(|k| k.id == id);
        if seen.old_use.is_none() && present(&seen, &plan.old_key.id) {
            seen.old_use = Some(self.last_used(&plan.old_key.id).await?);
        }
        if let Some(new_key) = &plan.new_key {
            if seen.new_use.is_none() && present(&seen, &new_key.id) {
                seen.new_use = Some(self.last_used(&new_key.id).await?);
            }
        }
        Ok(seen)
    }

    /// ListAccessKeys, and the last use of the keys the phase needs. Nothing
    /// at all for a plan whose decision does not depend on IAM (finished,
    /// blocked) or that belongs to another account than the caller's: a
    /// plan run with the wrong profile reads nothing, changes nothing.
    pub(super) async fn observe(&self, plan: &Plan) -> Result<Observed, EngineError> {
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
    pub(super) async fn held(&self, plan: &Plan) -> Held {
        match Destination::of_plan(plan) {
            Ok(destination) => self.deliver.held(&destination).await,
            Err(e) => Held::Unknown(e.to_string()),
        }
    }

    /// `seen` a moment later: same facts, the clock read again (so a wait
    /// of zero that started during this run counts as over).
    pub(super) fn carry(&self, mut seen: Observed) -> Observed {
        seen.now = self.clock.now();
        seen.system_now = self.clock.system_now();
        seen
    }

    pub(super) async fn last_used(&self, key_id: &str) -> Result<LastUse, EngineError> {
        match self.iam.access_key_last_used(key_id).await {
            Ok(u) => Ok(u),
            // Gone between the listing and now. "Never used" would be the
            // most permissive reading there is; stop, and let the next run's
            // listing show what happened.
            Err(IamError::NoSuchEntity { .. }) => Err(Refusal::KeyVanished {
                key: key_id.to_string(),
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }
}

pub(super) fn live_status(seen: &Observed, key_id: &str) -> Option<KeyStatus> {
    live_key(seen, key_id).map(|k| k.status)
}

pub(super) fn live_key<'s>(seen: &'s Observed, key_id: &str) -> Option<&'s LiveKey> {
    seen.keys
        .as_ref()
        .and_then(|keys| keys.iter().find(|k| k.id == key_id))
}

/// Appends a last-used sample to the plan; `false` when nothing was read.
///
/// A key whose last use this phase did not read (the new key in
/// `check_last_used` and `set_inactive`) keeps its previous reading, so the
/// row never reads as "never used" for a key that was.
pub(super) fn record_observation(plan: &mut Plan, seen: &Observed) -> bool {
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
