//! `iam-rotate report`: every user's keys, their age, status and last use,
//! and the user's plan phase. A table for people (key ids masked), or a
//! JSON array with `--output json` (full key ids).

use anyhow::Context as _;

use super::{Context, Status};
use crate::cli::ReportArgs;
use crate::fleet::{self, InventoryRequest, UserReport};
use crate::iam::Iam;
use crate::output;
use crate::plan::mask_key;

pub async fn execute(context: &Context, args: ReportArgs) -> anyhow::Result<Status> {
    let iam = context.iam().await;
    let caller = context.caller().await?;
    let users = iam
        .list_users(args.path_prefix.as_deref())
        .await
        .context("cannot list the account's users (IAM ListUsers)")?;
    let now = context.clock.now();
    let request = InventoryRequest {
        account: &caller.account,
        now,
        older_than: args.older_than.map(|d| d.to_chrono()),
        concurrency: usize::from(args.concurrency),
    };
    let rows = fleet::inventory(iam, &context.plans, users, &request).await;
    let status = if rows.iter().any(|r| r.error.is_some()) {
        Status::Failed
    } else {
        Status::Success
    };
    if context.json() {
        output::json(&rows)?;
        return Ok(status);
    }
    if rows.is_empty() {
        output::note(match args.older_than {
            Some(age) => format!(
                "no user in account {} has a key older than {age}",
                caller.account
            ),
            None => format!("no users in account {}", caller.account),
        });
        return Ok(status);
    }
    output::line(output::table(
        &[
            "USER",
            "KEY",
            "STATUS",
            "AGE",
            "LAST USED",
            "SERVICE",
            "REGION",
            "PLAN",
        ],
        table_rows(&rows, now),
    ));
    let keys: usize = rows.iter().map(|r| r.keys.len()).sum();
    output::note(format!(
        "{} users, {keys} access keys in account {}",
        rows.len(),
        caller.account
    ));
    for row in rows.iter().filter(|r| r.error.is_some()) {
        output::note(format!(
            "{}: could not be read in full: {}",
            row.user,
            row.error.as_deref().unwrap_or_default()
        ));
    }
    Ok(status)
}

fn table_rows(rows: &[UserReport], now: chrono::DateTime<chrono::Utc>) -> Vec<Vec<String>> {
    let mut table = Vec::new();
    for row in rows {
        let plan = row
            .plan_phase
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        if row.keys.is_empty() {
            let note = if row.error.is_some() {
                "(unreadable)"
            } else {
                "(no keys)"
            };
            table.push(vec![
                row.user.clone(),
                note.into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                plan,
            ]);
            continue;
        }
        for key in &row.keys {
            table.push(vec![
                row.user.clone(),
                mask_key(&key.id),
                key.status.to_string(),
                format!("{}d", key.age_days),
                key.last_used_at
                    .map(|at| crate::duration::relative(at, now))
                    .unwrap_or_else(|| "never".into()),
                key.last_used_service.clone().unwrap_or_else(|| "-".into()),
                key.last_used_region.clone().unwrap_or_else(|| "-".into()),
                plan.clone(),
            ]);
        }
    }
    table
}
