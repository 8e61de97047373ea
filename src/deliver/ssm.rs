//! `ssm:/PARAMETER/NAME`: the key as a SecureString parameter holding the
//! same JSON as the Secrets Manager destination, overwritten on each
//! rotation (SSM keeps the earlier versions in the parameter's history).

use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::operation::get_parameter::GetParameterError;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType};
use aws_sdk_ssm::Client;

use super::{aws_failure, aws_message, json, DeliverError, Destination, Held};
use crate::iam::CreatedKey;

/// What is needed on the parameter, for messages.
const PERMISSIONS: &str = "ssm:GetParameter (with decryption) to read the key back and to undo a \
                           delivery that failed, ssm:DescribeParameters to keep the parameter's \
                           KMS key, ssm:PutParameter to write it and ssm:DeleteParameter to undo \
                           a parameter it created (and kms:Encrypt and kms:Decrypt on the \
                           parameter's KMS key when it is a customer-managed one)";

/// The longest parameter name SSM accepts.
const MAX_NAME_LENGTH: usize = 1011;
/// The deepest parameter hierarchy SSM accepts.
const MAX_DEPTH: usize = 15;

/// SSM's rules for a parameter name, checked before any key exists.
pub fn validate_name(name: &str) -> Result<(), String> {
    let Some(path) = name.strip_prefix('/') else {
        return Err("an SSM parameter name for iam-rotate starts with /".into());
    };
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!(
            "the name is {} characters long; SSM allows {MAX_NAME_LENGTH}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_.-/".contains(*c)))
    {
        return Err(format!(
            "the name holds {bad:?}; SSM allows only letters, digits, _ . - and /"
        ));
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("the name has an empty level (// or a trailing /)".into());
    }
    if segments.len() > MAX_DEPTH {
        return Err(format!(
            "the name is {} levels deep; SSM allows {MAX_DEPTH}",
            segments.len()
        ));
    }
    let first = segments[0].to_ascii_lowercase();
    if first.starts_with("aws") || first.starts_with("ssm") {
        return Err(format!(
            "SSM reserves names whose first level starts with \"aws\" or \"ssm\" (here \
             \"/{}\"); choose another name, for example /iam-rotate{name}",
            segments[0]
        ));
    }
    Ok(())
}

/// An existing parameter as it was before the write.
struct Existing {
    version: i64,
    /// The KMS key that encrypts it. Every overwrite passes it on: without
    /// a KeyId, PutParameter may encrypt with the account's default
    /// `alias/aws/ssm` key, quietly widening who can decrypt the secret.
    key_id: String,
}

/// The parameter as it is now: `None` when missing. It is read the way the
/// read-back and the undo will read it, with decryption, so a caller who
/// could write but not read or decrypt is stopped before any key exists
/// (the value is wiped at once); and its KMS key is looked up.
async fn existing(
    client: &Client,
    destination: &Destination,
    name: &str,
) -> Result<Option<Existing>, DeliverError> {
    let version =
        match client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(mut out) => {
                let Some(parameter) = out.parameter.as_mut() else {
                    return Ok(None);
                };
                drop(zeroize::Zeroizing::new(
                    parameter.value.take().unwrap_or_default(),
                ));
                if parameter.r#type() != Some(&ParameterType::SecureString) {
                    return Err(DeliverError::failed(
                        destination,
                        format!(
                        "the parameter exists as a {} parameter; a secret is only ever written \
                         into a SecureString. Delete it (`aws ssm delete-parameter --name \
                         {name}`) or choose another name",
                        parameter.r#type().map(|t| t.as_str()).unwrap_or("plain")
                    ),
                    ));
                }
                parameter.version()
            }
            Err(e) if e.code() == Some("ParameterNotFound") => return Ok(None),
            Err(e) => return Err(aws_failure(
                destination,
                "GetParameter with decryption (reading the parameter before any key is created)",
                &e,
                PERMISSIONS,
                &[],
            )),
        };
    let key_id = kms_key_id(client, destination, name).await?;
    Ok(Some(Existing { version, key_id }))
}

/// The KMS key of the SecureString `name`, from DescribeParameters.
async fn kms_key_id(
    client: &Client,
    destination: &Destination,
    name: &str,
) -> Result<String, DeliverError> {
    let filter = ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(name)
        .build()
        .map_err(|e| DeliverError::failed(destination, e.to_string()))?;
    let out = client
        .describe_parameters()
        .parameter_filters(filter)
        .send()
        .await
        .map_err(|e| aws_failure(destination, "DescribeParameters", &e, PERMISSIONS, &[]))?;
    out.parameters()
        .iter()
        .find(|p| p.name() == Some(name))
        .and_then(|p| p.key_id())
        .map(str::to_string)
        .ok_or_else(|| {
            DeliverError::failed(
                destination,
                "DescribeParameters did not name the parameter's KMS key, and overwriting it \
                 without that could change the key that encrypts it; check the parameter \
                 (`aws ssm describe-parameters`) and run again",
            )
        })
}

