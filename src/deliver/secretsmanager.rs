//! `secretsmanager:NAME_OR_ARN`: the key as a JSON secret
//! (`{"AccessKeyId","SecretAccessKey"}`). A missing secret is created; an
//! existing one gets a new version, which Secrets Manager itself labels
//! AWSCURRENT while the version before keeps AWSPREVIOUS (so the old key
//! stays at hand for a rollback).

use aws_config::SdkConfig;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use aws_sdk_secretsmanager::Client;
use aws_types::region::Region;

use super::{aws_failure, aws_message, json, DeliverError, Destination, Held};
use crate::iam::CreatedKey;

/// What is needed on the secret, for messages.
const PERMISSIONS: &str = "secretsmanager:DescribeSecret, secretsmanager:CreateSecret and \
                           secretsmanager:PutSecretValue to write the key, \
                           secretsmanager:GetSecretValue to read it back, and \
                           secretsmanager:UpdateSecretVersionStage (or DeleteSecret for a secret \
                           it created) to undo a delivery that failed, all on the secret (and \
                           kms:GenerateDataKey and kms:Decrypt on its KMS key when it is a \
                           customer-managed one)";

/// A client for the secret's region: an ARN names its region, which may not
/// be the configured one.
pub(super) fn client(config: &SdkConfig, secret_id: &str) -> Client {
    match arn_region(secret_id) {
        Some(region) if config.region().map(|r| r.as_ref()) != Some(region) => {
            let conf = crate::aws::log::secretsmanager(config)
                .region(Region::new(region.to_string()))
                .build();
            Client::from_conf(conf)
        }
        _ => Client::from_conf(crate::aws::log::secretsmanager(config).build()),
    }
}

/// `arn:aws:secretsmanager:eu-west-1:123456789012:secret:name` → `eu-west-1`.
fn arn_region(secret_id: &str) -> Option<&str> {
    let mut parts = secret_id.strip_prefix("arn:")?.split(':');
    let (_partition, service, region) = (parts.next()?, parts.next()?, parts.next()?);
    (service == "secretsmanager" && !region.is_empty()).then_some(region)
}

/// The secret as DescribeSecret shows it.
enum Existing {
    /// No such secret: it will be created.
    Missing,
    /// It exists; the version labelled AWSCURRENT, if any.
    Present { current: Option<String> },
}

async fn describe(
    client: &Client,
    destination: &Destination,
    secret_id: &str,
) -> Result<Existing, DeliverError> {
    match client.describe_secret().secret_id(secret_id).send().await {
        Ok(out) => {
            if out.deleted_date().is_some() {
                return Err(DeliverError::failed(
                    destination,
                    format!(
                        "the secret is scheduled for deletion. Restore it (`aws secretsmanager \
                         restore-secret --secret-id {secret_id}`) or choose another name"
                    ),
                ));
            }
            let current = out.version_ids_to_stages().and_then(|versions| {
                versions
                    .iter()
                    .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                    .map(|(version, _)| version.clone())
            });
            Ok(Existing::Present { current })
        }
        Err(e) if e.code() == Some("ResourceNotFoundException") => {
            if secret_id.starts_with("arn:") {
                return Err(DeliverError::failed(
                    destination,
                    "no secret has this ARN, and a secret cannot be created by ARN. Give its \
                     name instead (secretsmanager:NAME) to have it created",
                ));
            }
            Ok(Existing::Missing)
        }
        Err(e) => Err(aws_failure(
            destination,
            "DescribeSecret",
            &e,
            PERMISSIONS,
            &[],
        )),
    }
}

/// Before any key exists: the secret is reachable, and when it exists, its
/// value can be read and decrypted. Without that the read-back after the
/// write would be denied, the undo (which needs the same access) too, and
/// the secret would be left holding a key that is then deleted.
pub(super) async fn check(
    client: &Client,
    destination: &Destination,
    secret_id: &str,
) -> Result<(), DeliverError> {
    match describe(client, destination, secret_id).await? {
        Existing::Missing => Ok(()),
        Existing::Present { .. } => prove_readable(client, destination, secret_id).await,
    }
}

/// GetSecretValue on the current version; the value is wiped at once.
async fn prove_readable(
    client: &Client,
    destination: &Destination,
    secret_id: &str,
) -> Result<(), DeliverError> {
    match client.get_secret_value().secret_id(secret_id).send().await {
        Ok(mut out) => {
            drop(zeroize::Zeroizing::new(
                out.secret_string.take().unwrap_or_default(),
            ));
            drop(zeroize::Zeroizing::new(
                out.secret_binary
                    .take()
                    .map(|b| b.into_inner())
                    .unwrap_or_default(),
            ));
            Ok(())
        }
        // A secret with no current value yet: nothing to read.
        Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
        Err(e) => Err(DeliverError::failed(
            destination,
            format!(
                "{}. Without it the new key could not be read back after writing it, nor the \
                 secret put back as it was",
                aws_message(
                    "GetSecretValue (reading the secret before any key is created)",
                    &e,
                    PERMISSIONS,
                    &[]
                )
            ),
        )),
    }
}

