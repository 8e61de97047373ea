//! `iam-rotate run`: advance plans through every step that is due now,
//! several at once (`--concurrency`), with progress bars on a terminal and
//! plain lines otherwise, and a summary at the end of a batch.
//!
//! `--output json` prints one document, whatever the outcome:
//! `{"results": [...], "summary": {...}}`, each result with the same
//! fields ([`ResultView`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{plan_path, status_of_outcome, Context, Status};
use crate::cli::RunArgs;
use crate::engine::{Outcome, RunAction, RunOptions};
use crate::fleet::{self, Category, Fleet, RunProgress, Summary};
use crate::output;
use crate::plan::{ActionKind, Phase};
use crate::progress::BatchBars;
use crate::rotation::{Overdue, WouldStep};

pub use crate::fleet::run::{NotRun, RunResult};

/// The exit status one plan's result asks for: an error on the plan
/// failed (exit 1), a locked plan skipped is no failure, and an outcome
/// maps as [`status_of_outcome`] says.
pub fn status_of(result: &RunResult) -> Status {
    match result {
        RunResult::Report(report) => status_of_outcome(&report.outcome),
        // Left undone, by an error or by a stop (deadline, signal): exit 1.
        RunResult::Other { .. }
            if matches!(result.category(), Category::Failed | Category::NotRun) =>
        {
            Status::Failed
        }
        RunResult::Other { .. } => Status::Success,
    }
}

pub async fn execute(context: &Context, args: RunArgs) -> anyhow::Result<Status> {
    let stop = fleet::Stop::new();
    stop.watch(
        context
            .deadline
            .map(|d| (std::time::Duration::from_secs(d.as_secs()), d.to_string())),
    );
    let batch = fleet::Batch {
        concurrency: usize::from(args.concurrency),
        stop,
        grace: fleet::stop::GRACE,
    };
    let many_accounts = context.org.org || context.org.accounts_file.is_some();
    if many_accounts && !context.plans.root_exists() {
        anyhow::bail!(
            "the plans folder {} does not exist. Pass --plans-dir (or set IAM_ROTATE_PLANS_DIR) \
             to the folder that holds your plans, or create plans with `iam-rotate plan --all \
             --org`",
            context.plans.root().display()
        );
    }
    if let Some(accounts) = super::accounts::selected(context, &context.org).await? {
        return execute_org(context, &args, &accounts, &batch).await;
    }
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
    let run_batch = batch;
    let batch = args.all || paths.len() > 1;
    let fleet = Fleet {
        iam: Arc::new(context.iam().await.clone()),
        clock: context.clock.clone(),
        deliver: Arc::new(context.deliverer().await),
        caller,
        notifier: Some(Arc::new(context.notifier().await)),
        store: context.plans.clone(),
    };
    let options = RunOptions {
        dry_run: args.dry_run,
        retry_blocked: args.retry_blocked,
    };
    let mut progress = Progress::new(context, paths.len(), batch);
    let results = fleet::run_all_until(&fleet, paths, options, &run_batch, &mut progress).await;
    progress.clear();
    finish(context, batch, &results, None)
}

/// `run --all --org` / `--accounts-file`: the same document, its results
/// from every account, and each account's outcome.
async fn execute_org(
    context: &Context,
    args: &RunArgs,
    accounts: &[crate::fleet::org::Account],
    batch: &fleet::Batch,
) -> anyhow::Result<Status> {
    let options = RunOptions {
        dry_run: args.dry_run,
        retry_blocked: args.retry_blocked,
    };
    let total = accounts
        .iter()
        .map(|a| context.plans.list(&a.id).map_or(0, |p| p.len()))
        .sum();
    let mut progress = Progress::new(context, total, true);
    let (results, outcomes) =
        super::accounts::run_each(context, accounts, options, batch, &mut progress).await;
    progress.clear();
    let status = finish(context, true, &results, Some(&outcomes))?;
    super::accounts::say_outcomes(context, &outcomes);
    Ok(status.and(super::accounts::status_of_accounts(&outcomes)))
}

/// Prints a batch's results (one JSON document, or the summary) and
/// returns the exit status they ask for.
fn finish(
    context: &Context,
    batch: bool,
    results: &[RunResult],
    accounts: Option<&[crate::fleet::org::AccountOutcome]>,
) -> anyhow::Result<Status> {
    let status = results
        .iter()
        .fold(Status::Success, |s, r| s.and(status_of(r)));
    let summary = Summary::of(results);
    if context.json() {
        let views: Vec<ResultView> = results.iter().map(|r| ResultView::of(context, r)).collect();
        output::json(&RunDocument {
            summary: SummaryView::of(&summary, &views),
            results: views,
            accounts,
        })?;
    }
    if batch && !results.is_empty() {
        let text = summary_text(&summary);
        if context.json() {
            output::note(text);
        } else if !context.quiet || needs_a_person(&summary) {
            output::line(text);
        }
    }
    Ok(status)
}

