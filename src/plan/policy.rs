//! The rotation policy: how long to wait for adoption, how long the old key
//! must be quiet before it is set inactive, and how long to verify before the
//! old key is deleted.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// AWS records last use with lag and only once per 15-minute span; activity
/// "usually appears within four hours". A shorter quiet period can mistake a
/// key in use for an idle one.
pub const MIN_QUIET_PERIOD: HumanDuration = HumanDuration::from_hours(4);

/// The policy stored in each plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "PolicyFields")]
pub struct Policy {
    /// How long after the new key was created consumers get to adopt it.
    pub adoption_wait: HumanDuration,
    /// How long the old key must have gone unused before it is set inactive.
    pub quiet_period: HumanDuration,
    /// How long the old key stays inactive before it is deleted.
    pub verify_period: HumanDuration,
    /// Whether the new key must have been used before the old one is retired.
    pub require_new_key_use: bool,
    /// A quiet period under [`MIN_QUIET_PERIOD`] was accepted on purpose
    /// (`--allow-short-quiet-period`); without this a plan holding one is
    /// refused on load.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_short_quiet_period: bool,
    /// How long past its own wait a plan may stay in a waiting phase before
    /// it is overdue and needs a person (`status --needs-attention`).
    pub overdue_after: HumanDuration,
}

/// The default of [`Policy::overdue_after`], also for plans written before
/// the field existed.
pub const DEFAULT_OVERDUE_AFTER: HumanDuration = HumanDuration::from_days(7);

// A plan's policy as written, so that a bad duration is reported with the
// name of its field (the YAML parser names only the enclosing `policy`).
// It is also what the plan's JSON Schema shows for `policy`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PolicyFields {
    /// How long after the new key was created consumers get to adopt it.
    #[schemars(with = "HumanDuration")]
    adoption_wait: String,
    /// How long the old key must have gone unused before it is set
    /// inactive; at least 4h unless allow_short_quiet_period is true.
    #[schemars(with = "HumanDuration")]
    quiet_period: String,
    /// How long the old key stays inactive before it is deleted.
    #[schemars(with = "HumanDuration")]
    verify_period: String,
    /// Whether the new key must have been used before the old one is retired.
    require_new_key_use: bool,
    /// A quiet period under 4h was accepted on purpose
    /// (--allow-short-quiet-period).
    #[serde(default)]
    allow_short_quiet_period: bool,
    /// How long past its own wait a plan may stay in a waiting phase before
    /// it is overdue (default 7d).
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    overdue_after: Option<String>,
}

impl TryFrom<PolicyFields> for Policy {
    type Error = String;

    fn try_from(fields: PolicyFields) -> Result<Self, Self::Error> {
        let duration = |field: &str, text: &str| {
            text.parse::<HumanDuration>()
                .map_err(|e| format!("{field}: {e}"))
        };
        Ok(Policy {
            adoption_wait: duration("adoption_wait", &fields.adoption_wait)?,
            quiet_period: duration("quiet_period", &fields.quiet_period)?,
            verify_period: duration("verify_period", &fields.verify_period)?,
            require_new_key_use: fields.require_new_key_use,
            allow_short_quiet_period: fields.allow_short_quiet_period,
            overdue_after: match &fields.overdue_after {
                Some(text) => duration("overdue_after", text)?,
                None => DEFAULT_OVERDUE_AFTER,
            },
        })
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            adoption_wait: HumanDuration::from_days(7),
            quiet_period: HumanDuration::from_days(3),
            verify_period: HumanDuration::from_days(7),
            require_new_key_use: true,
            allow_short_quiet_period: false,
            overdue_after: DEFAULT_OVERDUE_AFTER,
        }
    }
}

/// Policy values as a `--policy FILE` or the `plan` flags give them: each
/// one optional, laid over the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverrides {
    pub adoption_wait: Option<HumanDuration>,
    pub quiet_period: Option<HumanDuration>,
    pub verify_period: Option<HumanDuration>,
    pub require_new_key_use: Option<bool>,
    pub allow_short_quiet_period: Option<bool>,
    pub overdue_after: Option<HumanDuration>,
}

impl PolicyOverrides {
    /// `other`'s values win where it has them.
    pub fn overlay(self, other: PolicyOverrides) -> PolicyOverrides {
        PolicyOverrides {
            adoption_wait: other.adoption_wait.or(self.adoption_wait),
            quiet_period: other.quiet_period.or(self.quiet_period),
            verify_period: other.verify_period.or(self.verify_period),
            require_new_key_use: other.require_new_key_use.or(self.require_new_key_use),
            allow_short_quiet_period: other
                .allow_short_quiet_period
                .or(self.allow_short_quiet_period),
            overdue_after: other.overdue_after.or(self.overdue_after),
        }
    }

    /// The final policy over `base`, refusing a quiet period under the
    /// 4-hour floor unless explicitly allowed.
    pub fn resolve(self, base: Policy) -> Result<Policy, String> {
        let policy = Policy {
            adoption_wait: self.adoption_wait.unwrap_or(base.adoption_wait),
            quiet_period: self.quiet_period.unwrap_or(base.quiet_period),
            verify_period: self.verify_period.unwrap_or(base.verify_period),
            require_new_key_use: self.require_new_key_use.unwrap_or(base.require_new_key_use),
            allow_short_quiet_period: self
                .allow_short_quiet_period
                .unwrap_or(base.allow_short_quiet_period),
            overdue_after: self.overdue_after.unwrap_or(base.overdue_after),
        };
        if policy.quiet_period < MIN_QUIET_PERIOD && !policy.allow_short_quiet_period {
            return Err(format!(
                "quiet period {} is under the {} floor: AWS records a key's last use with a lag \
                 of up to four hours, so a shorter quiet period can deactivate a key that is still \
                 in use. Use --quiet-period {} or more, or pass --allow-short-quiet-period if you \
                 accept that risk (for example in a rehearsal).",
                policy.quiet_period, MIN_QUIET_PERIOD, MIN_QUIET_PERIOD
            ));
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let p = Policy::default();
        assert_eq!(p.adoption_wait.to_string(), "7d");
        assert_eq!(p.quiet_period.to_string(), "3d");
        assert_eq!(p.verify_period.to_string(), "7d");
        assert!(p.require_new_key_use);
    }

    #[test]
    fn short_quiet_period_needs_explicit_consent() {
        let short = PolicyOverrides {
            quiet_period: Some("1h".parse().unwrap()),
            ..Default::default()
        };
        let err = short.clone().resolve(Policy::default()).unwrap_err();
        assert!(err.contains("--allow-short-quiet-period"), "{err}");
        let allowed = short.overlay(PolicyOverrides {
            allow_short_quiet_period: Some(true),
            ..Default::default()
        });
        assert_eq!(
            allowed
                .resolve(Policy::default())
                .unwrap()
                .quiet_period
                .to_string(),
            "1h"
        );
    }

    #[test]
    fn flags_win_over_the_policy_file() {
        let file = PolicyOverrides {
            adoption_wait: Some("2d".parse().unwrap()),
            verify_period: Some("3d".parse().unwrap()),
            ..Default::default()
        };
        let flags = PolicyOverrides {
            adoption_wait: Some("1d".parse().unwrap()),
            ..Default::default()
        };
        let p = file.overlay(flags).resolve(Policy::default()).unwrap();
        assert_eq!(p.adoption_wait.to_string(), "1d");
        assert_eq!(p.verify_period.to_string(), "3d");
        assert_eq!(p.quiet_period.to_string(), "3d");
    }
}
