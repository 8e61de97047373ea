//! Time, behind a trait: the system clock, a fixed clock from
//! `IAM_ROTATE_NOW` for rehearsals and tests, and a settable clock for the
//! simulated account.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// The environment variable that replaces the clock (RFC 3339).
pub const NOW_ENV: &str = "IAM_ROTATE_NOW";

pub trait Clock: Send + Sync {
    /// The time the policy is judged by.
    fn now(&self) -> DateTime<Utc>;

    /// The real time, for comparisons with timestamps IAM itself stamps
    /// (such as a new key's creation time against a create intent).
    fn system_now(&self) -> DateTime<Utc> {
        self.now()
    }

    /// Set when this clock is not the real one: what to record in history.
    fn note(&self) -> Option<String> {
        None
    }
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Whole seconds: plans are read by people, and no policy is finer.
    fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        Utc::now().trunc_subsecs(0)
    }
}

/// A clock stopped at the time `IAM_ROTATE_NOW` names.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub DateTime<Utc>);

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

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
