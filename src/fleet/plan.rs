//! `plan --all`: a plan for every matching user, read with bounded
//! concurrency. Changes nothing in AWS; writes only new plan files.

use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::aws::pacing::within_plan_budget;
use crate::iam::{Caller, Iam, User};
use crate::plan::{PlanStore, Stamp};
use crate::planner::{plan_listed_user, PlanRequest, Planned};
use crate::rotation::policy::Policy;

/// What `plan` did for one user.
#[derive(Clone, Debug, Serialize)]
pub struct PlanAllRow {
    pub user: String,
    pub account: String,
    #[serde(flatten)]
    pub planned: Planned,
}

/// What every plan of the batch gets.
pub struct PlanAllRequest<'a> {
    pub policy: &'a Policy,
    /// The delivery spec, placeholders unfilled.
    pub delivery: &'a str,
    /// Only users whose active key is older than this.
    pub older_than: Option<chrono::Duration>,
    pub concurrency: usize,
    /// `plan --notify`: notification targets kept in every plan (checked).
    pub notify: &'a [String],
}

/// Plans each of `users` (from ListUsers), at most `concurrency` at once.
/// One ListAccessKeys per user with no unfinished plan; none for a user
/// whose unfinished plan is kept. Rows come back sorted by user name.
pub async fn plan_all(
    iam: &dyn Iam,
    store: &PlanStore,
    caller: &Caller,
    stamp: &Stamp,
    users: Vec<User>,
    request: &PlanAllRequest<'_>,
) -> Vec<PlanAllRow> {
    let mut rows: Vec<PlanAllRow> = stream::iter(users)
        .map(|user| async move {
            let one = PlanRequest {
                user: &user.name,
                policy: request.policy,
                delivery: request.delivery,
                older_than: request.older_than,
                kind: crate::plan::PlanKind::Plan,
                notify: request.notify,
            };
            let planned =
                within_plan_budget(plan_listed_user(iam, store, caller, stamp, &one, &user))
                    .await
                    .unwrap_or_else(|e| Planned::Refused {
                        reason: e.to_string(),
                    });
            PlanAllRow {
                user: user.name.clone(),
                account: caller.account.clone(),
                planned,
            }
        })
        .buffer_unordered(request.concurrency.max(1))
        .collect()
        .await;
    rows.sort_by(|a, b| a.user.cmp(&b.user));
    rows
}
