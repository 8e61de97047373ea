//! Time, behind a trait: the system clock, a fixed clock from
//! `IAM_ROTATE_NOW` for rehearsals and tests, and a settable clock for the
//! simulated account.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// The environment variable that replaces the clock (RFC 3339).
pub const NOW_ENV: &str = "IAM_ROTATE_NOW";

#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    /// The time the policy is judged by.
    fn now(&self) -> DateTime<Utc>;

    /// Waits `for_`: in real time on the real clocks, by moving the time
    /// on a [`ManualClock`], so every wait of the engine runs in tests
    /// without waiting.
    async fn sleep(&self, for_: std::time::Duration) {
        tokio::time::sleep(for_).await;
    }

    /// The real time, for comparisons with timestamps IAM itself stamps
    /// (such as a new key's creation time against a create intent).
    fn system_now(&self) -> DateTime<Utc> {
        self.now()
    }

    /// The real time to the nanosecond, for spacing requests a fraction of
    /// a second apart (the pacing of IAM requests). A [`ManualClock`]'s
    /// own time, so tests drive the pacing too.
    fn precise_now(&self) -> DateTime<Utc> {
        self.system_now()
    }

    /// Set when this clock is not the real one: what to record in history.
    fn note(&self) -> Option<String> {
        None
    }
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    /// Whole seconds: plans are read by people, and no policy is finer.
    fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        Utc::now().trunc_subsecs(0)
    }

    fn precise_now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock stopped at the time `IAM_ROTATE_NOW` names.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub DateTime<Utc>);

#[async_trait::async_trait]
impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }

    fn system_now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn note(&self) -> Option<String> {
        Some(format!(
            "{NOW_ENV}={} (real time {})",
            self.0.format("%Y-%m-%dT%H:%M:%SZ"),
            Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        ))
    }
}

/// Parses `IAM_ROTATE_NOW`.
pub fn parse_now(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.to_utc())
        .map_err(|e| {
            format!(
                "{NOW_ENV}={value:?} is not an RFC 3339 time ({e}); write it like 2026-12-01T09:00:00Z"
            )
        })
}

/// The clock for this process: `IAM_ROTATE_NOW` when set, else the system's.
pub fn from_env() -> Result<Arc<dyn Clock>, String> {
    match std::env::var(NOW_ENV) {
        Ok(value) if !value.trim().is_empty() => Ok(Arc::new(FixedClock(parse_now(&value)?))),
        _ => Ok(Arc::new(SystemClock)),
    }
}

/// Whether an endpoint URL is AWS's own: its host is under `amazonaws.com`
/// or `amazonaws.com.cn`. An unparseable URL counts as AWS's: the safe side.
pub fn is_aws_endpoint(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return true;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return true;
    }
    ["amazonaws.com", "amazonaws.com.cn"]
        .iter()
        .any(|aws| host == *aws || host.ends_with(&format!(".{aws}")))
}

/// The IAM endpoint this process will call, as the SDK picks it: the
/// `--endpoint-url` flag, else `AWS_ENDPOINT_URL_IAM`, else
/// `AWS_ENDPOINT_URL` (unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is set);
/// `None` means AWS itself.
pub fn iam_endpoint(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(url) = flag.filter(|u| !u.trim().is_empty()) {
        return Some(url.to_string());
    }
    let ignored = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if ignored {
        return None;
    }
    ["AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL"]
        .into_iter()
        .find_map(|name| env(name).filter(|v| !v.trim().is_empty()))
}

/// `IAM_ROTATE_NOW` moves every wait of the rotation. It is allowed where
/// it cannot shorten a real wait: commands that only read (`reads_only`),
/// or any command against an emulator (an overridden, non-AWS endpoint).
/// `Err` says why not and how to go on.
pub fn check_fixed_clock_allowed(
    command: &str,
    reads_only: bool,
    endpoint: Option<&str>,
) -> Result<(), String> {
    if reads_only {
        return Ok(());
    }
    match endpoint {
        Some(url) if !is_aws_endpoint(url) => Ok(()),
        _ => Err(format!(
            "{NOW_ENV} is set, and `{command}` could change real AWS state with it: a              replaced clock would cut every wait of the rotation short (adoption, quiet              period, verify). It is honoured only for `run --dry-run`, `status` and `show`,              or against an emulator (--endpoint-url / AWS_ENDPOINT_URL pointing at a              non-AWS host). Unset it (`unset {NOW_ENV}`) and run again"
        )),
    }
}

/// A clock that only moves when told to: the simulated account's time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(start)))
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sleep(&self, for_: std::time::Duration) {
        if let Ok(by) = chrono::Duration::from_std(for_) {
            self.advance(by);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_endpoints_are_told_from_emulators() {
        for aws in [
            "https://iam.amazonaws.com",
            "https://iam.amazonaws.com/",
            "https://IAM.AmazonAWS.com.",
            "https://iam.cn-north-1.amazonaws.com.cn",
            "https://sts.eu-west-1.amazonaws.com:443/x",
            "https://user@iam.amazonaws.com",
            "not a url",
            "",
        ] {
            assert!(is_aws_endpoint(aws), "{aws}");
        }
        for emulator in [
            "http://127.0.0.1:5000",
            "http://localhost:4566",
            "http://[::1]:5000",
            "http://amazonaws.com.evil.example",
            "http://notamazonaws.com",
        ] {
            assert!(!is_aws_endpoint(emulator), "{emulator}");
        }
    }

    #[test]
    fn the_iam_endpoint_is_picked_as_the_sdk_picks_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(iam_endpoint(None, env(&[])), None);
        assert_eq!(
            iam_endpoint(Some("http://a"), env(&[("AWS_ENDPOINT_URL", "http://b")])).as_deref(),
            Some("http://a")
        );
        assert_eq!(
            iam_endpoint(
                None,
                env(&[
                    ("AWS_ENDPOINT_URL", "http://b"),
                    ("AWS_ENDPOINT_URL_IAM", "http://c")
                ])
            )
            .as_deref(),
            Some("http://c")
        );
        assert_eq!(
            iam_endpoint(
                None,
                env(&[
                    ("AWS_ENDPOINT_URL", "http://b"),
                    ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
                ])
            ),
            None
        );
    }

    #[test]
    fn a_fixed_clock_is_refused_for_writes_against_aws() {
        assert!(check_fixed_clock_allowed("run", true, None).is_ok());
        assert!(check_fixed_clock_allowed("run", false, Some("http://127.0.0.1:1")).is_ok());
        let err = check_fixed_clock_allowed("run", false, None).unwrap_err();
        assert!(err.contains("unset IAM_ROTATE_NOW"), "{err}");
        assert!(
            check_fixed_clock_allowed("plan", false, Some("https://iam.amazonaws.com")).is_err()
        );
    }
}
