//! `sns:TOPIC_ARN`: SNS Publish of the notice, with a subject for email
//! subscribers. The client is built from the process's one SDK
//! configuration, in the topic's own region.

use aws_config::SdkConfig;
use aws_sdk_sns::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_types::region::Region;
use sha2::{Digest, Sha256};

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
    let message = notice.to_json();
    // A FIFO topic needs a group (one per plan keeps a plan's notices in
    // order) and, unless it deduplicates by content, an id: the body's
    // digest, so that a notice retried within SNS's five-minute window is
    // delivered once.
    let fifo = topic_arn.ends_with(".fifo");
    let group = fifo.then(|| format!("{}/{}", notice.account, notice.user));
    let dedup = fifo.then(|| {
        Sha256::digest(message.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    client
        .publish()
        .topic_arn(topic_arn)
        .set_subject((!fifo).then_some(subject))
        .message(message)
        .set_message_group_id(group)
        .set_message_deduplication_id(dedup)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("SNS Publish: {code}: {message}"),
            (Some(code), None) => format!("SNS Publish: {code}"),
            _ => format!("SNS Publish: {}", DisplayErrorContext(&e)),
        })
}
