//! Plans: the serde model of a plan file and the store that loads, locks and
//! atomically saves them.

pub mod model;
pub mod store;

pub use model::{
    json_schema, mask_key, HistoryEntry, KeyStatus, NewKey, Observation, OldKey, Phase, Plan,
    PlanKind, PlanVersion, Stamp,
};
pub use store::{LockedPlan, PlanStore};
