//! `sns:TOPIC_ARN`: SNS Publish of the notice, with a subject for email
//! subscribers. The client is built from the process's one SDK
//! configuration, in the topic's own region.

use aws_config::SdkConfig;
use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_types::region::Region;

use super::{Notice, Target};

/// SNS refuses a subject longer than this.
const MAX_SUBJECT: usize = 100;

pub(super) async fn publish(
    sdk: &SdkConfig,
    target: &Target,
    notice: &Notice,
) -> Result<(), String> {
    let Target::Sns { topic_arn } = target else {
        return Err("not an SNS topic".into());
    };
    let mut config = crate::aws::log::sns(sdk);
    if let Some(region) = target.sns_region() {
        config = config.region(Region::new(region.to_string()));
    }
    let client = aws_sdk_sns::Client::from_conf(config.build());
    let mut subject = format!("iam-rotate: {} {}", notice.user, notice.event);
    subject.truncate(MAX_SUBJECT);
    client
        .publish()
        .topic_arn(topic_arn)
        .subject(subject)
        .message(notice.to_json())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("SNS Publish: {code}: {message}"),
            (Some(code), None) => format!("SNS Publish: {code}"),
            _ => format!("SNS Publish: {}", DisplayErrorContext(&e)),
        })
}
