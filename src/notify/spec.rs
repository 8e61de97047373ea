//! Where notices go, as typed: `sns:TOPIC_ARN` or `webhook:URL`. A spec is
//! checked when it is read (from `--notify`, `IAM_ROTATE_NOTIFY` or a plan's
//! `notify:`), so a typo stops the command before anything is done.

use std::fmt;
use std::net::IpAddr;

use hyper::Uri;
use sha2::{Digest, Sha256};

/// The environment variable that holds the runner's own targets,
/// comma-separated, like repeated `--notify`.
pub const ENV: &str = "IAM_ROTATE_NOTIFY";

/// One place a notice goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// An SNS topic: SNS Publish, the notice as the message.
    Sns { topic_arn: String },
    /// An HTTPS endpoint (plain http only on loopback): POST of the notice.
    Webhook { url: Uri },
}

/// What a spec must look like, for every error.
const FORMS: &str = "a notification target is sns:arn:aws:sns:REGION:ACCOUNT:TOPIC or \
                     webhook:https://HOST/PATH (plain http only to localhost, 127.0.0.1 or [::1])";

impl Target {
    /// Parses one spec; the error says what was wrong and what is accepted,
    /// without repeating the spec (a webhook URL may hold a token).
    pub fn parse(spec: &str) -> Result<Target, String> {
        let spec = spec.trim();
        if let Some(arn) = spec.strip_prefix("sns:") {
            return parse_topic_arn(arn).map(|()| Target::Sns {
                topic_arn: arn.to_string(),
            });
        }
        if let Some(url) = spec.strip_prefix("webhook:") {
            return parse_webhook(url).map(|url| Target::Webhook { url });
        }
        Err(format!("not a notification target: {FORMS}"))
    }

    /// The region an SNS topic lives in, from its ARN.
    pub fn sns_region(&self) -> Option<&str> {
        match self {
            Target::Sns { topic_arn } => topic_arn.split(':').nth(3),
            Target::Webhook { .. } => None,
        }
    }

    /// How the target is named in a plan's pending notices and in
    /// warnings: an SNS topic by its ARN; a webhook by its scheme, host and
    /// a fingerprint of the whole URL, since a webhook's path or query often
    /// holds a token that must not land in a plan kept in git.
    pub fn label(&self) -> String {
        match self {
            Target::Sns { topic_arn } => format!("sns:{topic_arn}"),
            Target::Webhook { url } => {
                let digest = Sha256::digest(url.to_string().as_bytes());
                let fingerprint: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
                format!(
                    "webhook:{}://{}/… #{fingerprint}",
                    url.scheme_str().unwrap_or("https"),
                    url.authority().map(|a| a.as_str()).unwrap_or_default()
                )
            }
        }
    }
}

impl fmt::Display for Target {
    /// The label: never a webhook's full URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// `arn:PARTITION:sns:REGION:ACCOUNT:TOPIC`.
fn parse_topic_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let well_formed = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
        && parts[5].len() <= 256
        && parts[5]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC); {FORMS}"
        ))
    }
}

fn parse_webhook(text: &str) -> Result<Uri, String> {
    let url: Uri = text
        .parse()
        .map_err(|e| format!("not a URL ({e}); {FORMS}"))?;
    let Some(authority) = url.authority() else {
        return Err(format!("the URL names no host; {FORMS}"));
    };
    if authority.as_str().contains('@') {
        return Err(
            "the URL holds a user name or password; put credentials for a webhook in its \
             path or query instead (iam-rotate never writes those into a plan), or use sns:"
                .into(),
        );
    }
    match url.scheme_str() {
        Some("https") => Ok(url),
        Some("http") if is_loopback(authority.host()) => Ok(url),
        Some("http") => Err(
            "plain http to another machine would send notices across the \
                             network unencrypted. Use https://, or http:// only to localhost, \
                             127.0.0.1 or [::1]"
                .into(),
        ),
        _ => Err(format!("the URL is neither https:// nor http://; {FORMS}")),
    }
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Every spec of `--notify` and of `IAM_ROTATE_NOTIFY` (comma-separated),
/// parsed; the first malformed one is the error, naming where it came from.
pub fn parse_all<'a>(
    flags: impl IntoIterator<Item = &'a str>,
    env: Option<&str>,
) -> Result<Vec<Target>, String> {
    let mut targets: Vec<Target> = Vec::new();
    let from_env = env
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|spec| !spec.is_empty())
        .map(|spec| (spec, ENV));
    for (spec, source) in flags.into_iter().map(|s| (s, "--notify")).chain(from_env) {
        let target = Target::parse(spec).map_err(|e| format!("{source} {spec:?}: {e}"))?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_into_targets() {
        let sns = Target::parse("sns:arn:aws:sns:eu-west-1:123456789012:key-rotation").unwrap();
        assert_eq!(sns.sns_region(), Some("eu-west-1"));
        assert_eq!(
            sns.label(),
            "sns:arn:aws:sns:eu-west-1:123456789012:key-rotation"
        );
        for url in [
            "https://hooks.example.com/T0/B0/secret-token",
            "http://127.0.0.1:8080/hook",
            "http://localhost/hook",
            "http://[::1]:9000/",
            "http://127.10.0.1/",
        ] {
            let target = Target::parse(&format!("webhook:{url}"));
            assert!(
                matches!(target, Ok(Target::Webhook { .. })),
                "{url}: {target:?}"
            );
        }
    }

    #[test]
    fn malformed_specs_say_what_is_accepted() {
        for spec in [
            "",
            "slack:#ops",
            "sns:topic-name",
            "sns:arn:aws:sqs:us-east-1:123456789012:queue",
            "sns:arn:aws:sns:us-east-1:1234:topic",
            "sns:arn:aws:sns:us-east-1:123456789012:",
            "webhook:",
            "webhook:hooks.example.com/path",
            "webhook:ftp://example.com/",
            "webhook:http://example.com/hook",
            "webhook:http://10.0.0.1/hook",
            "webhook:https://user:pass@example.com/hook",
        ] {
            let error = Target::parse(spec).expect_err(spec);
            assert!(
                error.contains("sns:") || error.contains("https://"),
                "{spec}: {error}"
            );
        }
    }

    #[test]
    fn a_webhook_label_never_holds_its_path_or_query() {
        let target =
            Target::parse("webhook:https://hooks.example.com/T0/B0/tok3n?key=s3cr3t").unwrap();
        let label = target.label();
        assert!(label.starts_with("webhook:https://hooks.example.com/… #"));
        assert!(
            !label.contains("tok3n") && !label.contains("s3cr3t"),
            "{label}"
        );
        assert_eq!(target.to_string(), label);
        // Two URLs on one host are told apart.
        let other = Target::parse("webhook:https://hooks.example.com/T0/B0/other").unwrap();
        assert_ne!(other.label(), label);
    }

    #[test]
    fn flags_and_the_environment_combine_without_duplicates() {
        let arn = "sns:arn:aws:sns:us-east-1:123456789012:t";
        let targets = parse_all(
            [arn],
            Some(" webhook:https://a.example/h , ,sns:arn:aws:sns:us-east-1:123456789012:t"),
        )
        .unwrap();
        assert_eq!(targets.len(), 2);
        let error = parse_all([], Some("webhook:http://example.com/")).unwrap_err();
        assert!(error.starts_with("IAM_ROTATE_NOTIFY \""), "{error}");
        let error = parse_all(["sns:nope"], None).unwrap_err();
        assert!(error.starts_with("--notify \"sns:nope\": "), "{error}");
    }
}
