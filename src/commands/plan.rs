//! `iam-rotate plan`: write a plan per user.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;

use super::{Context, Status};
use crate::cli::PlanArgs;
use crate::deliver::DEFAULT_SPEC;
use crate::error::UsageError;
use crate::iam::Iam;
use crate::output;
use crate::plan::Stamp;
use crate::planner::{plan_user, PlanRequest, Planned};
use crate::rotation::policy::{Policy, PolicyOverrides};

#[derive(Serialize)]
struct Row {
    user: String,
    account: String,
    #[serde(flatten)]
    planned: Planned,
}

pub async fn execute(context: &Context, args: PlanArgs) -> anyhow::Result<Status> {
    let policy = resolve_policy(&args)?;
    let delivery = args.deliver.as_deref().unwrap_or(DEFAULT_SPEC);
    let iam = context.iam().await;
    let caller = context.caller().await?;
    let users: Vec<String> = if args.all {
        let mut names: Vec<String> = iam
            .list_users(args.path_prefix.as_deref())
            .await
            .context("cannot list the account's users (IAM ListUsers)")?
            .into_iter()
            .map(|u| u.name)
            .filter(|name| !args.exclude.contains(name))
            .collect();
        names.sort();
        names
    } else {
        args.users.clone()
    };
    let stamp = Stamp {
        at: context.clock.now(),
        actor: caller.arn.clone(),
        clock: context.clock.note(),
    };
    let older_than = args.older_than.map(|d| d.to_chrono());
    let mut rows = Vec::new();
    let mut status = Status::Success;
    for user in &users {
        let request = PlanRequest {
            user,
            policy: &policy,
            delivery,
            older_than,
        };
        let planned = match plan_user(iam, &context.plans, &caller, &stamp, &request).await {
            Ok(p) => p,
            Err(e) => Planned::Refused {
                reason: e.to_string(),
            },
        };
        // Naming a user who cannot be planned is an error; with --all it is
        // triage, reported in the summary.
        if matches!(planned, Planned::Refused { .. }) && !args.all {
            status = status.and(Status::Failed);
        }
        if !context.json() {
            print_row(user, &planned);
        }
        rows.push(Row {
            user: user.clone(),
            account: caller.account.clone(),
            planned,
        });
    }
    if context.json() {
        output::json(&rows)?;
    } else if users.len() > 1 || args.all {
        let count = |f: fn(&Planned) -> bool| rows.iter().filter(|r| f(&r.planned)).count();
        output::note(format!(
            "{} users: {} planned, {} skipped, {} need triage",
            rows.len(),
            count(|p| matches!(p, Planned::Planned { .. })),
            count(|p| matches!(p, Planned::Skipped { .. })),
            count(|p| matches!(p, Planned::Refused { .. })),
        ));
    }
    Ok(status)
}

pub(super) fn print_row(user: &str, planned: &Planned) {
    match planned {
        Planned::Planned {
            path,
            old_key,
            replaced,
        } => {
            let replaced = replaced
                .map(|phase| format!(" (replacing a plan that was {phase})"))
                .unwrap_or_default();
            output::line(format!(
                "{user}: planned rotation of key {} -> {}{replaced}",
                crate::plan::mask_key(old_key),
                path.display()
            ));
            output::note(format!(
                "  next: `iam-rotate run {user}` creates the second key"
            ));
        }
        Planned::Skipped { reason } => output::line(format!("{user}: skipped: {reason}")),
        Planned::Refused { reason } => output::line(format!("{user}: not planned: {reason}")),
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
             verify_period (durations like 7d), require_new_key_use and \
             allow_short_quiet_period (true/false)",
            path.display()
        ))
        .into()
    })
}
