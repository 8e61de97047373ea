//! Secret destinations. A new key's secret exists only in the
//! CreateAccessKey answer; it is written to exactly one destination, read
//! back there to confirm, and then dropped. It goes nowhere else.

mod file;

use std::path::PathBuf;

use async_trait::async_trait;
use thiserror::Error;

use crate::iam::CreatedKey;

/// Where a secret goes, parsed from a plan's `delivery:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A CSV like the console's download, mode 0600.
    File(PathBuf),
    /// A profile in the shared credentials file.
    Profile(String),
    /// A Secrets Manager secret, by name or ARN.
    SecretsManager(String),
    /// An SSM SecureString parameter.
    Ssm(String),
    /// Printed once on standard output.
    Stdout,
}

/// The default destination when `plan` is given none.
pub const DEFAULT_SPEC: &str = "file:~/.iam-rotate/credentials/{account}/{user}.csv";

#[derive(Debug, Error)]
pub enum DeliverError {
    #[error("invalid delivery destination {spec:?}: {message}")]
    Invalid { spec: String, message: String },
    #[error("cannot deliver to {destination}: {message}")]
    Failed {
        destination: String,
        message: String,
    },
}

impl DeliverError {
    pub fn failed(destination: &Destination, message: impl Into<String>) -> Self {
        DeliverError::Failed {
            destination: destination.to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::File(p) => write!(f, "file:{}", p.display()),
            Destination::Profile(n) => write!(f, "profile:{n}"),
            Destination::SecretsManager(n) => write!(f, "secretsmanager:{n}"),
            Destination::Ssm(n) => write!(f, "ssm:{n}"),
            Destination::Stdout => f.write_str("stdout"),
        }
    }
}

impl Destination {
    /// Fills `{user}` and `{account}`, expands a leading `~/`, and parses.
    pub fn resolve(spec: &str, user: &str, account: &str) -> Result<Destination, DeliverError> {
        let filled = spec.replace("{user}", user).replace("{account}", account);
        let invalid = |message: &str| DeliverError::Invalid {
            spec: spec.to_string(),
            message: message.to_string(),
        };
        if filled.contains('{') || filled.contains('}') {
            return Err(invalid(
                "only the placeholders {user} and {account} are known",
            ));
        }
        let (kind, rest) = match filled.split_once(':') {
            Some((kind, rest)) => (kind, rest),
            None if filled == "stdout" => return Ok(Destination::Stdout),
            None => (filled.as_str(), ""),
        };
        if rest.is_empty() {
            return Err(invalid(
                "write it as file:PATH, profile:NAME, secretsmanager:NAME_OR_ARN, \
                 ssm:/PARAMETER/NAME or stdout",
            ));
        }
        match kind {
            "file" => Ok(Destination::File(expand_home(rest)?)),
            "profile" => {
                if rest.contains(['[', ']', '\n']) {
                    return Err(invalid("a profile name cannot hold [, ] or a newline"));
                }
                Ok(Destination::Profile(rest.to_string()))
            }
            "secretsmanager" => Ok(Destination::SecretsManager(rest.to_string())),
            "ssm" => {
                if !rest.starts_with('/') {
                    return Err(invalid("an SSM parameter name starts with /"));
                }
                Ok(Destination::Ssm(rest.to_string()))
            }
            _ => Err(invalid(
                "unknown kind; use file:PATH, profile:NAME, secretsmanager:NAME_OR_ARN, \
                 ssm:/PARAMETER/NAME or stdout",
            )),
        }
    }
}

fn expand_home(path: &str) -> Result<PathBuf, DeliverError> {
    match path.strip_prefix("~/") {
        Some(rest) => {
            let home = std::env::var_os("HOME").ok_or_else(|| DeliverError::Invalid {
                spec: path.to_string(),
                message: "HOME is not set, so ~ cannot be expanded; give an absolute path".into(),
            })?;
            Ok(PathBuf::from(home).join(rest))
        }
        None => Ok(PathBuf::from(path)),
    }
}

/// Delivers secrets. The engine calls `check` before CreateAccessKey and
/// `deliver` right after it.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Everything that can be checked before a key exists: the path is
    /// writable, the file is private, the parameter name is allowed.
    async fn check(&self, destination: &Destination) -> Result<(), DeliverError>;

    /// Writes the key, then reads the destination back: it must name the
    /// new key id. On error nothing half-written stays behind.
    async fn deliver(
        &self,
        destination: &Destination,
        key: &CreatedKey,
    ) -> Result<(), DeliverError>;
}

/// The real destinations.
#[derive(Clone, Default)]
pub struct Deliverer {
    /// Set when stdout is reserved for a JSON document.
    pub stdout_reserved: bool,
}

#[async_trait]
impl Deliver for Deliverer {
    async fn check(&self, destination: &Destination) -> Result<(), DeliverError> {
        match destination {
            Destination::File(path) => file::check(destination, path),
            Destination::Stdout if self.stdout_reserved => Err(DeliverError::failed(
                destination,
                "stdout holds the JSON document with --output json; use --output text, or \
                 another destination",
            )),
            Destination::Stdout => Ok(()),
            other => Err(DeliverError::failed(
                other,
                "this destination kind is not available in this build; use file:PATH",
            )),
        }
    }

    async fn deliver(
        &self,
        destination: &Destination,
        key: &CreatedKey,
    ) -> Result<(), DeliverError> {
        self.check(destination).await?;
        match destination {
            Destination::File(path) => file::deliver(destination, path, key),
            Destination::Stdout => {
                use secrecy::ExposeSecret;
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "Access key ID,Secret access key")
                    .and_then(|_| writeln!(out, "{},{}", key.id, key.secret.expose_secret()))
                    .and_then(|_| out.flush())
                    .map_err(|e| DeliverError::failed(destination, e.to_string()))
            }
            other => Err(DeliverError::failed(
                other,
                "this destination kind is not available in this build",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_every_kind() {
        let d = Destination::resolve(
            "secretsmanager:iam/{account}/{user}",
            "alice",
            "123456789012",
        )
        .unwrap();
        assert_eq!(
            d,
            Destination::SecretsManager("iam/123456789012/alice".into())
        );
        let d = Destination::resolve("file:/tmp/{user}.csv", "bob", "1").unwrap();
        assert_eq!(d, Destination::File("/tmp/bob.csv".into()));
        assert_eq!(
            Destination::resolve("stdout", "a", "b").unwrap(),
            Destination::Stdout
        );
    }

    #[test]
    fn bad_specs_say_what_is_accepted() {
        for spec in [
            "ftp:/x",
            "file:",
            "ssm:name",
            "file:/x/{owner}.csv",
            "nothing",
        ] {
            let err = Destination::resolve(spec, "a", "1")
                .unwrap_err()
                .to_string();
            assert!(err.contains(spec), "{err}");
        }
    }
}
