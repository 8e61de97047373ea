//! `iam-rotate status`: one row a plan, read from the plan files alone:
//! where it stands, what comes next, the command to run, and whether it
//! needs a person (`--needs-attention`: blocked or overdue, exit 3).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{is_plan_path, plan_path, user_of, Context, Status};
use crate::cli::StatusArgs;
use crate::output;
use crate::plan::{Phase, Plan};
use crate::rotation::{outlook, overdue};

#[derive(Serialize)]
pub struct StatusRow {
    pub user: String,
    pub account: String,
    pub phase: Phase,
    pub phase_since: DateTime<Utc>,
    pub next_step: String,
    pub due_at: Option<DateTime<Utc>>,
    pub blocked_in: Option<Phase>,
    pub blocked_reason: Option<String>,
    pub last_error: Option<String>,
    pub old_key: String,
    pub new_key: Option<String>,
    /// Stuck in a waiting phase past its wait plus `overdue_after`.
    pub overdue: bool,
    /// What is overdue and what a person must do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_reason: Option<String>,
    /// The exact command to run next (`iam-rotate …`), or null.
    pub next_command: Option<String>,
    pub path: PathBuf,
}

impl StatusRow {
    pub fn new(
        plan: &Plan,
        path: PathBuf,
        now: DateTime<Utc>,
        next_command: Option<String>,
    ) -> Self {
        let look = outlook(plan, now);
        let overdue = overdue(plan, now);
        StatusRow {
            user: plan.user.clone(),
            account: plan.account.clone(),
            phase: plan.phase,
            phase_since: plan.phase_since,
            next_step: look.next_step,
            due_at: look.due_at,
            blocked_in: plan.blocked_in,
            blocked_reason: plan.blocked_reason.clone(),
            last_error: plan.last_error.clone(),
            old_key: plan.old_key.id.clone(),
            new_key: plan.new_key.as_ref().map(|k| k.id.clone()),
            overdue: overdue.is_some(),
            overdue_reason: overdue.map(|o| o.what),
            next_command,
            path,
        }
    }

    /// Blocked or overdue: a person must act.
    pub fn needs_attention(&self) -> bool {
        self.phase == Phase::Blocked || self.overdue
    }
}