/// `run --output json`: one document, whatever happened.
#[derive(Serialize)]
struct RunDocument<'a> {
    results: Vec<ResultView<'a>>,
    summary: SummaryView,
    /// With --org / --accounts-file: how each account fared.
    #[serde(skip_serializing_if = "Option::is_none")]
    accounts: Option<&'a [crate::fleet::org::AccountOutcome]>,
}

/// One plan's result, with the same fields whatever its outcome.
#[derive(Serialize)]
pub struct ResultView<'a> {
    pub user: &'a str,
    pub account: Option<String>,
    /// The plan's phase after the run (null when the plan could not be read).
    pub phase: Option<Phase>,
    /// `finished`, `waiting`, `blocked`, `wrong_account`, `would_act`,
    /// `failed`, `skipped` or `not_run` (a stopped batch never started it).
    pub state: &'static str,
    /// What this run did, in order.
    pub actions: &'a [RunAction],
    /// `--dry-run`: every step that would happen now, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would: Option<&'a [WouldStep]>,
    /// When a waiting plan can go on, when time alone decides it.
    pub waiting_until: Option<DateTime<Utc>>,
    /// Why it waits, is blocked, failed or was skipped.
    pub reason: Option<&'a str>,
    /// What a person can do meanwhile (waiting plans).
    pub meanwhile: Option<&'a str>,
    pub overdue: bool,
    pub overdue_reason: Option<String>,
    /// The exact command to run next, or null.
    pub next_command: Option<String>,
    pub path: &'a Path,
}

impl<'a> ResultView<'a> {
    pub fn of(context: &Context, result: &'a RunResult) -> Self {
        match result {
            RunResult::Report(r) => {
                let (state, until, reason, meanwhile, would) = match &r.outcome {
                    Outcome::Finished => ("finished", None, None, None, None),
                    Outcome::Waiting {
                        until,
                        reason,
                        next,
                    } => (
                        "waiting",
                        *until,
                        Some(reason.as_str()),
                        Some(next.as_str()),
                        None,
                    ),
                    Outcome::Blocked { reason } => {
                        ("blocked", None, Some(reason.as_str()), None, None)
                    }
                    Outcome::WrongAccount { reason } => {
                        ("wrong_account", None, Some(reason.as_str()), None, None)
                    }
                    Outcome::WouldAct { steps } => {
                        ("would_act", None, None, None, Some(steps.as_slice()))
                    }
                };
                ResultView {
                    user: &r.user,
                    account: Some(r.account.clone()),
                    phase: Some(r.phase),
                    state,
                    actions: &r.actions,
                    would,
                    waiting_until: until,
                    reason,
                    meanwhile,
                    overdue: r.overdue.is_some(),
                    overdue_reason: r.overdue.as_ref().map(|o| o.what.clone()),
                    next_command: r.next.map(|next| {
                        super::command_line(&context.flags_for(&r.account), next.words(), &r.user)
                    }),
                    path: &r.path,
                }
            }
            RunResult::Other {
                user,
                path,
                state,
                reason,
                actions,
            } => {
                // The plan as the failed or skipped run left it.
                let plan = context.plans.load(path).ok();
                let now = context.clock.now();
                let overdue = plan.as_ref().and_then(|p| crate::rotation::overdue(p, now));
                ResultView {
                    user,
                    account: plan.as_ref().map(|p| p.account.clone()),
                    phase: plan.as_ref().map(|p| p.phase),
                    state: match state {
                        NotRun::Failed => "failed",
                        NotRun::Skipped => "skipped",
                        NotRun::Stopped => "not_run",
                    },
                    actions,
                    would: None,
                    waiting_until: None,
                    reason: Some(reason),
                    meanwhile: None,
                    overdue: overdue.is_some(),
                    overdue_reason: overdue.map(|o| o.what),
                    next_command: plan.as_ref().and_then(|p| context.next_command(p)),
                    path,
                }
            }
        }
    }
}

/// The batch in numbers, for `--output json`.
#[derive(Serialize)]
struct SummaryView {
    total: usize,
    /// How many plans ended in each category (every category, zeros too).
    counts: BTreeMap<&'static str, usize>,
    /// Plans that are overdue after the run.
    overdue: usize,
    /// Users by category.
    users: BTreeMap<&'static str, Vec<String>>,
}

impl SummaryView {
    fn of(summary: &Summary, views: &[ResultView]) -> Self {
        let key = category_key;
        SummaryView {
            total: summary.total,
            counts: Category::ALL
                .iter()
                .map(|c| (key(*c), summary.count(*c)))
                .collect(),
            overdue: views.iter().filter(|v| v.overdue).count(),
            users: Category::ALL
                .iter()
                .filter(|c| summary.count(**c) > 0)
                .map(|c| (key(*c), summary.names(*c).to_vec()))
                .collect(),
        }
    }
}

/// A category's name in JSON.
fn category_key(category: Category) -> &'static str {
    match category {
        Category::Advanced => "advanced",
        Category::Waiting => "waiting",
        Category::Finished => "finished",
        Category::Blocked => "blocked",
        Category::WrongAccount => "wrong_account",
        Category::Failed => "failed",
        Category::Skipped => "skipped",
        Category::DryRun => "dry_run",
        Category::NotRun => "not_run",
    }
}

