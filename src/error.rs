//! Errors that decide an exit code of their own.

use thiserror::Error;

/// Arguments that parse but make no sense together: exit 2, like clap's own.
#[derive(Debug, Error)]
#[error("{0}")]
pub struct UsageError(pub String);
