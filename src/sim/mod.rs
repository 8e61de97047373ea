//! Simulation: the in-memory IAM account that `demo` and the unit tests
//! run on, and (in test builds) the deterministic simulation harness that
//! drives the engine through every crash point and fault from one seed.

mod account;

pub use account::SimAccount;

#[cfg(test)]
mod harness;
