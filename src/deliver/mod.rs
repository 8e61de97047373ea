//! Secret destinations. A new key's secret exists only in the
//! CreateAccessKey answer; it is written to exactly one destination, read
//! back there to confirm, and then dropped. It goes nowhere else.
//!
//! Each destination is checked before CreateAccessKey where it can be (the
//! path is writable, the credentials file parses, the parameter name is
//! allowed, the secret is reachable), and read back after the write: it must
//! name the new key id. When the write or the read-back fails, the
//! destination is left as it was before.

mod exec;
#[cfg(test)]
pub mod fake;
mod file;
mod json;
pub mod profile;
mod secretsmanager;
pub mod ssm;

use std::path::PathBuf;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use thiserror::Error;

use crate::iam::CreatedKey;

/// Where a secret goes, parsed from a plan's `delivery:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A CSV like the console's download, mode 0600.
    File(PathBuf),
    /// A profile in the shared credentials file `file`.
    Profile { name: String, file: PathBuf },
    /// A Secrets Manager secret, by name or ARN.
    SecretsManager(String),
    /// An SSM SecureString parameter.
    Ssm(String),
    /// Printed once on standard output.
    Stdout,
    /// A program run directly (no shell), the key as one JSON document on
    /// its standard input. `program` is absolute, pinned when planned.
    /// `user` and `account` go into the document; they are not part of
    /// the spec.
    Exec {
        program: PathBuf,
        args: Vec<String>,
        user: String,
        account: String,
    },
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
            Destination::Profile { name, .. } => write!(f, "profile:{name}"),
            Destination::SecretsManager(n) => write!(f, "secretsmanager:{n}"),
            Destination::Ssm(n) => write!(f, "ssm:{n}"),
            Destination::Stdout => f.write_str("stdout"),
            Destination::Exec { program, args, .. } => {
                let program = program.to_string_lossy();
                let words =
                    std::iter::once(program.as_ref()).chain(args.iter().map(String::as_str));
                write!(f, "exec:{}", shell_words::join(words))
            }
        }
    }
}

impl Destination {
    /// A spec as `plan` pins it: fills `{user}` and `{account}`, expands a
    /// leading `~/`, makes a relative `file:` path absolute (against the
    /// current folder) and refuses `$VAR` and `~user`, which would mean
    /// something else in another environment. A `profile:` names the shared
    /// credentials file this environment uses, which the plan records.
    pub fn resolve(spec: &str, user: &str, account: &str) -> Result<Destination, DeliverError> {
        parse(spec, user, account, Pinning::AtPlanTime)
    }

    /// The destination a plan names, exactly as pinned: a `file:` path must
    /// be absolute, and a `profile:` is written in the plan's
    /// `credentials_file` (or, for a plan written before that was recorded,
    /// this environment's). A run from another folder or with another
    /// environment writes where the plan says, or refuses.
    pub fn of_plan(plan: &crate::plan::Plan) -> Result<Destination, DeliverError> {
        let mut destination = parse(&plan.delivery, &plan.user, &plan.account, Pinning::FromPlan)?;
        if let (Destination::Profile { file, .. }, Some(pinned)) =
            (&mut destination, &plan.credentials_file)
        {
            *file = pinned.clone();
        }
        Ok(destination)
    }

