//! The side of IAM (and STS) the rotation needs, as one small trait, so the
//! core can be driven against AWS, moto, or the in-memory simulated account.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// An access key's status as IAM names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        })
    }
}

/// Who is calling: STS GetCallerIdentity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account: String,
    pub arn: String,
}

/// A key as ListAccessKeys shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveKey {
    pub id: String,
    pub status: KeyStatus,
    pub created_at: DateTime<Utc>,
}

/// GetAccessKeyLastUsed. `at: None` means the key was never used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastUse {
    pub at: Option<DateTime<Utc>>,
    pub service: Option<String>,
    pub region: Option<String>,
}

impl LastUse {
    /// "2h ago by s3 in eu-west-1", or "never".
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        match self.at {
            None => "never".to_string(),
            Some(at) => {
                let mut text = crate::duration::relative(at, now);
                text.push_str(&format!(" ({})", at.format("%Y-%m-%dT%H:%M:%SZ")));
                if let Some(service) = &self.service {
                    text.push_str(&format!(" by {service}"));
                }
                if let Some(region) = &self.region {
                    text.push_str(&format!(" in {region}"));
                }
                text
            }
        }
    }
}

/// A key just created. The secret is only ever held in a [`SecretString`],
/// which redacts itself in `Debug` and is zeroed when dropped.
pub struct CreatedKey {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub secret: SecretString,
}

impl std::fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedKey")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// An IAM user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub arn: String,
    pub path: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// What an IAM call can fail with, in the terms the core acts on.
#[derive(Debug, Error)]
pub enum IamError {
    #[error("IAM says {what} does not exist (NoSuchEntity)")]
    NoSuchEntity { what: String },
    #[error("IAM refused to create a key: the user already has two access keys (LimitExceeded)")]
    LimitExceeded,
    #[error(
        "access denied calling {operation}: {message}. The credentials in use need the \
         permission {}; docs/policies/operator.json has every permission iam-rotate needs",
        permission(.operation)
    )]
    AccessDenied { operation: String, message: String },
    #[error("{operation} failed: {message}")]
    Other { operation: String, message: String },
    /// No answer from AWS (timeout, dropped connection, 5xx): the call may
    /// or may not have been carried out.
    #[error("{operation} got no clear answer ({message}); it may or may not have taken effect")]
    Unanswered { operation: String, message: String },
}

/// The IAM policy action an operation needs: `iam:CreateAccessKey`,
/// `sts:AssumeRole`.
fn permission(operation: &str) -> String {
    let service = match operation {
        "GetCallerIdentity" | "AssumeRole" => "sts",
        _ => "iam",
    };
    format!("{service}:{operation}")
}

impl IamError {
    /// True when AWS answered and refused: the call certainly changed
    /// nothing.
    pub fn is_definite(&self) -> bool {
        !matches!(self, IamError::Unanswered { .. })
    }
}

/// How long one CreateAccessKey call may take, from the moment its create
/// intent is saved to giving up on its answer. The engine bounds the call by
/// it whatever the [`Iam`] implementation, and the SDK one also sets it as
/// the call's operation timeout (with no retry). A key that an unanswered
/// call made was therefore created within this long after the intent (give
/// or take clock skew): see [`crate::rotation::orphan_window`].
pub const CREATE_ACCESS_KEY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// IAM and STS, as the rotation uses them.
#[async_trait]
pub trait Iam: Send + Sync {
    async fn caller_identity(&self) -> Result<Caller, IamError>;
    async fn get_user(&self, user: &str) -> Result<User, IamError>;
    async fn list_users(&self, path_prefix: Option<&str>) -> Result<Vec<User>, IamError>;
    async fn list_access_keys(&self, user: &str) -> Result<Vec<LiveKey>, IamError>;
    async fn create_access_key(&self, user: &str) -> Result<CreatedKey, IamError>;
    async fn update_access_key(
        &self,
        user: &str,
        key_id: &str,
        status: KeyStatus,
    ) -> Result<(), IamError>;
    async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), IamError>;
    async fn access_key_last_used(&self, key_id: &str) -> Result<LastUse, IamError>;
}
