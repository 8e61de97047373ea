//! [`Iam`] over aws-sdk-iam and aws-sdk-sts. Every IAM request goes
//! through the account's [`Pacer`]; see [`super::pacing`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

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

use super::pacing::{self, Pacer};
use crate::clock::SystemClock;
use crate::iam::{
    Caller, CreatedKey, Iam, IamError, LastUse, LiveKey, User, CREATE_ACCESS_KEY_TIMEOUT,
};
use crate::plan::KeyStatus;

/// How long after its first attempt a throttled CreateAccessKey is sent
/// again. A throttled create was not carried out, so sending it again is
/// safe; but every attempt must end within [`CREATE_ACCESS_KEY_TIMEOUT`] of
/// the first (the create intent's window), so the last one starts early
/// enough to be answered in it.
const CREATE_THROTTLE_WINDOW: std::time::Duration = std::time::Duration::from_secs(20);

/// IAM and STS clients built from one [`SdkConfig`], and the pacer of the
/// account they work in.
#[derive(Clone, Debug)]
pub struct AwsIam {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    pacer: Arc<Pacer>,
}

impl AwsIam {
    /// Clients with a pacer of their own.
    pub fn new(config: &SdkConfig) -> Self {
        AwsIam::with_pacer(config, Arc::new(Pacer::unshared(Arc::new(SystemClock))))
    }

    /// Clients whose IAM requests go through `pacer`, shared with every
    /// other client of the same account.
    pub fn with_pacer(config: &SdkConfig, pacer: Arc<Pacer>) -> Self {
        let iam = if pacer.adapts() {
            super::log::iam_paced(config)
        } else {
            // The SDK's adaptive mode keeps its own throttling retries.
            super::log::iam(config)
        };
        AwsIam {
            iam,
            sts: super::log::sts(config),
            pacer,
        }
    }

    pub fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }

    /// Sends one IAM request at the account's pace, again at each next
    /// turn while IAM throttles it, until the plan's throttling budget runs
    /// out. `send` makes the request anew each time.
    async fn paced<T, E, F, Fut>(&self, operation: &str, mut send: F) -> Result<T, IamError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let first_sent = Instant::now();
        loop {
            let turn = self.pacer.turn().await;
            match send().await {
                Ok(out) => {
                    self.pacer.accepted(&turn);
                    return Ok(out);
                }
                Err(err) if throttled(&err) => {
                    self.pacer.throttled(&turn, operation);
                    if Instant::now() >= pacing::throttle_deadline(first_sent) {
                        return Err(throttled_out(operation, err));
                    }
                    tracing::debug!(
                        operation,
                        "IAM {operation} throttled; retrying at this account's next turn"
                    );
                }
                Err(err) => {
                    if answered(&err) {
                        self.pacer.accepted(&turn);
                    }
                    return Err(map_err(operation, err));
                }
            }
        }
    }
}

impl AwsIam {
    /// One CreateAccessKey attempt that must end within `left`.
    ///
    /// No SDK retries here: CreateAccessKey has no idempotency token, and a
    /// retry after a lost answer turns "maybe created" into a LimitExceeded
    /// that hides it. One attempt keeps the answer honest; the engine's
    /// create intent covers the lost one. (A throttled attempt is asked
    /// again by the caller: IAM refused it, so nothing was created.)
    ///
    /// And a bounded wait: the SDK sets no operation or read timeout of its
    /// own (only connecting is bounded), so an unanswered call could
    /// otherwise hang for ever, and a key it made could carry any creation
    /// time. The orphan window is derived from this.
    async fn create_once(
        &self,
        user: &str,
        left: std::time::Duration,
    ) -> Result<
        aws_sdk_iam::operation::create_access_key::CreateAccessKeyOutput,
        SdkError<aws_sdk_iam::operation::create_access_key::CreateAccessKeyError, HttpResponse>,
    > {
        self.iam
            .create_access_key()
            .user_name(user)
            .customize()
            .config_override(
                aws_sdk_iam::Config::builder()
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_timeout(left)
                            .operation_attempt_timeout(left)
                            .build(),
                    ),
            )
            .send()
            .await
    }
}