    /// The shared credentials file of a `profile:` destination.
    pub fn credentials_file(&self) -> Option<&std::path::Path> {
        match self {
            Destination::Profile { file, .. } => Some(file),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pinning {
    /// `plan`: expand and make absolute.
    AtPlanTime,
    /// A plan's `delivery:`: take it as written, or refuse.
    FromPlan,
}

fn parse(
    spec: &str,
    user: &str,
    account: &str,
    pinning: Pinning,
) -> Result<Destination, DeliverError> {
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
             ssm:/PARAMETER/NAME, exec:COMMAND ARGS... or stdout",
        ));
    }
    match kind {
        "exec" => {
            let (program, args) =
                exec::parse(rest, pinning == Pinning::AtPlanTime).map_err(|m| invalid(&m))?;
            Ok(Destination::Exec {
                program,
                args,
                user: user.to_string(),
                account: account.to_string(),
            })
        }
        "file" => Ok(Destination::File(
            file_path(rest, pinning).map_err(|m| invalid(&m))?,
        )),
        "profile" => {
            if !is_profile_name(rest) {
                return Err(invalid(
                    "a profile name is made of letters, digits and _ - / . % @ : + only \
                     (the AWS SDKs ignore any other)",
                ));
            }
            let file = profile::credentials_path()
                .and_then(|path| absolute(&path))
                .map_err(|m| invalid(&m))?;
            Ok(Destination::Profile {
                name: rest.to_string(),
                file,
            })
        }
        "secretsmanager" => Ok(Destination::SecretsManager(rest.to_string())),
        "ssm" => {
            ssm::validate_name(rest).map_err(|m| invalid(&m))?;
            Ok(Destination::Ssm(rest.to_string()))
        }
        _ => Err(invalid(
            "unknown kind; use file:PATH, profile:NAME, secretsmanager:NAME_OR_ARN, \
             ssm:/PARAMETER/NAME, exec:COMMAND ARGS... or stdout",
        )),
    }
}

/// A `file:` path, pinned: see [`Destination::resolve`].
fn file_path(path: &str, pinning: Pinning) -> Result<PathBuf, String> {
    if path.contains('$') {
        return Err(
            "`$` would be read as an environment variable by a shell but not by iam-rotate; \
             write the path out in full"
                .into(),
        );
    }
    if pinning == Pinning::FromPlan {
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(
                "a plan's file: destination must be an absolute path (`plan` pins it so), \
                 or the secret would land in whatever folder iam-rotate runs in; write the \
                 full path in `delivery:`"
                    .into(),
            );
        }
        return Ok(path);
    }
    if path.starts_with('~') && !path.starts_with("~/") {
        return Err(
            "`~user` paths are not expanded; write the path out in full (plain `~/` is \
             expanded to your home folder)"
                .into(),
        );
    }
    absolute(&expand_home(path)?)
}

/// `path` made absolute against the current folder, `.` and `..` resolved
/// as written (symbolic links are left alone).
fn absolute(path: &std::path::Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| {
        format!(
            "cannot make {} an absolute path ({e}); give an absolute path",
            path.display()
        )
    })
}

/// A profile name the AWS SDKs accept in the credentials file.
pub fn is_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-/.%@:+".contains(c))
}

fn expand_home(path: &str) -> Result<PathBuf, String> {
    match path.strip_prefix("~/") {
        Some(rest) => {
            let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(
                "HOME is not set, so ~ cannot be expanded; give an absolute path".to_string(),
            )?;
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

    /// Which access key the destination holds now. A run that dies between
    /// delivering a key and recording it leaves a key that looks like an
    /// orphan: if the destination holds it, it was delivered and may
    /// already be in use, so it is kept as the new key, not deleted. When
    /// the destination cannot be read, the answer is [`Held::Unknown`],
    /// and nothing may be deleted on the strength of it.
    async fn held(&self, destination: &Destination) -> Held;
}

/// What a destination holds, as far as it can be told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// It names this access key id (the new key, the old one, another).
    Key(String),
    /// It holds no key: missing, empty, or not a document naming one.
    Nothing,
    /// It could not be read (access denied, the network, a file that does
    /// not parse), or keeps nothing that can be read (stdout): whether it
    /// holds a key is unknown. The reason is in the operator's words.
    Unknown(String),
}

/// Creates `dir` (private) if needed and proves it takes a new file,
/// before any key exists. Returns the owner of that new file: the user
/// this process writes as.
fn prove_writable(destination: &Destination, dir: &std::path::Path) -> Result<u32, DeliverError> {
    use std::os::unix::fs::MetadataExt;
    let fail = |message: String| DeliverError::failed(destination, message);
    crate::atomic::create_private_dir(dir)
        .map_err(|e| fail(format!("cannot create folder {}: {e}", dir.display())))?;
    let probe = tempfile::Builder::new()
        .prefix(".iam-rotate-probe")
        .tempfile_in(dir)
        .map_err(|e| fail(format!("cannot write in {}: {e}", dir.display())))?;
    probe
        .as_file()
        .metadata()
        .map(|m| m.uid())
        .map_err(|e| fail(format!("cannot write in {}: {e}", dir.display())))
}

/// An AWS error as a delivery failure; see [`aws_message`].
fn aws_failure<E>(
    destination: &Destination,
    operation: &str,
    err: &SdkError<E, HttpResponse>,
    permissions: &str,
    secrets: &[&str],
) -> DeliverError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    DeliverError::failed(
        destination,
        aws_message(operation, err, permissions, secrets),
    )
}

