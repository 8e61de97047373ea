//! Plans: the serde model of a plan file (with the policy it stores) and the
//! store that loads, locks and atomically saves them. Below `rotation`: no
//! module here imports it.

pub mod model;
pub mod policy;
pub mod store;

pub use model::{
    json_schema, mask_key, Action, ActionKind, HistoryEntry, KeyStatus, NewKey, Observation,
    OldKey, Phase, Plan, PlanKind, PlanVersion, Stamp,
};
pub use store::{LockedPlan, PlanStore};
