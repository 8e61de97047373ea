//! Human durations (`7d`, `36h`, `0s`) as they appear in plans and on the command line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span of time written the way operators write it.
///
/// Parsing accepts everything `humantime` does (`7d`, `36h`, `1h 30m`,
/// `90days`); formatting picks the largest unit that divides the span exactly,
/// so a plan always shows `7d` rather than `604800s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(std::time::Duration);

/// The longest span a plan or a flag may hold: ten years. Anything longer
/// is a typo, and could overflow the arithmetic on timestamps.
pub const MAX_DURATION: HumanDuration = HumanDuration::from_days(3650);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(std::time::Duration::from_secs(secs))
    }

    pub const fn from_hours(hours: u64) -> Self {
        Self::from_secs(hours * 3600)
    }

    pub const fn from_days(days: u64) -> Self {
        Self::from_secs(days * 86_400)
    }

    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }

    /// The span as a chrono duration, for arithmetic on timestamps.
    pub fn to_chrono(self) -> chrono::Duration {
        // A span that does not fit (hundreds of millennia) is clamped: it
        // only ever pushes a due date further away.
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (value, unit) = if secs == 0 {
            (0, "s")
        } else if secs.is_multiple_of(86_400) {
            (secs / 86_400, "d")
        } else if secs.is_multiple_of(3600) {
            (secs / 3600, "h")
        } else if secs.is_multiple_of(60) {
            (secs / 60, "m")
        } else {
            (secs, "s")
        };
        write!(f, "{value}{unit}")
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let parsed = humantime::parse_duration(trimmed).map_err(|e| {
            format!("invalid duration {s:?}: {e}; write it like 7d, 36h, 90m or 0s")
        })?;
        if parsed > MAX_DURATION.0 {
            return Err(format!(
                "invalid duration {s:?}: longer than {MAX_DURATION} (ten years), the longest \
                 any wait may be"
            ));
        }
        if parsed.subsec_nanos() != 0 {
            return Err(format!(
                "invalid duration {s:?}: use whole seconds (for example 30s, 15m, 4h, 7d)"
            ));
        }
        Ok(HumanDuration(parsed))
    }
}

/// What a duration may look like in a plan, for its JSON Schema: one or
/// more spans of a number and a unit, as `humantime` reads them (`7d`,
/// `36h`, `1h 30m`, `2days`). iam-rotate itself always writes one span in
/// the largest exact unit (`7d`, `90m`, `0s`).
pub const DURATION_PATTERN: &str = "^\\s*([0-9]+(\\.[0-9]+)?\\s*(nanos|nsec|ns|usec|us|µs|millis|msec|ms|\
seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|\
months|month|M|years|year|yrs|yr|y)\\s*)+$";

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A span of time: a number and a unit, such as 7d, 36h, 90m or 0s; \
                            whole seconds, at most 3650d.",
            "type": "string",
            "pattern": DURATION_PATTERN,
            "examples": ["7d", "36h", "90m", "0s"],
        })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Says how long ago (or how far ahead) `then` is from `now`, roughly, for prose:
/// `2h ago`, `3d ago`, `in 4h`.
pub fn relative(then: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let delta = now.signed_duration_since(then);
    let (secs, future) = if delta.num_seconds() >= 0 {
        (delta.num_seconds(), false)
    } else {
        (-delta.num_seconds(), true)
    };
    let text = if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else if secs < 2 * 86_400 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}d", secs / 86_400)
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_in_the_largest_exact_unit() {
        for (input, shown) in [
            ("7d", "7d"),
            ("36h", "36h"),
            ("0s", "0s"),
            ("90m", "90m"),
            ("1h 30m", "90m"),
            ("2days", "2d"),
            ("45s", "45s"),
            ("48h", "2d"),
        ] {
            let d: HumanDuration = input.parse().unwrap();
            assert_eq!(d.to_string(), shown, "{input}");
        }
    }

    #[test]
    fn rejects_garbage_and_fractions() {
        assert!("seven days".parse::<HumanDuration>().is_err());
        assert!("".parse::<HumanDuration>().is_err());
        assert!("-3d".parse::<HumanDuration>().is_err());
        assert!("500ms".parse::<HumanDuration>().is_err());
        assert!("100000000d".parse::<HumanDuration>().is_err());
        assert!("3651d".parse::<HumanDuration>().is_err());
        assert_eq!("3650d".parse::<HumanDuration>().unwrap(), MAX_DURATION);
    }

    #[test]
    fn relative_prose() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(relative(now - chrono::Duration::hours(2), now), "2h ago");
        assert_eq!(relative(now - chrono::Duration::days(3), now), "3d ago");
        assert_eq!(relative(now + chrono::Duration::hours(4), now), "in 4h");
    }
}
