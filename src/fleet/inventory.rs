//! `report`: every user's access keys, their age, status and last use, and
//! the user's plan phase, gathered with bounded concurrency.
//!
//! Per user: one ListAccessKeys, then one GetAccessKeyLastUsed per key
//! (skipped for users that `--older-than` leaves out). A user whose calls
//! fail keeps the error on their row; the other users are still reported.

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::aws::pacing::within_plan_budget;
use crate::iam::{Iam, IamError, LastUse, User};
use crate::plan::{KeyStatus, Phase, PlanStore};

/// One access key as the report shows it. `id` is the full key id; text
/// output masks it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    pub id: String,
    pub status: KeyStatus,
    pub created_at: DateTime<Utc>,
    pub age_days: i64,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_service: Option<String>,
    pub last_used_region: Option<String>,
}

/// One user: their keys and their plan, if any.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserReport {
    pub user: String,
    pub account: String,
    pub arn: String,
    pub path: String,
    /// The phase of the user's plan in this account's folder.
    pub plan_phase: Option<Phase>,
    pub keys: Vec<KeyReport>,
    /// What could not be read for this user (an IAM call or the plan file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Which users and keys to report.
pub struct InventoryRequest<'a> {
    pub account: &'a str,
    pub now: DateTime<Utc>,
    /// Only users with a key older than this.
    pub older_than: Option<chrono::Duration>,
    pub concurrency: usize,
}

/// Reads the keys of each of `users`, at most `concurrency` users at once.
/// Rows come back sorted by user name.
pub async fn inventory(
    iam: &dyn Iam,
    store: &PlanStore,
    users: Vec<User>,
    request: &InventoryRequest<'_>,
) -> Vec<UserReport> {
    let mut rows: Vec<UserReport> = stream::iter(users)
        .map(|user| within_plan_budget(report_user(iam, store, user, request)))
        .buffer_unordered(request.concurrency.max(1))
        .filter_map(|row| async move { row })
        .collect()
        .await;
    rows.sort_by(|a, b| a.user.cmp(&b.user));
    rows
}

/// `None` when `--older-than` leaves the user out.
async fn report_user(
    iam: &dyn Iam,
    store: &PlanStore,
    user: User,
    request: &InventoryRequest<'_>,
) -> Option<UserReport> {
    let mut row = UserReport {
        user: user.name,
        account: request.account.to_string(),
        arn: user.arn,
        path: user.path,
        plan_phase: None,
        keys: Vec::new(),
        error: None,
    };
    let mut errors = Vec::new();
    match iam.list_access_keys(&row.user).await {
        Ok(keys) => {
            if let Some(min_age) = request.older_than {
                if !keys.iter().any(|k| request.now - k.created_at >= min_age) {
                    return None;
                }
            }
            for key in keys {
                let used = match iam.access_key_last_used(&key.id).await {
                    Ok(used) => used,
                    // Deleted between the listing and now.
                    Err(IamError::NoSuchEntity { .. }) => LastUse::default(),
                    Err(e) => {
                        errors.push(e.to_string());
                        LastUse::default()
                    }
                };
                row.keys.push(KeyReport {
                    age_days: (request.now - key.created_at).num_days().max(0),
                    id: key.id,
                    status: key.status,
                    created_at: key.created_at,
                    last_used_at: used.at,
                    last_used_service: used.service,
                    last_used_region: used.region,
                });
            }
        }
        Err(e) => errors.push(e.to_string()),
    }
    let plan_path = store.path_for(request.account, &row.user);
    match store.find(&plan_path) {
        Ok(plan) => row.plan_phase = plan.map(|plan| plan.phase),
        Err(e) => errors.push(e.to_string()),
    }
    if !errors.is_empty() {
        row.error = Some(errors.join("; "));
    }
    Some(row)
}
