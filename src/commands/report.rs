//! `iam-rotate report`: every user's keys, their age and last use.

use super::{Context, Status};
use crate::cli::ReportArgs;

pub async fn execute(_context: &Context, _args: ReportArgs) -> anyhow::Result<Status> {
    anyhow::bail!("`report` is not available in this build yet")
}