#[derive(Serialize)]
struct Unreadable {
    user: String,
    path: PathBuf,
    error: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Row {
    Plan(Box<StatusRow>),
    Unreadable(Unreadable),
}

/// The plan files the arguments name.
async fn select(context: &Context, args: &StatusArgs) -> anyhow::Result<Vec<PathBuf>> {
    // --org / --accounts-file: the folders of those accounts (read with the
    // runner's own access to the plans; no role is assumed).
    if let Some(accounts) = super::accounts::selected(context, &context.org).await? {
        if !args.users.is_empty() || args.all_accounts {
            return Err(crate::error::UsageError(
                "with --org or --accounts-file, status reads every plan of those accounts; \
                 drop the user names and --all-accounts"
                    .into(),
            )
            .into());
        }
        let mut paths = Vec::new();
        for account in accounts {
            paths.extend(context.plans.list(&account.id)?);
        }
        return Ok(paths);
    }
    let need_account = args.users.iter().any(|u| !is_plan_path(u))
        || (args.users.is_empty() && !args.all_accounts);
    let account = if need_account {
        context.reading_account(args.account.as_deref()).await?
    } else {
        args.account.clone().unwrap_or_default()
    };
    if !args.users.is_empty() {
        return args
            .users
            .iter()
            .map(|u| plan_path(&context.plans, u, &account))
            .collect();
    }
    let accounts = if args.all_accounts {
        context.plans.accounts()?
    } else {
        vec![account]
    };
    let mut paths = Vec::new();
    for account in accounts {
        paths.extend(context.plans.list(&account)?);
    }
    Ok(paths)
}

pub async fn execute(context: &Context, args: StatusArgs) -> anyhow::Result<Status> {
    if !context.plans.root_exists() {
        anyhow::bail!(
            "the plans folder {} does not exist. Pass --plans-dir (or set IAM_ROTATE_PLANS_DIR) \
             to the folder that holds your plans, or create plans with `iam-rotate plan`",
            context.plans.root().display()
        );
    }
    let paths = select(context, &args).await?;
    let now = context.clock.now();
    let mut rows = load_rows(context, &paths, now);
    if args.needs_attention {
        rows.retain(|row| match row {
            Row::Plan(r) => r.needs_attention(),
            Row::Unreadable(_) => true,
        });
    }
    let status = if rows.iter().any(|r| matches!(r, Row::Unreadable(_))) {
        Status::Failed
    } else if args.needs_attention && !rows.is_empty() {
        Status::Blocked
    } else {
        Status::Success
    };
    if context.json() {
        output::json(&rows)?;
        return Ok(status);
    }
    if rows.is_empty() {
        output::note(if args.needs_attention {
            "no plan needs attention"
        } else {
            "no plans found"
        });
        return Ok(status);
    }
    let with_account = args.all_accounts || context.org.org || context.org.accounts_file.is_some();
    let table_rows = rows
        .iter()
        .map(|row| match row {
            Row::Plan(r) => vec![
                r.account.clone(),
                r.user.clone(),
                if r.overdue {
                    format!("{} (OVERDUE)", r.phase)
                } else {
                    r.phase.to_string()
                },
                output::time(r.phase_since),
                r.next_step.clone(),
                output::opt_time(r.due_at),
                r.next_command.clone().unwrap_or_default(),
                r.blocked_reason
                    .clone()
                    .or_else(|| r.overdue_reason.as_ref().map(|e| format!("overdue: {e}")))
                    .or_else(|| r.last_error.as_ref().map(|e| format!("last error: {e}")))
                    .unwrap_or_default(),
            ],
            Row::Unreadable(u) => vec![
                account_of(&u.path),
                u.user.clone(),
                "unreadable".into(),
                String::new(),
                "fix the plan file".into(),
                String::new(),
                String::new(),
                u.error.clone(),
            ],
        })
        .map(|mut row: Vec<String>| {
            if !with_account {
                row.remove(0);
            }
            row
        })
        .collect();
    let header = [
        "ACCOUNT",
        "USER",
        "PHASE",
        "SINCE",
        "NEXT STEP",
        "DUE AT",
        "RUN NEXT",
        "NEEDS ATTENTION",
    ];
    let header = if with_account {
        &header[..]
    } else {
        &header[1..]
    };
    output::line(output::table(header, table_rows));
    Ok(status)
}

/// Below this many plans, one thread reads them all.
const PARALLEL_FROM: usize = 512;

/// Reads and parses every plan, in the order given. Parsing YAML is most of
/// the cost of `status` over a big folder, so it is spread over the cores.
fn load_rows(context: &Context, paths: &[PathBuf], now: DateTime<Utc>) -> Vec<Row> {
    let store = &context.plans;
    let load = |path: &PathBuf| match store.load(path) {
        Ok(plan) => Row::Plan(Box::new(StatusRow::new(
            &plan,
            path.clone(),
            now,
            context.next_command(&plan),
        ))),
        Err(e) => Row::Unreadable(Unreadable {
            user: user_of(path),
            path: path.clone(),
            error: e.to_string(),
        }),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads == 1 || paths.len() < PARALLEL_FROM {
        return paths.iter().map(load).collect();
    }
    let load = &load;
    std::thread::scope(|scope| {
        let parts: Vec<_> = paths
            .chunks(paths.len().div_ceil(threads))
            .map(|part| scope.spawn(move || part.iter().map(load).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .flat_map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The account folder a plan file sits in.
fn account_of(path: &std::path::Path) -> String {
    path.parent()
        .and_then(|dir| dir.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}
