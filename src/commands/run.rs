//! `iam-rotate run`: advance plans through every step that is due now,
//! several at once (`--concurrency`), with progress bars on a terminal and
//! plain lines otherwise, and a summary at the end of a batch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{plan_path, status_of_outcome, Context, Status};
use crate::cli::RunArgs;
use crate::engine::{Outcome, RunOptions};
use crate::fleet::{self, Category, Fleet, RunProgress, Summary};
use crate::output;
use crate::progress::BatchBars;

pub use crate::fleet::run::{run_one, RunResult};

/// The exit status one plan's result asks for: an error on the plan
/// failed (exit 1), a locked plan skipped is no failure, and an outcome
/// maps as [`status_of_outcome`] says.
pub fn status_of(result: &RunResult) -> Status {
    match result {
        RunResult::Report(report) => status_of_outcome(&report.outcome),
        RunResult::Other { .. } if result.category() == Category::Failed => Status::Failed,
        RunResult::Other { .. } => Status::Success,
    }
}

pub async fn execute(context: &Context, args: RunArgs) -> anyhow::Result<Status> {
    let caller = context.caller().await?;
    let paths: Vec<PathBuf> = if args.all {
        context.plans.sweep_temporaries(&caller.account);
        context.plans.list(&caller.account)?
    } else {
        let mut paths = Vec::new();
        for user in &args.users {
            let path = plan_path(&context.plans, user, &caller.account)?;
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        paths
    };
    if paths.is_empty() {
        output::note(format!(
            "no plans in {} for account {}; create them with `iam-rotate plan`",
            context.plans.account_dir(&caller.account).display(),
            caller.account
        ));
    }
    let batch = args.all || paths.len() > 1;
    let fleet = Fleet {
        iam: Arc::new(context.iam().await.clone()),
        clock: context.clock.clone(),
        deliver: Arc::new(context.deliverer().await),
        caller,
        store: context.plans.clone(),
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        retry_blocked: args.retry_blocked,
    };
    let mut progress = Progress::new(context, paths.len(), batch);
    let results = fleet::run_all(
        &fleet,
        paths,
        options,
        usize::from(args.concurrency),
        &mut progress,
    )
    .await;
    progress.clear();
    let status = results
        .iter()
        .fold(Status::Success, |s, r| s.and(status_of(r)));
    if context.json() {
        output::json(&results)?;
    }
    if batch && !results.is_empty() {
        let text = summary_text(&Summary::of(&results));
        if context.json() {
            output::note(text);
        } else {
            output::line(text);
        }
    }
    Ok(status)
}

/// What a person watching a batch sees: bars on a terminal, plain lines
/// otherwise.
struct Progress {
    /// Set only when stderr is a terminal (and not `-q`).
    bars: Option<BatchBars>,
    json: bool,
    quiet: bool,
    now: DateTime<Utc>,
    total: usize,
    done: usize,
    counts: HashMap<Category, usize>,
}

impl Progress {
    fn new(context: &Context, total: usize, batch: bool) -> Self {
        let bars = (batch && !context.quiet)
            .then(|| BatchBars::new(total))
            .flatten();
        Progress {
            bars,
            json: context.json(),
            quiet: context.quiet,
            now: context.clock.now(),
            total,
            done: 0,
            counts: HashMap::new(),
        }
    }

    /// Removes the bars before the summary is printed.
    fn clear(&mut self) {
        if let Some(bars) = self.bars.take() {
            bars.clear();
        }
    }
}

impl RunProgress for Progress {
    fn started(&mut self, user: &str) {
        if let Some(bars) = &mut self.bars {
            bars.started(user);
        }
    }

    fn finished(&mut self, result: &RunResult) {
        self.done += 1;
        let category = result.category();
        *self.counts.entry(category).or_default() += 1;
        let text = (!self.json).then(|| format_result(result, self.now));
        match &mut self.bars {
            Some(bars) => bars.finished(result.user(), counts_text(&self.counts), text),
            None => {
                if let Some(text) = text {
                    output::line(text);
                } else if !self.quiet {
                    output::note(format!(
                        "[{}/{}] {}: {}",
                        self.done,
                        self.total,
                        result.user(),
                        category.as_str()
                    ));
                }
            }
        }
    }
}

fn counts_text(counts: &HashMap<Category, usize>) -> String {
    Category::ALL
        .iter()
        .filter_map(|c| counts.get(c).map(|n| format!("{} {n}", c.as_str())))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Names listed per category in the summary before "and N more"; blocked,
/// failed and other-account plans are always listed in full, since each
/// needs a person.
const NAMES_SHOWN: usize = 20;

pub fn summary_text(summary: &Summary) -> String {
    let counts: Vec<String> = Category::ALL
        .iter()
        .filter(|c| summary.count(**c) > 0 || matches!(c, Category::Blocked | Category::Failed))
        .map(|c| format!("{} {}", summary.count(*c), c.as_str()))
        .collect();
    let mut text = format!("{} plans: {}", summary.total, counts.join(", "));
    let always_listed = |c: Category| {
        matches!(
            c,
            Category::Blocked | Category::Failed | Category::WrongAccount
        )
    };
    for category in Category::ALL {
        let names = summary.names(category);
        if names.is_empty() {
            continue;
        }
        let shown = if always_listed(category) {
            names.len()
        } else {
            NAMES_SHOWN
        };
        let mut list = names
            .iter()
            .take(shown)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > shown {
            list.push_str(&format!(" and {} more", names.len() - shown));
        }
        text.push_str(&format!("\n  {}: {list}", category.as_str()));
    }
    if summary.count(Category::Blocked) > 0 {
        text.push_str("\n  blocked plans say why in `iam-rotate status`; fix the cause, then `iam-rotate run --retry-blocked USER`");
    }
    if summary.count(Category::WrongAccount) > 0 {
        text.push_str("\n  plans of another account were not touched; run them with credentials for their account (--profile or --role-arn)");
    }
    if summary.count(Category::Failed) > 0 {
        text.push_str("\n  failed plans keep the error (`last error` in `iam-rotate status`); run them again once it is fixed");
    }
    text
}

/// Prints one plan's result for people.
pub fn print_result(result: &RunResult, now: DateTime<Utc>) {
    output::line(format_result(result, now));
}

/// One plan's result for people, as one block of lines (so that plans
/// finishing together never interleave).
pub fn format_result(result: &RunResult, now: DateTime<Utc>) -> String {
    let mut lines = Vec::new();
    match result {
        RunResult::Other {
            user,
            state,
            reason,
            actions,
            ..
        } => {
            // What it did before the failure still happened.
            for action in actions {
                lines.push(format!("{user}: {action}"));
            }
            lines.push(format!("{user}: {state}: {reason}"));
        }
        RunResult::Report(r) => {
            // A block is said once, below, with its reason.
            for action in r.actions.iter().filter(|a| !a.starts_with("blocked: ")) {
                lines.push(format!("{}: {action}", r.user));
            }
            match &r.outcome {
                Outcome::Finished => {
                    lines.push(format!("{}: {} - nothing more to do", r.user, r.phase))
                }
                Outcome::Waiting {
                    until,
                    reason,
                    next,
                } => {
                    lines.push(format!("{}: {} - {reason}", r.user, r.phase));
                    if let Some(until) = until {
                        lines.push(format!(
                            "  can go on at {} ({})",
                            output::time(*until),
                            crate::duration::relative(*until, now)
                        ));
                    } else {
                        lines.push("  can go on as soon as that happens; run again then".into());
                    }
                    lines.push(format!("  meanwhile: {next}"));
                }
                Outcome::Blocked { reason } => {
                    lines.push(format!("{}: BLOCKED - {reason}", r.user));
                }
                Outcome::WrongAccount { reason } => {
                    lines.push(format!("{}: REFUSED - {reason}", r.user));
                }
                Outcome::WouldAct { step } => {
                    lines.push(format!("{}: {} - would {step} (dry run)", r.user, r.phase));
                }
            }
        }
    }
    lines.join("\n")
}
