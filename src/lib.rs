//! iam-rotate: rotate AWS IAM user access keys the way AWS's own guide
//! prescribes, one persisted, resumable, reversible step at a time.
//!
//! The crate is a functional core and an imperative shell:
//! - [`rotation`] decides what to do next from a plan and what was observed
//!   in IAM. It does no I/O.
//! - [`engine`] carries those decisions out through the [`iam::Iam`] and
//!   [`clock::Clock`] traits and records every outcome in the plan.
//! - [`plan`] holds the plan file model and the store (load, lock, atomic save).
//! - [`aws`] implements [`iam::Iam`] over aws-sdk-iam and STS; [`sim`] is an
//!   in-memory account used by `demo` and the unit tests.
//! - [`fleet`] works on many users at once: the `report` inventory,
//!   `plan --all` and concurrent `run --all`.
//! - [`deliver`] writes a new secret to its destination, and nowhere else.
//! - [`notify`] tells people (SNS, webhooks) when a plan needs them.
//! - [`cli`] and [`commands`] parse arguments and print results.

pub mod atomic;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod deliver;
pub mod duration;
pub mod engine;
pub mod error;
pub mod fleet;
pub mod iam;
pub mod notify;
pub mod output;
pub mod plan;
pub mod planner;
pub mod progress;
pub mod rotation;
pub mod sim;
pub mod suggest;
