//! `iam-rotate run`: advance plans through every step that is due now.

use std::path::PathBuf;

use serde::Serialize;

use super::{plan_path, user_of, Context, Status};
use crate::cli::RunArgs;
use crate::engine::{Engine, Outcome, RunOptions, RunReport};
use crate::output;
use crate::plan::PlanStore;

/// One plan's line in the result: a report, or why there is none.
#[derive(Serialize)]
#[serde(untagged)]
pub enum RunResult {
    Report(RunReport),
    Other {
        user: String,
        path: PathBuf,
        state: &'static str,
        reason: String,
    },
}

impl RunResult {
    pub fn status(&self) -> Status {
        match self {
            RunResult::Report(r) => match r.outcome {
                Outcome::Blocked { .. } => Status::Blocked,
                // The plan is fine; the invocation used the wrong credentials.
                Outcome::WrongAccount { .. } => Status::Failed,
                _ => Status::Success,
            },
            RunResult::Other {
                state: "failed", ..
            } => Status::Failed,
            RunResult::Other { .. } => Status::Success,
        }
    }
}

pub async fn execute(context: &Context, args: RunArgs) -> anyhow::Result<Status> {
    let caller = context.caller().await?;
    let paths: Vec<PathBuf> = if args.all {
        context.plans.sweep_temporaries(&caller.account);
        context.plans.list(&caller.account)?
    } else {
        args.users
            .iter()
            .map(|u| plan_path(&context.plans, u, &caller.account))
            .collect::<anyhow::Result<_>>()?
    };
    if paths.is_empty() {
        output::note(format!(
            "no plans in {} for account {}; create them with `iam-rotate plan`",
            context.plans.account_dir(&caller.account).display(),
            caller.account
        ));
    }
    let deliverer = context.deliverer().await;
    let engine = Engine {
        iam: context.iam().await,
        clock: context.clock.as_ref(),
        deliver: &deliverer,
        caller,
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        retry_blocked: args.retry_blocked,
    };
    let mut results = Vec::new();
    for path in paths {
        let result = run_one(&engine, path, options).await;
        if !context.json() {
            print_result(&result, context.clock.now());
        }
        results.push(result);
    }
    let status = results
        .iter()
        .fold(Status::Success, |s, r| s.and(r.status()));
    if context.json() {
        output::json(&results)?;
    }
    Ok(status)
}

/// Locks, loads and advances one plan; never fails the batch.
pub async fn run_one(engine: &Engine<'_>, path: PathBuf, options: RunOptions) -> RunResult {
    let user = user_of(&path);
    let failed = |path: PathBuf, reason: String| RunResult::Other {
        user: user.clone(),
        path,
        state: "failed",
        reason,
    };
    let mut locked = match PlanStore::lock(&path) {
        Ok(Some(locked)) => locked,
        Ok(None) => {
            return RunResult::Other {
                user: user.clone(),
                path,
                state: "skipped",
                reason: "locked: another iam-rotate process is working on this plan right now"
                    .into(),
            }
        }
        Err(e) => return failed(path, e.to_string()),
    };
    match engine.run(&mut locked, options).await {
        Ok(report) => RunResult::Report(report),
        Err(e) => failed(path, e.to_string()),
    }
}

pub fn print_result(result: &RunResult, now: chrono::DateTime<chrono::Utc>) {
    match result {
        RunResult::Other {
            user,
            state,
            reason,
            ..
        } => output::line(format!("{user}: {state}: {reason}")),
        RunResult::Report(r) => {
            // A block is said once, below, with its reason.
            for action in r.actions.iter().filter(|a| !a.starts_with("blocked: ")) {
                output::line(format!("{}: {action}", r.user));
            }
            match &r.outcome {
                Outcome::Finished => {
                    output::line(format!("{}: {} - nothing more to do", r.user, r.phase))
                }
                Outcome::Waiting {
                    until,
                    reason,
                    next,
                } => {
                    output::line(format!("{}: {} - {reason}", r.user, r.phase));
                    if let Some(until) = until {
                        output::line(format!(
                            "  can go on at {} ({})",
                            output::time(*until),
                            crate::duration::relative(*until, now)
                        ));
                    } else {
                        output::line("  can go on as soon as that happens; run again then");
                    }
                    output::line(format!("  meanwhile: {next}"));
                }
                Outcome::Blocked { reason } => {
                    output::line(format!("{}: BLOCKED - {reason}", r.user));
                }
                Outcome::WrongAccount { reason } => {
                    output::line(format!("{}: REFUSED - {reason}", r.user));
                }
                Outcome::WouldAct { step } => {
                    output::line(format!("{}: {} - would {step} (dry run)", r.user, r.phase));
                }
            }
        }
    }
}
