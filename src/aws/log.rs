//! One line per AWS request, for every SDK client this process builds:
//! service, operation, outcome and duration at info (`-v`), and each
//! attempt at debug (`-vv`). Only names, codes, statuses and times are
//! logged — never a request or response body, so never a secret.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// The structured fields of the request log's events; its messages say the
/// same, so text logs leave them out.
pub const FIELDS: &[&str] = &[
    "service",
    "operation",
    "outcome",
    "error",
    "attempt",
    "attempt_count",
    "status",
    "duration_ms",
];

/// The SDK interceptor that logs each request; see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestLog;

/// When the operation started, kept in the operation's config bag.
#[derive(Clone, Debug)]
struct Started(Instant);

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

/// The attempt under way and when it started.
#[derive(Clone, Debug)]
struct Attempt(u32, Instant);

impl Storable for Attempt {
    type Storer = StoreReplace<Self>;
}

/// The service's short name as the CLI and IAM policies spell it.
fn service(metadata: Option<&Metadata>) -> String {
    let Some(metadata) = metadata else {
        return "aws".into();
    };
    match metadata.service().to_ascii_lowercase().as_str() {
        "secrets manager" | "secretsmanager" => "secretsmanager".into(),
        other => other.replace(' ', ""),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// An operation error's code, from its display ("LimitExceeded: …" or
/// "unhandled error (AccessDenied)"); the message after the code can name
/// resources, so it is dropped.
pub fn error_code(display: &str) -> String {
    if display == "unhandled error" {
        return "ServiceError".into();
    }
    let code = display
        .strip_prefix("unhandled error (")
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| display.split([':', ' ']).next().unwrap_or(""));
    let code = code.trim().trim_end_matches("Exception");
    if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
        "ServiceError".into()
    } else {
        code.to_string()
    }
}

/// `ok`, or the error's code: `AccessDenied`, `Throttling`, `timeout`, …
fn outcome(context: &FinalizerInterceptorContextRef<'_>) -> Option<String> {
    let error = match context.output_or_error() {
        Some(Ok(_)) => return None,
        Some(Err(e)) => e,
        None => {
            let status = context.response().map(|r| r.status().as_u16());
            return Some(status.map_or_else(|| "unknown".into(), |s| format!("http{s}")));
        }
    };
    Some(if let Some(e) = error.as_operation_error() {
        error_code(&e.to_string())
    } else if error.is_timeout_error() {
        "timeout".into()
    } else if error.is_connector_error() {
        "connection".into()
    } else if error.is_response_error() {
        "bad-response".into()
    } else {
        "client".into()
    })
}

impl Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "iam-rotate request log"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Started(Instant::now()));
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<Attempt>().map_or(1, |a| a.0 + 1);
        cfg.interceptor_state()
            .store_put(Attempt(attempt, Instant::now()));
        let metadata = cfg.load::<Metadata>();
        let service = service(metadata);
        let operation = metadata.map_or("unknown", |m| m.name());
        tracing::debug!(
            service,
            operation,
            attempt,
            "{service} {operation} attempt {attempt}"
        );
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Attempt(attempt, started)) = cfg.load::<Attempt>().cloned() else {
            return Ok(());
        };
        let duration_ms = millis(started.elapsed());
        let metadata = cfg.load::<Metadata>();
        let service = service(metadata);
        let operation = metadata.map_or("unknown", |m| m.name());
        let status = context.response().map_or_else(
            || "no response".to_string(),
            |r| r.status().as_u16().to_string(),
        );
        tracing::debug!(
            service,
            operation,
            attempt,
            status,
            duration_ms,
            "{service} {operation} attempt {attempt} status {status} {duration_ms}ms"
        );
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let duration_ms = cfg.load::<Started>().map_or(0, |s| millis(s.0.elapsed()));
        let attempts = cfg.load::<Attempt>().map_or(0, |a| a.0);
        let metadata = cfg.load::<Metadata>();
        let service = service(metadata);
        let operation = metadata.map_or("unknown", |m| m.name());
        match outcome(context) {
            None => tracing::info!(
                service,
                operation,
                outcome = "ok",
                attempt_count = attempts,
                duration_ms,
                "{service} {operation} ok {duration_ms}ms"
            ),
            Some(error) => tracing::info!(
                service,
                operation,
                outcome = "error",
                error,
                attempt_count = attempts,
                duration_ms,
                "{service} {operation} error {error} {duration_ms}ms"
            ),
        }
        Ok(())
    }
}

/// The IAM client, logging its requests.
pub fn iam(config: &SdkConfig) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(config)
            .interceptor(RequestLog)
            .build(),
    )
}

/// The IAM client, logging its requests, that leaves throttled requests
/// to the account's pacer instead of retrying them itself.
pub fn iam_paced(config: &SdkConfig) -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(config)
            .interceptor(RequestLog)
            .retry_classifier(super::pacing::ThrottlesArePaced)
            .build(),
    )
}

/// The STS client, logging its requests.
pub fn sts(config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::from_conf(
        aws_sdk_sts::config::Builder::from(config)
            .interceptor(RequestLog)
            .build(),
    )
}

/// The SSM client, logging its requests.
pub fn ssm(config: &SdkConfig) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(config)
            .interceptor(RequestLog)
            .build(),
    )
}

/// A Secrets Manager config builder that logs its requests; the caller may
/// change its region.
pub fn secretsmanager(config: &SdkConfig) -> aws_sdk_secretsmanager::config::Builder {
    aws_sdk_secretsmanager::config::Builder::from(config).interceptor(RequestLog)
}

/// An SNS config builder that logs its requests; the caller may change
/// its region (a topic's ARN names its own).
pub fn sns(config: &SdkConfig) -> aws_sdk_sns::config::Builder {
    aws_sdk_sns::config::Builder::from(config).interceptor(RequestLog)
}

#[cfg(test)]
mod tests {
    use super::error_code;

    #[test]
    fn error_codes_keep_the_code_and_drop_the_message() {
        assert_eq!(error_code("unhandled error (AccessDenied)"), "AccessDenied");
        assert_eq!(
            error_code("LimitExceededException: Cannot exceed quota for AccessKeysPerUser: 2"),
            "LimitExceeded"
        );
        assert_eq!(
            error_code("NoSuchEntity: The user with name bob cannot be found."),
            "NoSuchEntity"
        );
        assert_eq!(error_code("unhandled error"), "ServiceError");
        assert_eq!(error_code(""), "ServiceError");
    }
}