/// Whether IAM answered (a 4xx): the request reached it and was judged.
fn answered<E>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(context) => context.raw().status().as_u16() < 500,
        _ => false,
    }
}

/// Whether IAM throttled the request (and so did not carry it out).
fn throttled<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(context) => {
            pacing::is_throttling(err.code(), context.raw().status().as_u16())
        }
        _ => false,
    }
}

/// The error of a request IAM kept throttling for the whole budget.
fn throttled_out<E>(operation: &str, err: SdkError<E, HttpResponse>) -> IamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or("Throttling").to_string();
    IamError::Other {
        operation: operation.into(),
        message: format!(
            "{code}: IAM kept throttling this plan's requests for {} minutes, so nothing more \
             was sent. Another tool may be using the account's IAM request quota: run again \
             later, or with --max-rps below the quota",
            pacing::PLAN_THROTTLE_BUDGET.as_secs() / 60
        ),
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
    let answered = answered(&err);
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
            .paced("GetUser", || self.iam.get_user().user_name(user).send())
            .await?;
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
        let mut users = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .paced("ListUsers", || {
                    self.iam
                        .list_users()
                        .set_path_prefix(path_prefix.map(str::to_string))
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
            users.extend(page.users().iter().map(|u| User {
                name: u.user_name().to_string(),
                arn: u.arn().to_string(),
                path: u.path().to_string(),
                created_at: to_chrono(u.create_date()),
            }));
            marker = page
                .marker()
                .filter(|_| page.is_truncated())
                .map(str::to_string);
            if marker.is_none() {
                return Ok(users);
            }
        }
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<LiveKey>, IamError> {
        let mut keys = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .paced("ListAccessKeys", || {
                    self.iam
                        .list_access_keys()
                        .user_name(user)
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
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
            marker = page
                .marker()
                .filter(|_| page.is_truncated())
                .map(str::to_string);
            if marker.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn create_access_key(&self, user: &str) -> Result<CreatedKey, IamError> {
        let first_sent = Instant::now();
        let mut out = loop {
            let turn = self.pacer.turn().await;
            let left = CREATE_ACCESS_KEY_TIMEOUT.saturating_sub(first_sent.elapsed());
            if left.is_zero() {
                return Err(IamError::Other {
                    operation: "CreateAccessKey".into(),
                    message: format!(
                        "not sent: its turn at this account's IAM request rate came more than \
                         {}s after it was due, so no key was created. Run again, with a higher \
                         --max-rps if one is set",
                        CREATE_ACCESS_KEY_TIMEOUT.as_secs()
                    ),
                });
            }
            match self.create_once(user, left).await {
                Ok(out) => {
                    self.pacer.accepted(&turn);
                    break out;
                }
                // Throttled: IAM did not create the key; ask again while the
                // answer can still come within the intent's window.
                Err(err) if throttled(&err) => {
                    self.pacer.throttled(&turn, "CreateAccessKey");
                    let now = Instant::now();
                    if now >= first_sent + CREATE_THROTTLE_WINDOW
                        || now >= pacing::throttle_deadline(first_sent)
                    {
                        return Err(map_err("CreateAccessKey", err));
                    }
                    tracing::debug!(
                        operation = "CreateAccessKey",
                        "IAM CreateAccessKey throttled; retrying at this account's next turn \
                         (IAM created nothing)"
                    );
                }
                Err(err) => {
                    if answered(&err) {
                        self.pacer.accepted(&turn);
                    }
                    return Err(map_err("CreateAccessKey", err));
                }
            }
        };
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
        self.paced("UpdateAccessKey", || {
            self.iam
                .update_access_key()
                .user_name(user)
                .access_key_id(key_id)
                .status(status.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), IamError> {
        self.paced("DeleteAccessKey", || {
            self.iam
                .delete_access_key()
                .user_name(user)
                .access_key_id(key_id)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn access_key_last_used(&self, key_id: &str) -> Result<LastUse, IamError> {
        let out = self
            .paced("GetAccessKeyLastUsed", || {
                self.iam
                    .get_access_key_last_used()
                    .access_key_id(key_id)
                    .send()
            })
            .await?;
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
