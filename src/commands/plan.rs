//! `iam-rotate plan`: write a plan per user.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::{Context, Status};
use crate::cli::PlanArgs;
use crate::deliver::DEFAULT_SPEC;
use crate::error::UsageError;
use crate::fleet::{self, PlanAllRequest, PlanAllRow};
use crate::iam::Iam;
use crate::output;
use crate::plan::Stamp;
use crate::planner::{plan_user, PlanRequest, Planned};
use crate::rotation::policy::{Policy, PolicyOverrides};

pub async fn execute(context: &Context, args: PlanArgs) -> anyhow::Result<Status> {
    let policy = resolve_policy(&args)?;
    let delivery = args.deliver.as_deref().unwrap_or(DEFAULT_SPEC);
    // A malformed spec is a usage error before anything is read or
    // planned; the placeholders are filled with stand-ins for the check.
    crate::deliver::Destination::resolve(delivery, "user", "123456789012")
        .map_err(|e| UsageError(format!("--deliver: {e}")))?;
    if let Some(accounts) = super::accounts::selected(context, &context.org).await? {
        let (args_ref, policy) = (&args, &policy);
        let every = move |iam: crate::aws::AwsIam, caller: crate::iam::Caller| async move {
            let stamp = Stamp::new(context.clock.as_ref(), &caller);
            plan_all(context, &iam, args_ref, policy, delivery, &caller, &stamp).await
        };
        return super::accounts::plan_each(context, accounts, every).await;
    }
    let iam = context.iam().await;
    let caller = context.caller().await?;
    let stamp = Stamp::new(context.clock.as_ref(), &caller);
    if args.all {
        let document = plan_all(context, iam, &args, &policy, delivery, &caller, &stamp).await?;
        if context.json() {
            output::json(&document)?;
        }
        return Ok(Status::Success);
    }
    let mut rows = Vec::new();
    let mut status = Status::Success;
    for user in &args.users {
        let request = PlanRequest {
            user,
            policy: &policy,
            delivery,
            older_than: None,
            kind: crate::plan::PlanKind::Plan,
            notify: &context.plan_notify,
        };
        let planned = match plan_user(iam, &context.plans, &caller, &stamp, &request).await {
            Ok(p) => p,
            Err(e) => Planned::Refused {
                reason: e.to_string(),
            },
        };
        // Naming a user who cannot be planned is an error.
        if matches!(planned, Planned::Refused { .. }) {
            status = status.and(Status::Failed);
        }
        if !context.json() {
            print_row(user, &planned);
        }
        rows.push(PlanAllRow {
            user: user.clone(),
            account: caller.account.clone(),
            planned,
        });
    }
    if context.json() {
        output::json(&rows)?;
    } else if rows.len() > 1 {
        output::note(counts_text(&rows));
    }
    Ok(status)
}

/// The `plan --all` summary as JSON: the rows, grouped.
#[derive(Serialize)]
struct PlanAllSummary<'a> {
    account: &'a str,
    total: usize,
    planned: Vec<&'a PlanAllRow>,
    skipped: Vec<&'a PlanAllRow>,
    needs_triage: Vec<&'a PlanAllRow>,
    excluded: Vec<&'a str>,
}

