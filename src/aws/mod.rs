//! AWS: one place that builds the SDK configuration from the standard chain
//! (profile, region, endpoint, retries), and the [`crate::iam::Iam`]
//! implementation over aws-sdk-iam and STS.

mod client;

pub use client::AwsIam;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// What the command line says about AWS; the environment (AWS_PROFILE,
/// AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_IAM, …) fills the rest.
#[derive(Clone, Debug, Default)]
pub struct AwsArgs {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Attempts per call, including the first, for throttling and 5xx.
    pub max_attempts: Option<u32>,
}

/// IAM is global; its calls are signed for us-east-1 when no region is set.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Builds the one SDK configuration every client of this process uses.
pub async fn load_config(args: &AwsArgs) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
        RetryConfig::standard()
            .with_max_attempts(args.max_attempts.unwrap_or(5))
            .with_initial_backoff(std::time::Duration::from_millis(200)),
    );
    if let Some(profile) = &args.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_some() {
        config
    } else {
        config
            .into_builder()
            .region(Region::from_static(DEFAULT_REGION))
            .build()
    }
}
