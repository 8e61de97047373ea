//! `iam-rotate schema`: the JSON Schema of the plan file on stdout,
//! generated from the same serde types plans are read and written with.

use super::Status;
use crate::output;

pub fn execute() -> anyhow::Result<Status> {
    output::json(&crate::plan::json_schema())?;
    Ok(Status::Success)
}