/// Whether a batch left anything a person must see (`-q` prints the
/// summary only then).
fn needs_a_person(summary: &Summary) -> bool {
    [
        Category::Advanced,
        Category::Blocked,
        Category::WrongAccount,
        Category::Failed,
    ]
    .iter()
    .any(|c| summary.count(*c) > 0)
}

/// Whether `-q` prints a plan's result: changes, blocks, errors and
/// overdue plans, nothing that merely waits.
fn worth_saying_quietly(result: &RunResult) -> bool {
    let overdue = matches!(result, RunResult::Report(r) if r.overdue.is_some());
    overdue
        || !matches!(
            result.category(),
            Category::Waiting | Category::Finished | Category::Skipped | Category::DryRun
        )
}

/// What a person watching a batch sees: bars on a terminal, plain lines
/// otherwise.
struct Progress<'c> {
    /// Set only when stderr is a terminal (and not `-q`).
    bars: Option<BatchBars>,
    json: bool,
    quiet: bool,
    now: DateTime<Utc>,
    /// For the global flags a printed next command repeats, per account
    /// ([`Context::flags_for`]).
    context: &'c Context,
    total: usize,
    done: usize,
    counts: HashMap<Category, usize>,
}

impl<'c> Progress<'c> {
    fn new(context: &'c Context, total: usize, batch: bool) -> Self {
        let bars = (batch && !context.quiet)
            .then(|| BatchBars::new(total))
            .flatten();
        Progress {
            bars,
            json: context.json(),
            quiet: context.quiet,
            now: context.clock.now(),
            context,
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

impl RunProgress for Progress<'_> {
    fn started(&mut self, user: &str) {
        if let Some(bars) = &mut self.bars {
            bars.started(user);
        }
    }

    fn finished(&mut self, result: &RunResult) {
        self.done += 1;
        let category = result.category();
        *self.counts.entry(category).or_default() += 1;
        let say = !self.json && (!self.quiet || worth_saying_quietly(result));
        let text = say.then(|| {
            let account = match result {
                RunResult::Report(r) => r.account.clone(),
                RunResult::Other { path, .. } => account_of_path(path),
            };
            format_result(result, self.now, &self.context.flags_for(&account))
        });
        match &mut self.bars {
            Some(bars) => bars.finished(result.user(), counts_text(&self.counts), text),
            None => {
                if let Some(text) = text {
                    output::line(text);
                } else if !self.quiet && self.json {
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

/// The account folder a plan path sits in.
fn account_of_path(path: &Path) -> String {
    path.parent()
        .and_then(|dir| dir.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
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
    if summary.count(Category::NotRun) > 0 {
        text.push_str("\n  plans not run were left as they were; run again to carry on");
    }
    if summary.count(Category::Failed) > 0 {
        text.push_str("\n  failed plans keep the error (`last error` in `iam-rotate status`); run them again once it is fixed");
    }
    text
}

/// Prints one plan's result for people.
pub fn print_result(result: &RunResult, now: DateTime<Utc>, flags: &[String]) {
    output::line(format_result(result, now, flags));
}

/// One plan's result for people, as one block of lines (so that plans
/// finishing together never interleave): what it did, where it stands, an
/// overdue warning, and the command to run next.
pub fn format_result(result: &RunResult, now: DateTime<Utc>, flags: &[String]) -> String {
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
            for action in r.actions.iter().filter(|a| a.kind != ActionKind::Blocked) {
                lines.push(format!("{}: {action}", r.user));
            }
            outcome_lines(r, now, &mut lines);
            if let Some(overdue) = &r.overdue {
                lines.push(overdue_line(overdue, now));
            }
            if let Some(next) = r.next {
                let command = super::command_line(flags, next.words(), &r.user);
                let when = match &r.outcome {
                    Outcome::Waiting {
                        until: Some(until), ..
                    } => {
                        format!(" (at {} or later)", output::time(*until))
                    }
                    Outcome::Waiting { until: None, .. } => " (once that happens)".into(),
                    Outcome::Blocked { .. } => " (once the cause is fixed)".into(),
                    _ => String::new(),
                };
                if !matches!(r.outcome, Outcome::WrongAccount { .. }) {
                    lines.push(format!("  next: {command}{when}"));
                }
            }
        }
    }
    lines.join("\n")
}

fn overdue_line(overdue: &Overdue, now: DateTime<Utc>) -> String {
    format!(
        "  OVERDUE since {} ({}): {}",
        output::time(overdue.since),
        crate::duration::relative(overdue.since, now),
        overdue.what
    )
}

fn outcome_lines(r: &crate::engine::RunReport, now: DateTime<Utc>, lines: &mut Vec<String>) {
    match &r.outcome {
        Outcome::Finished => lines.push(format!("{}: {} - nothing more to do", r.user, r.phase)),
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
        Outcome::WouldAct { steps } => {
            lines.push(format!(
                "{}: {} - dry run, nothing changed; now:",
                r.user, r.phase
            ));
            for (n, step) in steps.iter().enumerate() {
                lines.push(format!("  {}. {}", n + 1, step.text));
            }
        }
    }
}