/// `plan --all`: every user of the account (under `--path-prefix`), except
/// `--exclude`d ones. Users that cannot be planned as they are (two keys,
/// only an inactive key) need triage: listed, not planned, not an error.
/// Text goes out as it comes; the JSON summary is returned, for the caller
/// to print (one document, also over several accounts).
async fn plan_all(
    context: &Context,
    iam: &dyn Iam,
    args: &PlanArgs,
    policy: &crate::rotation::policy::Policy,
    delivery: &str,
    caller: &crate::iam::Caller,
    stamp: &Stamp,
) -> anyhow::Result<serde_json::Value> {
    let mut users = iam
        .list_users(args.path_prefix.as_deref())
        .await
        .context("cannot list the account's users (IAM ListUsers)")?;
    let mut excluded = Vec::new();
    users.retain(|u| {
        let keep = !args.exclude.contains(&u.name);
        if !keep {
            excluded.push(u.name.clone());
        }
        keep
    });
    excluded.sort();
    let request = PlanAllRequest {
        policy,
        delivery,
        older_than: args.older_than.map(|d| d.to_chrono()),
        concurrency: usize::from(args.concurrency),
        notify: &context.plan_notify,
    };
    let rows = fleet::plan_all(iam, &context.plans, caller, stamp, users, &request).await;
    let group = |f: fn(&Planned) -> bool| rows.iter().filter(|r| f(&r.planned)).collect::<Vec<_>>();
    let summary = PlanAllSummary {
        account: &caller.account,
        total: rows.len(),
        planned: group(|p| matches!(p, Planned::Planned { .. })),
        skipped: group(|p| matches!(p, Planned::Skipped { .. })),
        needs_triage: group(|p| matches!(p, Planned::Refused { .. })),
        excluded: excluded.iter().map(String::as_str).collect(),
    };
    let document = serde_json::to_value(&summary)?;
    if context.json() {
        return Ok(document);
    }
    for row in &rows {
        // One line per user planned or needing a person; the skipped ones
        // only with -v, since a big account has many.
        match &row.planned {
            Planned::Skipped { reason } => {
                tracing::info!("{}: skipped: {reason}", row.user)
            }
            planned => output::line(row_text(&row.user, planned)),
        }
    }
    let mut text = format!("account {}: {}", caller.account, counts_text(&rows));
    if !excluded.is_empty() {
        text.push_str(&format!(", {} excluded", excluded.len()));
    }
    if !summary.needs_triage.is_empty() {
        let names: Vec<&str> = summary
            .needs_triage
            .iter()
            .map(|r| r.user.as_str())
            .collect();
        text.push_str(&format!(
            "\n  need triage (not planned; see each reason above): {}",
            names.join(", ")
        ));
    }
    if !summary.planned.is_empty() {
        text.push_str("\n  next: `iam-rotate run --all` creates the second keys");
    }
    output::line(text);
    Ok(document)
}

fn counts_text(rows: &[PlanAllRow]) -> String {
    let count = |f: fn(&Planned) -> bool| rows.iter().filter(|r| f(&r.planned)).count();
    format!(
        "{} users: {} planned, {} skipped, {} need triage",
        rows.len(),
        count(|p| matches!(p, Planned::Planned { .. })),
        count(|p| matches!(p, Planned::Skipped { .. })),
        count(|p| matches!(p, Planned::Refused { .. })),
    )
}

pub(super) fn print_row(user: &str, planned: &Planned) {
    output::line(row_text(user, planned));
    if matches!(planned, Planned::Planned { .. }) {
        output::note(format!(
            "  next: `iam-rotate run {user}` creates the second key"
        ));
    }
}

fn row_text(user: &str, planned: &Planned) -> String {
    match planned {
        Planned::Planned {
            path,
            old_key,
            replaced,
        } => {
            let replaced = replaced
                .map(|phase| format!(" (replacing a plan that was {phase})"))
                .unwrap_or_default();
            format!(
                "{user}: planned rotation of key {} -> {}{replaced}",
                crate::plan::mask_key(old_key),
                path.display()
            )
        }
        Planned::Skipped { reason } => format!("{user}: skipped: {reason}"),
        Planned::Refused { reason } => format!("{user}: not planned: {reason}"),
    }
}

/// Defaults, then `--policy FILE`, then flags.
fn resolve_policy(args: &PlanArgs) -> anyhow::Result<Policy> {
    let from_file = match &args.policy {
        Some(path) => load_policy_file(path)?,
        None => PolicyOverrides::default(),
    };
    let from_flags = PolicyOverrides {
        adoption_wait: args.adoption_wait,
        quiet_period: args.quiet_period,
        verify_period: args.verify_period,
        require_new_key_use: None,
        allow_short_quiet_period: args.allow_short_quiet_period.then_some(true),
        overdue_after: args.overdue_after,
    };
    from_file
        .overlay(from_flags)
        .resolve(Policy::default())
        .map_err(|e| UsageError(e).into())
}

fn load_policy_file(path: &Path) -> anyhow::Result<PolicyOverrides> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| {
        let (line, column, message) = crate::plan::store::located(&e);
        UsageError(format!(
            "{}:{line}:{column}: {message}. A policy file may set adoption_wait, quiet_period, \
             verify_period, overdue_after (durations like 7d), require_new_key_use and \
             allow_short_quiet_period (true/false)",
            path.display()
        ))
        .into()
    })
}
