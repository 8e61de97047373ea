//! Integration tests: the real `iam-rotate` binary against `moto_server`.
//! One test binary for the whole suite keeps link time down.

mod bad_input;
mod crash;
mod deliver;
mod ecosystem;
mod exec_dest;
mod faults;
mod fleet;
mod harness;
mod lifecycle;
mod logs;
mod notify;
mod offline;
mod org;
mod orphans;
mod pacing;
mod proxy;
mod recovery;
mod s3_plans;
mod safety;
mod self_safety;
mod unattended;
