//! AWS: one place that builds the SDK configuration from the standard chain
//! (profile, region, endpoint, retries, an optional role to assume), and the
//! [`crate::iam::Iam`] implementation over aws-sdk-iam and STS, its IAM
//! requests paced at the account's rate limit ([`pacing`]).

mod client;
pub mod credentials;
pub mod log;
pub mod org;
pub mod pacing;

pub use client::AwsIam;

pub use aws_config::retry::RetryMode;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_types::sdk_config::SharedCredentialsProvider;

/// What the command line says about AWS; the environment (AWS_PROFILE,
/// AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_IAM, …) fills the rest.
#[derive(Clone, Debug, Default)]
pub struct AwsArgs {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Attempts per call, including the first, for throttling and 5xx.
    pub max_attempts: Option<u32>,
    /// `Standard` (the default) backs off per call; `Adaptive` also
    /// rate-limits the whole client once AWS throttles.
    pub retry_mode: Option<RetryMode>,
    /// `--max-rps`: at most this many IAM requests per second in each
    /// account (see [`pacing`]).
    pub max_rps: Option<f64>,
    /// Assume this role (STS AssumeRole) with the credentials found above.
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires.
    pub external_id: Option<String>,
}

/// Attempts per call when nothing says otherwise, for 5xx answers and
/// broken connections: few enough to fail in seconds when the endpoint is
/// down. (IAM throttling is retried by the account's pacer, not counted
/// here, unless `--retry-mode adaptive` hands it to the SDK.)
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The session name on every assumed-role session, so CloudTrail shows
/// which changes iam-rotate made.
pub const SESSION_NAME: &str = "iam-rotate";

/// IAM is global; its calls are signed for us-east-1 when no region is set.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The SDK's retry policy for 5xx answers and broken connections: its
/// standard mode (exponential backoff with jitter, per call) unless told
/// otherwise. IAM throttling is left to [`pacing`]. Adaptive mode instead
/// lets the SDK's own client-side rate limiter and retries handle
/// throttling (measured against iam-rotate's pacing in BENCHMARKS.md).
pub fn retry_config(args: &AwsArgs) -> RetryConfig {
    let base = match args.retry_mode.unwrap_or(RetryMode::Standard) {
        RetryMode::Adaptive => RetryConfig::adaptive(),
        _ => RetryConfig::standard(),
    };
    base.with_max_attempts(args.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS))
        .with_initial_backoff(std::time::Duration::from_millis(200))
}

/// Builds the one SDK configuration every client of this process uses.
pub async fn load_config(args: &AwsArgs) -> SdkConfig {
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).retry_config(retry_config(args));
    if let Some(profile) = &args.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let mut config = loader.load().await;
    if config.region().is_none() {
        config = config
            .into_builder()
            .region(Region::from_static(DEFAULT_REGION))
            .build();
    }
    let Some(role_arn) = &args.role_arn else {
        return config;
    };
    // The role is assumed lazily, on the first call, with the credentials
    // found above; the process's identity cache keeps the session.
    let mut role = AssumeRoleProvider::builder(role_arn.clone()).session_name(SESSION_NAME);
    if let Some(external_id) = &args.external_id {
        role = role.external_id(external_id.clone());
    }
    let provider = role.configure(&config).build().await;
    config
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_standard_and_bounded_unless_told_otherwise() {
        let default = retry_config(&AwsArgs::default());
        assert_eq!(default.mode(), RetryMode::Standard);
        assert_eq!(default.max_attempts(), DEFAULT_MAX_ATTEMPTS);
        let told = retry_config(&AwsArgs {
            retry_mode: Some(RetryMode::Adaptive),
            max_attempts: Some(2),
            ..AwsArgs::default()
        });
        assert_eq!(told.mode(), RetryMode::Adaptive);
        assert_eq!(told.max_attempts(), 2);
    }
}