/// The access key id the secret's AWSCURRENT version names, read as the
/// read-back reads it; the value is wiped at once.
pub(super) async fn held(client: &Client, secret_id: &str) -> Held {
    match client.get_secret_value().secret_id(secret_id).send().await {
        Ok(mut out) => {
            drop(zeroize::Zeroizing::new(
                out.secret_binary
                    .take()
                    .map(|b| b.into_inner())
                    .unwrap_or_default(),
            ));
            let value = zeroize::Zeroizing::new(out.secret_string.take().unwrap_or_default());
            json::key_id_of(&value)
                .map(Held::Key)
                .unwrap_or(Held::Nothing)
        }
        // No such secret, or no AWSCURRENT version yet.
        Err(e) if e.code() == Some("ResourceNotFoundException") => Held::Nothing,
        Err(e) => Held::Unknown(aws_message("GetSecretValue", &e, PERMISSIONS, &[])),
    }
}

/// What the write did, so a failed read-back can be undone.
enum Written {
    Created,
    NewVersion {
        version: Option<String>,
        previous: Option<String>,
    },
}

pub(super) async fn deliver(
    client: &Client,
    destination: &Destination,
    secret_id: &str,
    key: &CreatedKey,
) -> Result<(), DeliverError> {
    let document = json::document(key);
    let existing = describe(client, destination, secret_id).await?;
    let written = match existing {
        Existing::Present { current } => {
            put(client, destination, secret_id, &document, current).await?
        }
        Existing::Missing => {
            let created = client
                .create_secret()
                .name(secret_id)
                .description("An IAM user's access key, written by iam-rotate")
                .secret_string(document.as_str())
                .send()
                .await;
            match created {
                Ok(_) => Written::Created,
                // Created by someone else since DescribeSecret: add a version.
                Err(e) if e.code() == Some("ResourceExistsException") => {
                    let current = match describe(client, destination, secret_id).await? {
                        Existing::Present { current } => current,
                        Existing::Missing => None,
                    };
                    put(client, destination, secret_id, &document, current).await?
                }
                Err(e) => {
                    return Err(aws_failure(
                        destination,
                        "CreateSecret",
                        &e,
                        PERMISSIONS,
                        &[document.as_str()],
                    ))
                }
            }
        }
    };
    drop(document);

    let problem = match client.get_secret_value().secret_id(secret_id).send().await {
        Ok(mut out) => {
            let value = zeroize::Zeroizing::new(out.secret_string.take().unwrap_or_default());
            match json::key_id_of(&value) {
                Some(id) if id == key.id => return Ok(()),
                Some(_) => "reading it back (GetSecretValue) found another key id; something \
                            else writes this secret at the same time"
                    .to_string(),
                None => "reading it back (GetSecretValue) found no AccessKeyId".to_string(),
            }
        }
        Err(e) => aws_message("GetSecretValue", &e, PERMISSIONS, &[]),
    };
    let undo = undo(client, secret_id, &written).await;
    Err(DeliverError::failed(
        destination,
        format!("{problem}; {undo}"),
    ))
}

/// PutSecretValue: a new version, labelled AWSCURRENT by Secrets Manager.
async fn put(
    client: &Client,
    destination: &Destination,
    secret_id: &str,
    document: &str,
    previous: Option<String>,
) -> Result<Written, DeliverError> {
    let out = client
        .put_secret_value()
        .secret_id(secret_id)
        .secret_string(document)
        .send()
        .await
        .map_err(|e| aws_failure(destination, "PutSecretValue", &e, PERMISSIONS, &[document]))?;
    Ok(Written::NewVersion {
        version: out.version_id().map(str::to_string),
        previous,
    })
}

/// Takes the new value back out of service, and says how that went.
async fn undo(client: &Client, secret_id: &str, written: &Written) -> String {
    match written {
        Written::Created => match client
            .delete_secret()
            .secret_id(secret_id)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => "the secret created for it was deleted again".into(),
            Err(e) => format!(
                "deleting the secret created for it failed too ({}); delete it by hand: `aws \
                 secretsmanager delete-secret --secret-id {secret_id} \
                 --force-delete-without-recovery`",
                e.message().unwrap_or("no message")
            ),
        },
        Written::NewVersion {
            version: Some(version),
            previous: Some(previous),
        } => match client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage("AWSCURRENT")
            .move_to_version_id(previous)
            .remove_from_version_id(version)
            .send()
            .await
        {
            Ok(_) => format!("AWSCURRENT was moved back to the previous version {previous}"),
            Err(e) => format!(
                "moving AWSCURRENT back failed too ({}); do it by hand: `aws secretsmanager \
                 update-secret-version-stage --secret-id {secret_id} --version-stage AWSCURRENT \
                 --move-to-version-id {previous} --remove-from-version-id {version}`",
                e.message().unwrap_or("no message")
            ),
        },
        Written::NewVersion { .. } => format!(
            "the secret had no earlier AWSCURRENT version to move back to; check {secret_id} by \
             hand"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_names_the_region_to_call() {
        assert_eq!(
            arn_region("arn:aws:secretsmanager:eu-west-1:123456789012:secret:iam/alice-AbCdEf"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x"),
            Some("cn-north-1")
        );
        assert_eq!(arn_region("iam/123456789012/alice"), None);
        assert_eq!(arn_region("arn:aws:ssm:eu-west-1:1:parameter/x"), None);
    }
}
