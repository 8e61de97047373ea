//! AWS Organizations: the organisation's accounts (ListAccounts), and the
//! SDK configuration that acts in one of them through an assumed role.

use aws_config::sts::AssumeRoleProvider;
use aws_config::SdkConfig;
use aws_sdk_organizations::error::ProvideErrorMetadata;
use aws_types::sdk_config::SharedCredentialsProvider;

/// One account as Organizations lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgAccount {
    pub id: String,
    pub name: String,
    /// `State` (ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED), else the older
    /// `Status` (ACTIVE, SUSPENDED, PENDING_CLOSURE), as AWS spells it.
    pub state: String,
}

impl OrgAccount {
    /// Only ACTIVE accounts can be worked on: a suspended or closed one
    /// refuses every call.
    pub fn is_active(&self) -> bool {
        self.state == "ACTIVE"
    }
}

/// The role iam-rotate assumes by default in each account of `--org`.
pub const DEFAULT_ROLE_NAME: &str = "IamRotate";

/// Every account of the caller's organisation (all pages), as listed from
/// the management account or a delegated administrator.
pub async fn list_accounts(config: &SdkConfig) -> Result<Vec<OrgAccount>, String> {
    let client = aws_sdk_organizations::Client::from_conf(
        aws_sdk_organizations::config::Builder::from(config)
            .interceptor(super::log::RequestLog)
            .build(),
    );
    let mut pages = client.list_accounts().into_paginator().send();
    let mut accounts = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            let code = e.code().unwrap_or("no answer");
            let message = e
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string());
            format!(
                "cannot list the organisation's accounts (Organizations ListAccounts: {code}: \
                 {message}). Run from the management account or a delegated administrator, with \
                 organizations:ListAccounts allowed, or list the accounts in --accounts-file"
            )
        })?;
        accounts.extend(page.accounts().iter().filter_map(|account| {
            let state = account
                .state()
                .map(|s| s.as_str())
                .or_else(|| account.status().map(|s| s.as_str()))
                .unwrap_or_default();
            Some(OrgAccount {
                id: account.id()?.to_string(),
                name: account.name().unwrap_or_default().to_string(),
                state: state.to_string(),
            })
        }));
    }
    Ok(accounts)
}

/// The partition (`aws`, `aws-cn`, `aws-us-gov`, …) of an ARN.
pub fn partition_of(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next()) {
        (Some("arn"), Some(partition)) if !partition.is_empty() => Some(partition),
        _ => None,
    }
}

/// `arn:<partition>:iam::<account>:role/<name>`.
pub fn role_arn(partition: &str, account: &str, role_name: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{role_name}")
}

/// The role session name for one run: `iam-rotate-<run id>`, cut to the 64
/// characters STS allows and to the characters it accepts, so that
/// CloudTrail shows which run made each change.
pub fn session_name(run_id: &str) -> String {
    let allowed = |c: &char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c);
    let name: String = format!("{}-{run_id}", super::SESSION_NAME)
        .chars()
        .map(|c| if allowed(&c) { c } else { '-' })
        .take(64)
        .collect();
    name
}

/// A configuration acting in another account: `role_arn` assumed (lazily,
/// on the first call) with the credentials of `base`.
pub async fn assume(
    base: &SdkConfig,
    role_arn: &str,
    external_id: Option<&str>,
    session_name: &str,
) -> SdkConfig {
    let mut role = AssumeRoleProvider::builder(role_arn).session_name(session_name);
    if let Some(external_id) = external_id {
        role = role.external_id(external_id);
    }
    let provider = role.configure(base).build().await;
    base.clone()
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_lives_in_the_callers_partition() {
        let caller = "arn:aws-cn:sts::111111111111:assumed-role/Ops/alice";
        let partition = partition_of(caller).unwrap();
        assert_eq!(
            role_arn(partition, "222222222222", "IamRotate"),
            "arn:aws-cn:iam::222222222222:role/IamRotate"
        );
        assert_eq!(partition_of("arn:aws:iam::1:user/x"), Some("aws"));
        assert_eq!(partition_of("not an arn"), None);
        assert_eq!(partition_of("arn::iam::1:user/x"), None);
    }

    #[test]
    fn a_session_name_is_one_sts_accepts() {
        assert_eq!(
            session_name("20261202T0300Z-ab12"),
            "iam-rotate-20261202T0300Z-ab12"
        );
        let odd = session_name(&format!("host:1/{}", "x".repeat(80)));
        assert_eq!(odd.len(), 64);
        assert!(odd.starts_with("iam-rotate-host-1-x"));
    }

    #[test]
    fn only_active_accounts_are_worked_on() {
        let account = |state: &str| OrgAccount {
            id: "222222222222".into(),
            name: "a".into(),
            state: state.into(),
        };
        assert!(account("ACTIVE").is_active());
        for state in ["SUSPENDED", "PENDING_CLOSURE", "CLOSED", ""] {
            assert!(!account(state).is_active(), "{state}");
        }
    }
}
