//! The credentials side of self-rotation: which key the SDK signs with, and
//! an SDK configuration (and IAM client) that signs with the new key, read
//! back from the profile it was delivered to.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use aws_config::SdkConfig;
use aws_sdk_sts::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use secrecy::{ExposeSecret, SecretString};

use super::AwsIam;
use crate::deliver::profile;
use crate::engine::self_rotation::NewKeySigner;
use crate::iam::Iam;
use crate::plan::mask_key;

/// The IAM user name in a caller ARN, or why the caller is not an IAM user.
pub fn iam_user_of(arn: &str) -> Result<&str, String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(service), Some(_), Some(_account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(format!("the caller ARN {arn:?} is not an ARN"));
    };
    if service == "iam" {
        if let Some(path_and_name) = resource.strip_prefix("user/") {
            if let Some(name) = path_and_name.rsplit('/').next().filter(|n| !n.is_empty()) {
                return Ok(name);
            }
        }
    }
    let what = if resource == "root" {
        "the account's root user, whose access keys should not exist at all (AWS advises \
         deleting them)"
            .to_string()
    } else if resource.starts_with("assumed-role/") {
        "an assumed role, whose credentials are temporary and are renewed by their source, not \
         rotated"
            .to_string()
    } else if resource.starts_with("federated-user/") {
        "a federated user, whose credentials are temporary".to_string()
    } else {
        format!("something that is not an IAM user ({resource})")
    };
    Err(format!(
        "self-rotate rotates the access key of an IAM user, but the credentials in use belong to \
         {what} ({arn}). Run it with --profile naming a profile that holds an IAM user's \
         long-term access key"
    ))
}

/// The key the SDK signs with now: a long-term key, without a session
/// token.
pub async fn key_in_use(config: &SdkConfig) -> anyhow::Result<Credentials> {
    let provider = config.credentials_provider().ok_or_else(|| {
        anyhow!("no AWS credentials are configured; set --profile or AWS_PROFILE")
    })?;
    let credentials = provider
        .provide_credentials()
        .await
        .context("cannot load the AWS credentials in use")?;
    if credentials.session_token().is_some() && credentials.access_key_id().starts_with("AKIA") {
        bail!(
            "the credentials in use pair the long-term key {} with a session token, which AWS \
             rejects; remove aws_session_token from the profile (or unset AWS_SESSION_TOKEN) \
             and run again",
            mask_key(credentials.access_key_id())
        );
    }
    if credentials.session_token().is_some() {
        bail!(
            "the credentials in use are temporary (key {}, with a session token): self-rotate \
             rotates an IAM user's long-term access key kept in the shared credentials file. Run \
             it with --profile naming the profile that holds that key",
            mask_key(credentials.access_key_id())
        );
    }
    Ok(credentials)
}

/// The key in use must be the one in the profile self-rotate rewrites;
/// otherwise the profile would get a key while something else keeps
/// signing with the old one.
pub fn check_profile_holds(file: &Path, profile: &str, in_use: &str) -> anyhow::Result<()> {
    let text = profile::read_file(file)
        .with_context(|| format!("cannot read the credentials file {}", file.display()))?
        .unwrap_or_default();
    let held = profile::read_key(&text, profile)
        .map_err(|e| anyhow!("{}, {e}. Fix the file and run again", file.display()))?;
    let found = match &held {
        None => format!("there is no profile [{profile}] in {}", file.display()),
        Some(key) => match key.key_id.as_deref() {
            Some(id) if id == in_use => return Ok(()),
            Some(id) => format!(
                "profile [{profile}] in {} holds the key {}",
                file.display(),
                mask_key(id)
            ),
            None => format!(
                "profile [{profile}] in {} holds no aws_access_key_id",
                file.display()
            ),
        },
    };
    bail!(
        "the credentials in use are the key {}, but {found}. self-rotate only rotates the key \
         of the profile it signs with. Check that AWS_ACCESS_KEY_ID is not set in the \
         environment (it wins over any profile) and that the profile's key is in the shared \
         credentials file, not in ~/.aws/config",
        mask_key(in_use)
    )
}