/// What failed, AWS's own words, and what to fix. AWS validation messages
/// may quote the value sent, so every string in `secrets` is cut out of
/// them.
fn aws_message<E>(
    operation: &str,
    err: &SdkError<E, HttpResponse>,
    permissions: &str,
    secrets: &[&str],
) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let denied = err.code().is_some_and(|c| c.starts_with("AccessDenied")) || status == Some(403);
    let message = match err {
        SdkError::ServiceError(_) => {
            let code = match (err.code(), status) {
                (Some(code), _) => code.to_string(),
                (None, Some(status)) => format!("HTTP {status}"),
                (None, None) => "error".to_string(),
            };
            format!("{code}: {}", err.message().unwrap_or("no message"))
        }
        _ => DisplayErrorContext(err).to_string(),
    };
    let message = scrub(&message, secrets);
    let hint = if denied {
        format!("The credentials in use need {permissions}")
    } else if matches!(err, SdkError::ServiceError(_)) {
        "Fix what AWS names and run again".to_string()
    } else {
        "Check the network, the region (--region) and the endpoint (--endpoint-url), then run \
         again"
            .to_string()
    };
    format!("{operation} failed ({message}). {hint}")
}

/// `text` with every occurrence of each secret replaced, and then anything
/// shaped like a secret access key (40 or more characters of its alphabet
/// in a row): AWS may quote a value escaped or cut, and a message of ours
/// may carry an old key's value, as an SSM restore does.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let text = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |text, secret| {
            text.replace(secret, "[redacted]")
        });
    scrub_secret_shaped(&text)
}

