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
    if let Some(accounts) = super::accounts::selected(context, &context.org).await? {
        return report_each(context, &args, &accounts).await;
    }
    let iam = context.iam().await;
    let caller = context.caller().await?;
    let rows = read_account(context, &args, iam, &caller).await?;
    if context.json() {
        output::json(&rows)?;
        return Ok(status_of(&rows));
    }
    print_account(context, &args, &caller.account, &rows);
    Ok(status_of(&rows))
}

/// `report --org` / `--accounts-file`: each account through its role. JSON:
/// `{"accounts": [outcome…], "users": [every account's rows]}`; text: a
/// table per account.
async fn report_each(
    context: &Context,
    args: &ReportArgs,
    accounts: &[crate::fleet::org::Account],
) -> anyhow::Result<Status> {
    let each = |iam: crate::aws::AwsIam, caller: crate::iam::Caller| async move {
        read_account(context, args, &iam, &caller).await
    };
    let (runs, outcomes) = super::accounts::each_reached(context, accounts, each).await;
    let rows: Vec<(&str, Vec<UserReport>)> = accounts
        .iter()
        .zip(runs)
        .filter_map(|(account, run)| Some((account.id.as_str(), run.done()?)))
        .collect();
    let status = rows
        .iter()
        .fold(super::accounts::status_of_accounts(&outcomes), |s, r| {
            s.and(status_of(&r.1))
        });
    if context.json() {
        let users: Vec<&UserReport> = rows.iter().flat_map(|(_, rows)| rows).collect();
        output::json(&serde_json::json!({ "accounts": outcomes, "users": users }))?;
    } else {
        for (account, account_rows) in &rows {
            print_account(context, args, account, account_rows);
        }
    }
    super::accounts::say_outcomes(context, &outcomes);
    Ok(status)
}

/// Every user of one account, with keys and plan phase.
async fn read_account(
    context: &Context,
    args: &ReportArgs,
    iam: &dyn Iam,
    caller: &crate::iam::Caller,
) -> anyhow::Result<Vec<UserReport>> {
    let users = iam
        .list_users(args.path_prefix.as_deref())
        .await
        .context("cannot list the account's users (IAM ListUsers)")?;
    let request = InventoryRequest {
        account: &caller.account,
        now: context.clock.now(),
        older_than: args.older_than.map(|d| d.to_chrono()),
        concurrency: usize::from(args.concurrency),
    };
    Ok(fleet::inventory(iam, &context.plans, users, &request).await)
}

/// A user that could not be read in full is an error (exit 1).
fn status_of(rows: &[UserReport]) -> Status {
    if rows.iter().any(|r| r.error.is_some()) {
        Status::Failed
    } else {
        Status::Success
    }
}

/// One account's table, for people.
fn print_account(context: &Context, args: &ReportArgs, account: &str, rows: &[UserReport]) {
    let now = context.clock.now();
    if rows.is_empty() {
        output::note(match args.older_than {
            Some(age) => format!("no user in account {} has a key older than {age}", account),
            None => format!("no users in account {}", account),
        });
        return;
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
        table_rows(rows, now),
    ));
    let keys: usize = rows.iter().map(|r| r.keys.len()).sum();
    output::note(format!(
        "{} users, {keys} access keys in account {}",
        rows.len(),
        account
    ));
    for row in rows.iter().filter(|r| r.error.is_some()) {
        output::note(format!(
            "{}: could not be read in full: {}",
            row.user,
            row.error.as_deref().unwrap_or_default()
        ));
    }
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
