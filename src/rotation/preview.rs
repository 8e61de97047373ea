//! `run --dry-run`: every step that would happen now, in order, had each
//! one before it succeeded — writes included, and the wait or block the
//! chain ends in — like `terraform plan`. Pure: each step's effect on the
//! plan and on what IAM would hold is applied to copies, and [`decide`]
//! asked again.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::iam::{KeyStatus, LastUse, LiveKey};
use crate::plan::{mask_key, NewKey, Phase, Plan};

use super::{decide, Decision, Observed, Step};

/// The id the preview gives the key CreateAccessKey would make.
pub const PREVIEW_NEW_KEY: &str = "<new>";

/// A bound on the chain; a whole rotation is seven steps.
const MAX_PREVIEW: usize = 16;

/// One line of a dry run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WouldStep {
    /// `act`, `wait`, `block`, `finished` or `stop`.
    pub kind: &'static str,
    /// The key the step is about, in full, when there is one and it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Until when a `wait` lasts, when time alone decides it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The step in the operator's words, starting "would".
    pub text: String,
}

/// Every step `run` would take now from `plan`, given what was just read
/// (`seen` should hold the last use of every key the chain may judge).
pub fn preview(plan: &Plan, seen: &Observed) -> Vec<WouldStep> {
    let mut plan = plan.clone();
    let mut seen = seen.clone();
    let mut chain = Vec::new();
    for _ in 0..MAX_PREVIEW {
        let step = match decide(&plan, &seen) {
            Decision::Act(step) => step,
            Decision::Wait { until, reason, .. } => {
                chain.push(WouldStep {
                    kind: "wait",
                    key_id: None,
                    until,
                    text: match until {
                        Some(until) => format!(
                            "would wait until {}: {reason}",
                            until.format("%Y-%m-%dT%H:%M:%SZ")
                        ),
                        None => format!("would wait: {reason}"),
                    },
                });
                return chain;
            }
            Decision::Block { reason } => {
                chain.push(stop("block", format!("would block: {reason}")));
                return chain;
            }
            Decision::Finished => {
                chain.push(stop(
                    "finished",
                    format!("would be {}: nothing more to do", plan.phase),
                ));
                return chain;
            }
            Decision::WrongAccount { reason } | Decision::Unsure { reason } => {
                chain.push(stop("stop", format!("would stop: {reason}")));
                return chain;
            }
        };
        chain.push(WouldStep {
            kind: "act",
            key_id: key_of(&step)
                .filter(|k| *k != PREVIEW_NEW_KEY)
                .map(str::to_string),
            until: None,
            text: format!("would {}", describe(&plan, &step)),
        });
        apply(&mut plan, &mut seen, &step);
    }
    chain
}

fn stop(kind: &'static str, text: String) -> WouldStep {
    WouldStep {
        kind,
        key_id: None,
        until: None,
        text,
    }
}

fn key_of(step: &Step) -> Option<&str> {
    match step {
        Step::DeleteOrphan { key_id }
        | Step::AdoptDelivered { key_id }
        | Step::Deactivate { key_id }
        | Step::DeleteOld { key_id } => Some(key_id),
        Step::CreateKey | Step::Advance { .. } => None,
    }
}

/// A step in the operator's words (after "would").
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

/// What the plan and IAM would hold had `step` succeeded just now.
fn apply(plan: &mut Plan, seen: &mut Observed, step: &Step) {
    let now = seen.now;
    let move_to = |plan: &mut Plan, to: Phase| {
        plan.phase = to;
        plan.phase_since = now;
    };
    match step {
        Step::DeleteOrphan { key_id } => {
            if let Some(keys) = seen.keys.as_mut() {
                keys.retain(|k| k.id != *key_id);
            }
            plan.create_intent_at = None;
            seen.orphan_use = None;
            seen.delivered = None;
        }
        Step::AdoptDelivered { key_id } => {
            let created_at = seen
                .keys
                .iter()
                .flatten()
                .find(|k| k.id == *key_id)
                .map_or(now, |k| k.created_at);
            plan.new_key = Some(NewKey {
                id: key_id.clone(),
                created_at,
                deleted_at: None,
            });
            plan.create_intent_at = None;
            seen.new_use = Some(seen.orphan_use.take().unwrap_or_default());
            seen.delivered = None;
            move_to(plan, Phase::WaitForAdoption);
        }
        Step::CreateKey => {
            if let Some(keys) = seen.keys.as_mut() {
                keys.push(LiveKey {
                    id: PREVIEW_NEW_KEY.into(),
                    status: KeyStatus::Active,
                    created_at: now,
                });
            }
            plan.new_key = Some(NewKey {
                id: PREVIEW_NEW_KEY.into(),
                created_at: now,
                deleted_at: None,
            });
            plan.create_intent_at = None;
            seen.new_use = Some(LastUse::default());
            move_to(plan, Phase::WaitForAdoption);
        }
        Step::Advance { to, .. } => move_to(plan, *to),
        Step::Deactivate { key_id } => {
            for key in seen.keys.iter_mut().flatten() {
                if key.id == *key_id {
                    key.status = KeyStatus::Inactive;
                }
            }
            plan.old_key.status = KeyStatus::Inactive;
            plan.old_key.deactivated_at = Some(now);
            plan.old_key.last_used_at_deactivation = seen.old_use.as_ref().and_then(|u| u.at);
            move_to(plan, Phase::Verify);
        }
        Step::DeleteOld { key_id } => {
            if let Some(keys) = seen.keys.as_mut() {
                keys.retain(|k| k.id != *key_id);
            }
            move_to(plan, Phase::Done);
        }
    }
}
