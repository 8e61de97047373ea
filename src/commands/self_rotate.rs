//! `iam-rotate self-rotate`: rotate the caller's own key.

use super::{Context, Status};
use crate::cli::SelfRotateArgs;

pub async fn execute(_context: &Context, _args: SelfRotateArgs) -> anyhow::Result<Status> {
    anyhow::bail!("`self-rotate` is not available in this build yet")
}