/// The access key id the parameter's JSON document names (`Ok(None)`:
/// none), read with decryption; the value is wiped at once.
async fn read_key_id(
    client: &Client,
    name: &str,
) -> Result<Option<String>, SdkError<GetParameterError, HttpResponse>> {
    let mut out = client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await?;
    let value = zeroize::Zeroizing::new(
        out.parameter
            .as_mut()
            .and_then(|p| p.value.take())
            .unwrap_or_default(),
    );
    Ok(json::key_id_of(&value))
}

/// The access key id the parameter names, read as the read-back reads it.
pub(super) async fn held(client: &Client, name: &str) -> Held {
    match read_key_id(client, name).await {
        Ok(id) => id.map(Held::Key).unwrap_or(Held::Nothing),
        Err(e) if e.code() == Some("ParameterNotFound") => Held::Nothing,
        Err(e) => Held::Unknown(aws_message(
            "GetParameter with decryption",
            &e,
            PERMISSIONS,
            &[],
        )),
    }
}

pub(super) async fn check(
    client: &Client,
    destination: &Destination,
    name: &str,
) -> Result<(), DeliverError> {
    validate_name(name).map_err(|m| DeliverError::failed(destination, m))?;
    existing(client, destination, name).await.map(drop)
}

pub(super) async fn deliver(
    client: &Client,
    destination: &Destination,
    name: &str,
    key: &CreatedKey,
) -> Result<(), DeliverError> {
    validate_name(name).map_err(|m| DeliverError::failed(destination, m))?;
    let previous = existing(client, destination, name).await?;
    let document = json::document(key);
    // PutParameter either stores the whole value or nothing.
    client
        .put_parameter()
        .name(name)
        .value(document.as_str())
        .r#type(ParameterType::SecureString)
        .set_key_id(previous.as_ref().map(|p| p.key_id.clone()))
        .overwrite(true)
        .send()
        .await
        .map_err(|e| {
            aws_failure(
                destination,
                "PutParameter",
                &e,
                PERMISSIONS,
                &[document.as_str()],
            )
        })?;
    drop(document);

    let problem = match read_key_id(client, name).await {
        Ok(id) => match id {
            Some(id) if id == key.id => return Ok(()),
            Some(_) => "reading it back (GetParameter) found another key id; something else \
                        writes this parameter at the same time"
                .to_string(),
            None => "reading it back (GetParameter) found no AccessKeyId".to_string(),
        },
        Err(e) => aws_message("GetParameter", &e, PERMISSIONS, &[]),
    };
    let undo = undo(client, name, previous.as_ref()).await;
    Err(DeliverError::failed(
        destination,
        format!("{problem}; {undo}"),
    ))
}

/// Puts the parameter back as it was before the write, and says how that
/// went.
async fn undo(client: &Client, name: &str, previous: Option<&Existing>) -> String {
    let Some(&Existing {
        version,
        ref key_id,
    }) = previous
    else {
        return match client.delete_parameter().name(name).send().await {
            Ok(_) => "the parameter created for it was deleted again".into(),
            Err(e) => format!(
                "deleting the parameter created for it failed too ({}); delete it by hand: `aws \
                 ssm delete-parameter --name {name}`",
                e.message().unwrap_or("no message")
            ),
        };
    };
    let restored = async {
        let mut out = client
            .get_parameter()
            .name(format!("{name}:{version}"))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| e.message().unwrap_or("no message").to_string())?;
        let value = zeroize::Zeroizing::new(
            out.parameter
                .as_mut()
                .and_then(|p| p.value.take())
                .unwrap_or_default(),
        );
        client
            .put_parameter()
            .name(name)
            .value(value.as_str())
            .r#type(ParameterType::SecureString)
            .key_id(key_id)
            .overwrite(true)
            .send()
            .await
            .map(drop)
            .map_err(|e| super::scrub_secret_shaped(e.message().unwrap_or("no message")))
    };
    match restored.await {
        Ok(()) => format!("the value of version {version} was put back"),
        Err(message) => format!(
            "putting version {version}'s value back failed too ({message}); restore it by hand \
             from the parameter's history (`aws ssm get-parameter-history --name {name} \
             --with-decryption`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_hierarchies_are_accepted() {
        for name in [
            "/iam/alice",
            "/iam-rotate/123456789012/alice.key",
            "/prod/app_1/AccessKey",
            "/a",
            "/awx/x",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn reserved_prefixes_are_refused_in_any_case() {
        for name in [
            "/aws/x",
            "/AWS/x",
            "/awsome/x",
            "/ssm/x",
            "/Ssm-params/x",
            "/aws",
        ] {
            let err = validate_name(name).unwrap_err();
            assert!(err.contains("reserves"), "{name}: {err}");
        }
    }

    #[test]
    fn malformed_names_are_refused_with_the_reason() {
        let cases = [
            ("iam/alice", "starts with /"),
            ("/iam//alice", "empty level"),
            ("/iam/alice/", "empty level"),
            ("/iam/al ice", "' '"),
            ("/iam/alice$", "'$'"),
        ];
        for (name, words) in cases {
            let err = validate_name(name).unwrap_err();
            assert!(err.contains(words), "{name}: {err}");
        }
        let deep = "/a".repeat(16);
        assert!(validate_name(&deep).unwrap_err().contains("15"));
        let long = format!("/{}", "a".repeat(1011));
        assert!(validate_name(&long).unwrap_err().contains("1011"));
    }
}
