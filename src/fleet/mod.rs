//! Many users at once: the inventory behind `report`, batch planning
//! (`plan --all`) and concurrent runs (`run --all`).
//!
//! Each batch works user by user with bounded concurrency, and one user's
//! failure is that user's result, never the batch's: the other users go on.
//! Nothing here prints; the commands show progress through the callbacks.

pub mod inventory;
pub mod org;
pub mod plan;
pub mod run;
pub mod stop;

pub use inventory::{inventory, InventoryRequest, KeyReport, UserReport};
pub use plan::{plan_all, PlanAllRequest, PlanAllRow};
pub use run::{run_all, run_all_until, Batch, Category, Fleet, RunProgress, RunResult, Summary};
pub use stop::Stop;

/// How many users a batch works on at once unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

#[cfg(test)]
mod tests;
