//! [`Iam`] over aws-sdk-iam and aws-sdk-sts.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_iam::config::http::HttpResponse;
use aws_sdk_iam::config::retry::RetryConfig;
use aws_sdk_iam::config::timeout::TimeoutConfig;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use zeroize::Zeroize;

use crate::iam::{
    Caller, CreatedKey, Iam, IamError, LastUse, LiveKey, User, CREATE_ACCESS_KEY_TIMEOUT,
};
use crate::plan::KeyStatus;

/// IAM and STS clients built from one [`SdkConfig`].
#[derive(Clone, Debug)]
pub struct AwsIam {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
}

impl AwsIam {
    pub fn new(config: &SdkConfig) -> Self {
        AwsIam {
            iam: super::log::iam(config),
            sts: super::log::sts(config),
        }
    }
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    // IAM stamps whole seconds; an endpoint that adds fractions would make a
    // zero wait end a fraction of a second after the clock says it did.
    DateTime::from_timestamp(t.secs(), 0)
}

/// Maps an SDK error to the few cases the core acts on. Messages come from
/// AWS and never hold a secret.
fn map_err<E>(operation: &str, err: SdkError<E, HttpResponse>) -> IamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let answered = match &err {
        SdkError::ServiceError(context) => context.raw().status().as_u16() < 500,
        _ => false,
    };
    let code = err.code().map(str::to_string);
    let message = err.message().map(str::to_string).unwrap_or_else(|| {
        let chain = error_chain(&err);
        if chain.contains("loading credentials") || chain.contains("no providers in chain") {
            format!(
                "no usable AWS credentials ({chain}). Choose a profile with --profile or \
                 AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        } else {
            chain
        }
    });
    if !answered {
        return IamError::Unanswered {
            operation: operation.into(),
            message: match code {
                Some(code) => format!("{code}: {message}"),
                None => message,
            },
        };
    }
    match code.as_deref() {
        Some("NoSuchEntity") => IamError::NoSuchEntity { what: message },
        Some("LimitExceeded") => IamError::LimitExceeded,
        Some("AccessDenied") | Some("AccessDeniedException") => IamError::AccessDenied {
            operation: operation.into(),
            message,
        },
        Some(code) => IamError::Other {
            operation: operation.into(),
            message: format!("{code}: {message}"),
        },
        None => IamError::Other {
            operation: operation.into(),
            message,
        },
    }
}

/// The error and its causes, each in its own words, without the SDK's
/// debug dump of the whole response.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn status_of(status: Option<&StatusType>) -> KeyStatus {
    match status {
        Some(StatusType::Active) => KeyStatus::Active,
        _ => KeyStatus::Inactive,
    }
}

/// IAM says `N/A` for a key never used.
fn known(value: &str) -> Option<String> {
    (!value.is_empty() && value != "N/A").then(|| value.to_string())
}

#[async_trait]
impl Iam for AwsIam {
    async fn caller_identity(&self) -> Result<Caller, IamError> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| map_err("GetCallerIdentity", e))?;
        Ok(Caller {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
        })
    }

    async fn get_user(&self, user: &str) -> Result<User, IamError> {
        let out = self
            .iam
            .get_user()
            .user_name(user)
            .send()
            .await
            .map_err(|e| map_err("GetUser", e))?;
        let u = out.user().ok_or_else(|| IamError::NoSuchEntity {
            what: format!("user {user}"),
        })?;
        Ok(User {
            name: u.user_name().to_string(),
            arn: u.arn().to_string(),
            path: u.path().to_string(),
            created_at: to_chrono(u.create_date()),
        })
    }

    async fn list_users(&self, path_prefix: Option<&str>) -> Result<Vec<User>, IamError> {
        let mut pages = self
            .iam
            .list_users()
            .set_path_prefix(path_prefix.map(str::to_string))
            .into_paginator()
            .send();
        let mut users = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err("ListUsers", e))?;
            users.extend(page.users().iter().map(|u| User {
                name: u.user_name().to_string(),
                arn: u.arn().to_string(),
                path: u.path().to_string(),
                created_at: to_chrono(u.create_date()),
            }));
        }
        Ok(users)
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<LiveKey>, IamError> {
        let mut pages = self
            .iam
            .list_access_keys()
            .user_name(user)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| map_err("ListAccessKeys", e))?;
            for k in page.access_key_metadata() {
                let (Some(id), Some(created)) = (k.access_key_id(), k.create_date()) else {
                    continue;
                };
                keys.push(LiveKey {
                    id: id.to_string(),
                    status: status_of(k.status()),
                    created_at: to_chrono(created).unwrap_or_default(),
                });
            }
        }
        Ok(keys)
    }

    async fn create_access_key(&self, user: &str) -> Result<CreatedKey, IamError> {
        let mut out = self
            .iam
            .create_access_key()
            .user_name(user)
            // No retries here: CreateAccessKey has no idempotency token, and
            // a retry after a lost answer turns "maybe created" into a
            // LimitExceeded that hides it. One attempt keeps the answer
            // honest; the engine's create intent covers the lost one.
            //
            // And a bounded wait: the SDK sets no operation or read timeout
            // of its own (only connecting is bounded), so an unanswered call
            // could otherwise hang for ever, and a key it made could carry
            // any creation time. The orphan window is derived from this.
            .customize()
            .config_override(
                aws_sdk_iam::Config::builder()
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(CREATE_ACCESS_KEY_TIMEOUT)
                            .operation_attempt_timeout(CREATE_ACCESS_KEY_TIMEOUT)
                            .build(),
                    ),
            )
            .send()
            .await
            .map_err(|e| map_err("CreateAccessKey", e))?;
        let Some(key) = out.access_key.as_mut() else {
            return Err(IamError::Other {
                operation: "CreateAccessKey".into(),
                message: "the answer held no access key".into(),
            });
        };
        // Move the secret straight into a zeroizing holder; wipe the husk.
        let secret = SecretString::from(std::mem::take(&mut key.secret_access_key));
        key.secret_access_key.zeroize();
        Ok(CreatedKey {
            id: key.access_key_id.clone(),
            created_at: key
                .create_date
                .as_ref()
                .and_then(to_chrono)
                .unwrap_or_else(Utc::now),
            secret,
        })
    }

    async fn update_access_key(
        &self,
        user: &str,
        key_id: &str,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        let status = match status {
            KeyStatus::Active => StatusType::Active,
            KeyStatus::Inactive => StatusType::Inactive,
        };
        self.iam
            .update_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .status(status)
            .send()
            .await
            .map_err(|e| map_err("UpdateAccessKey", e))?;
        Ok(())
    }

    async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), IamError> {
        self.iam
            .delete_access_key()
            .user_name(user)
            .access_key_id(key_id)
            .send()
            .await
            .map_err(|e| map_err("DeleteAccessKey", e))?;
        Ok(())
    }

    async fn access_key_last_used(&self, key_id: &str) -> Result<LastUse, IamError> {
        let out = self
            .iam
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await
            .map_err(|e| map_err("GetAccessKeyLastUsed", e))?;
        Ok(match out.access_key_last_used() {
            None => LastUse::default(),
            Some(u) => LastUse {
                at: u.last_used_date().and_then(to_chrono),
                service: known(u.service_name()),
                region: known(u.region()),
            },
        })
    }
}