/// Signs with a new key whose secret was written into `profile` of the
/// credentials file `file`.
pub struct ProfileSigner {
    pub config: SdkConfig,
    pub file: PathBuf,
    pub profile: String,
    pub user: String,
}

impl NewKeySigner for ProfileSigner {
    fn iam_with(&self, key_id: &str) -> Result<Box<dyn Iam>, String> {
        let secret = new_key_secret(&self.file, &self.profile, key_id, &self.user)
            .map_err(|e| format!("{e:#}"))?;
        Ok(Box::new(AwsIam::new(&with_key(
            &self.config,
            key_id,
            &secret,
        ))))
    }
}

/// The new key's secret, read back from the profile it was written to.
fn new_key_secret(
    file: &Path,
    profile: &str,
    new_key_id: &str,
    user: &str,
) -> anyhow::Result<SecretString> {
    let text = profile::read_file(file)
        .with_context(|| format!("cannot read the credentials file {}", file.display()))?
        .unwrap_or_default();
    let held = profile::read_key(&text, profile)
        .map_err(|e| anyhow!("{}, {e}. Fix the file and run again", file.display()))?;
    match held {
        Some(profile::ProfileKey {
            key_id: Some(id),
            secret: Some(secret),
            ..
        }) if id == new_key_id => Ok(secret),
        _ => bail!(
            "profile [{profile}] in {} no longer holds the new key {}, whose secret was written \
             only there. Undo the rotation with `iam-rotate rollback {user} --delete-new` (the \
             old key is still active), then self-rotate anew",
            file.display(),
            mask_key(new_key_id)
        ),
    }
}

/// The process's SDK configuration, signing with the given key instead.
fn with_key(config: &SdkConfig, key_id: &str, secret: &SecretString) -> SdkConfig {
    let credentials = Credentials::new(key_id, secret.expose_secret(), None, None, "iam-rotate");
    config
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_iam_users_can_self_rotate() {
        assert_eq!(
            iam_user_of("arn:aws:iam::123456789012:user/alice"),
            Ok("alice")
        );
        assert_eq!(
            iam_user_of("arn:aws:iam::123456789012:user/division/team/bob"),
            Ok("bob")
        );
        assert_eq!(
            iam_user_of("arn:aws-us-gov:iam::123456789012:user/carol"),
            Ok("carol")
        );
        for (arn, words) in [
            ("arn:aws:iam::123456789012:root", "root user"),
            (
                "arn:aws:sts::123456789012:assumed-role/Admin/session",
                "assumed role",
            ),
            (
                "arn:aws:sts::123456789012:federated-user/bob",
                "federated user",
            ),
            ("arn:aws:iam::123456789012:role/x", "not an IAM user"),
            ("not-an-arn", "is not an ARN"),
        ] {
            let err = iam_user_of(arn).unwrap_err();
            assert!(err.contains(words), "{arn}: {err}");
        }
    }

    #[test]
    fn the_key_in_use_must_be_the_profile_s() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[ci]\naws_access_key_id = AKIAINUSE00000000001\naws_secret_access_key = s\n\
             [empty]\nregion = x\n",
        )
        .unwrap();
        check_profile_holds(&file, "ci", "AKIAINUSE00000000001").unwrap();
        for (profile, id, words) in [
            ("ci", "AKIAOTHER00000000001", "holds the key AKIA…0001"),
            (
                "empty",
                "AKIAINUSE00000000001",
                "holds no aws_access_key_id",
            ),
            (
                "missing",
                "AKIAINUSE00000000001",
                "there is no profile [missing]",
            ),
        ] {
            let err = check_profile_holds(&file, profile, id)
                .unwrap_err()
                .to_string();
            assert!(err.contains(words), "{err}");
            assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        }
    }
}