pub(crate) fn scrub_secret_shaped(text: &str) -> String {
    let is_secret_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '+' | '=');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= 40 {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_secret_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The real destinations. The AWS ones (Secrets Manager, SSM) use the
/// process's one SDK configuration.
#[derive(Clone, Default)]
pub struct Deliverer {
    /// Set when stdout is reserved for a JSON document.
    stdout_reserved: bool,
    aws: Option<SdkConfig>,
}

impl Deliverer {
    /// `aws` is needed for Secrets Manager and SSM; `stdout_reserved` when
    /// stdout carries a JSON document.
    pub fn new(aws: Option<SdkConfig>, stdout_reserved: bool) -> Self {
        Deliverer {
            stdout_reserved,
            aws,
        }
    }

    fn aws(&self, destination: &Destination) -> Result<&SdkConfig, DeliverError> {
        self.aws.as_ref().ok_or_else(|| {
            DeliverError::failed(
                destination,
                "this command has no AWS configuration for this destination; use `iam-rotate run`",
            )
        })
    }
}

/// The key id profile `name` holds in the shared credentials file `path`.
fn profile_held(name: &str, path: &std::path::Path) -> Held {
    let text = match profile::read_file(path) {
        Ok(Some(text)) => text,
        Ok(None) => return Held::Nothing,
        Err(e) => {
            return Held::Unknown(format!(
                "cannot read the credentials file {}: {e}",
                path.display()
            ))
        }
    };
    match profile::read_key(&text, name) {
        Ok(Some(key)) => key.key_id.map(Held::Key).unwrap_or(Held::Nothing),
        Ok(None) => Held::Nothing,
        Err(e) => Held::Unknown(format!(
            "cannot read profile {name} in the credentials file {}: {e}",
            path.display()
        )),
    }
}

#[async_trait]
impl Deliver for Deliverer {
    async fn held(&self, destination: &Destination) -> Held {
        match destination {
            Destination::File(path) => file::held(path),
            Destination::Profile { name, file } => profile_held(name, file),
            Destination::SecretsManager(id) => match self.aws(destination) {
                Ok(config) => secretsmanager::held(&secretsmanager::client(config, id), id).await,
                Err(e) => Held::Unknown(e.to_string()),
            },
            Destination::Ssm(name) => match self.aws(destination) {
                Ok(config) => ssm::held(&crate::aws::log::ssm(config), name).await,
                Err(e) => Held::Unknown(e.to_string()),
            },
            Destination::Stdout => Held::Unknown(
                "stdout keeps no copy of what was printed, so whether that run printed the \
                 key's secret cannot be told"
                    .into(),
            ),
            Destination::Exec { .. } => exec::held(),
        }
    }

    async fn check(&self, destination: &Destination) -> Result<(), DeliverError> {
        match destination {
            Destination::File(path) => file::check(destination, path),
            Destination::Profile { name, file } => profile::check(destination, file, name),
            Destination::SecretsManager(id) => {
                let client = secretsmanager::client(self.aws(destination)?, id);
                secretsmanager::check(&client, destination, id).await
            }
            Destination::Ssm(name) => {
                let client = crate::aws::log::ssm(self.aws(destination)?);
                ssm::check(&client, destination, name).await
            }
            Destination::Stdout if self.stdout_reserved => Err(DeliverError::failed(
                destination,
                "stdout holds the JSON document with --output json; use --output text, or \
                 another destination",
            )),
            Destination::Stdout => Ok(()),
            Destination::Exec { program, .. } => exec::check(destination, program),
        }
    }

    async fn deliver(
        &self,
        destination: &Destination,
        key: &CreatedKey,
    ) -> Result<(), DeliverError> {
        match destination {
            Destination::File(path) => {
                file::check(destination, path)?;
                file::deliver(destination, path, key)
            }
            Destination::Profile { name, file } => {
                profile::check(destination, file, name)?;
                profile::deliver(destination, file, name, key)
            }
            Destination::SecretsManager(id) => {
                let client = secretsmanager::client(self.aws(destination)?, id);
                secretsmanager::deliver(&client, destination, id, key).await
            }
            Destination::Ssm(name) => {
                let client = crate::aws::log::ssm(self.aws(destination)?);
                ssm::deliver(&client, destination, name, key).await
            }
            Destination::Stdout => {
                self.check(destination).await?;
                use secrecy::ExposeSecret;
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                writeln!(out, "Access key ID,Secret access key")
                    .and_then(|_| writeln!(out, "{},{}", key.id, key.secret.expose_secret()))
                    .and_then(|_| out.flush())
                    .map_err(|e| DeliverError::failed(destination, e.to_string()))
            }
            Destination::Exec {
                program,
                args,
                user,
                account,
            } => {
                exec::check(destination, program)?;
                exec::deliver(destination, program, args, user, account, key).await
            }
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
            "ssm:/aws/{user}",
            "profile:two words",
            "profile:[x]",
            "file:/x/{owner}.csv",
            "nothing",
        ] {
            let err = Destination::resolve(spec, "a", "1")
                .unwrap_err()
                .to_string();
            assert!(err.contains(spec), "{err}");
        }
    }

    #[test]
    fn placeholders_fill_profiles_and_parameters() {
        assert_eq!(
            Destination::resolve("profile:{user}-{account}", "alice", "123456789012")
                .unwrap()
                .to_string(),
            "profile:alice-123456789012"
        );
        assert_eq!(
            Destination::resolve("ssm:/iam/{account}/{user}", "alice", "123456789012").unwrap(),
            Destination::Ssm("/iam/123456789012/alice".into())
        );
        assert_eq!(
            Destination::resolve("secretsmanager:{user}", "alice", "1")
                .unwrap()
                .to_string(),
            "secretsmanager:alice"
        );
    }

    #[test]
    fn file_paths_are_pinned_when_planned() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            Destination::resolve("file:keys/{user}.csv", "alice", "1").unwrap(),
            Destination::File(cwd.join("keys/alice.csv"))
        );
        assert_eq!(
            Destination::resolve("file:./a/{user}.csv", "bob", "1").unwrap(),
            Destination::File(cwd.join("a/bob.csv"))
        );
        for spec in ["file:$HOME/a.csv", "file:~root/a.csv", "file:/x/$USER.csv"] {
            let err = Destination::resolve(spec, "a", "1")
                .unwrap_err()
                .to_string();
            assert!(err.contains("write the path out in full"), "{spec}: {err}");
        }
    }

    #[test]
    fn a_plan_s_file_path_must_be_absolute() {
        let plan = |delivery: &str| {
            let mut plan: crate::plan::Plan = serde_yaml::from_str(
                "version: 1\naccount: '123456789012'\nuser: alice\n\
                 user_arn: arn:aws:iam::123456789012:user/alice\ndelivery: stdout\n\
                 policy: {adoption_wait: 7d, quiet_period: 3d, verify_period: 7d, \
                 require_new_key_use: true}\n\
                 old_key: {id: AKIAIOSFODNN7EXAMPLE, created_at: 2025-06-02T08:14:51Z, \
                 status: Active}\nphase: create_second_key\nphase_since: 2026-11-26T09:00:04Z\n",
            )
            .unwrap();
            plan.delivery = delivery.to_string();
            plan
        };
        let err = Destination::of_plan(&plan("file:alice.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute path"), "{err}");
        assert_eq!(
            Destination::of_plan(&plan("file:/k/{user}.csv")).unwrap(),
            Destination::File("/k/alice.csv".into())
        );
        let mut pinned = plan("profile:ci");
        pinned.credentials_file = Some("/elsewhere/credentials".into());
        assert_eq!(
            Destination::of_plan(&pinned).unwrap().credentials_file(),
            Some(std::path::Path::new("/elsewhere/credentials"))
        );
    }

    #[test]
    fn a_reserved_parameter_name_is_refused_before_anything_is_created() {
        let err = Destination::resolve("ssm:/aws/{user}", "alice", "1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("reserves"), "{err}");
    }

    #[test]
    fn aws_messages_never_carry_the_secret() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let document = format!(r#"{{"AccessKeyId":"AKIA1","SecretAccessKey":"{secret}"}}"#);
        let text = format!("Value '{document}' at 'value' failed to satisfy constraint");
        let clean = scrub(&text, &[&document, secret]);
        assert!(!clean.contains(secret), "{clean}");
        assert!(clean.contains("[redacted]"));
        assert_eq!(scrub("plain", &[""]), "plain");
        let shaped = "value wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY was refused";
        assert_eq!(scrub(shaped, &[]), "value [redacted] was refused");
        assert_eq!(
            scrub("arn:aws:iam::123456789012:user/alice", &[]),
            "arn:aws:iam::123456789012:user/alice"
        );
    }

    #[tokio::test]
    async fn aws_destinations_need_an_aws_configuration() {
        let deliverer = Deliverer::default();
        let err = deliverer
            .check(&Destination::SecretsManager("x".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no AWS configuration"), "{err}");
    }

    #[tokio::test]
    async fn stdout_is_refused_when_it_carries_json() {
        let err = Deliverer::new(None, true)
            .check(&Destination::Stdout)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("--output json"), "{err}");
        assert!(Deliverer::new(None, false)
            .check(&Destination::Stdout)
            .await
            .is_ok());
    }
}
