//! `--org` and `--accounts-file` for `plan --all` and `run --all`: which
//! accounts, the assumed role in each (its session named after this run,
//! for CloudTrail), and one summary line per account.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;

use super::{Context, Status};
use crate::aws::org::{self as aws_org, DEFAULT_ROLE_NAME};
use crate::aws::AwsIam;
use crate::cli::OrgArgs;
use crate::deliver::Deliverer;
use crate::error::UsageError;
use crate::fleet::org::{self, Account, AccountOutcome, AccountRun};
use crate::fleet::run::NotRun;
use crate::fleet::{Batch, Fleet, RunProgress, RunResult};
use crate::iam::{Caller, Iam};
use crate::output;

/// The accounts `--org` or `--accounts-file` name, after `--account` and
/// `--exclude-account`; `None` when neither was given (the caller's own
/// account).
pub async fn selected(context: &Context, args: &OrgArgs) -> anyhow::Result<Option<Vec<Account>>> {
    let listed = if args.org {
        if context.aws_args.role_arn.is_some() {
            return Err(UsageError(
                "--org assumes a role in each account itself; drop --role-arn".into(),
            )
            .into());
        }
        let caller = context.caller().await?;
        let partition = aws_org::partition_of(&caller.arn)
            .unwrap_or("aws")
            .to_string();
        let config = &context.aws().await.0;
        let all = aws_org::list_accounts(config)
            .await
            .map_err(anyhow::Error::msg)?;
        let role_name = args.role_name.as_deref().unwrap_or(DEFAULT_ROLE_NAME);
        let (accounts, inactive) = org::from_org(all, &partition, role_name);
        for account in inactive {
            output::note(format!(
                "account {} ({}): skipped, it is {} (only ACTIVE accounts are worked on)",
                account.id, account.name, account.state
            ));
        }
        accounts
    } else if let Some(path) = &args.accounts_file {
        if context.aws_args.role_arn.is_some() {
            return Err(UsageError(
                "--accounts-file names the role of each account; drop --role-arn".into(),
            )
            .into());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the accounts file {}", path.display()))?;
        org::parse_accounts_file(&text, path).map_err(UsageError)?
    } else {
        // A lone --account is the one folder status, show and unlock read
        // (checked, like the rest of these flags, before any command runs).
        return Ok(None);
    };
    let accounts =
        org::select(listed, &args.accounts, &args.exclude_account).map_err(UsageError)?;
    if accounts.is_empty() {
        output::note("no account to work in");
    }
    // A next command printed for an account's plan acts in that account.
    let _ = context.account_flags.set(
        accounts
            .iter()
            .map(|a| (a.id.clone(), vec!["--role-arn".into(), a.role_arn.clone()]))
            .collect(),
    );
    Ok(Some(accounts))
}

/// This run's id, in every role session name: the real UTC time it
/// started and the process id, `20261202T031500Z-4242`, which CloudTrail
/// shows as the session name of every change the run made.
pub fn run_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    )
}

/// Reaches `account` through its role, checked with GetCallerIdentity.
async fn reach(
    context: &Context,
    account: &Account,
    session: &str,
) -> Result<(aws_config::SdkConfig, AwsIam, Caller), String> {
    let base = &context.aws().await.0;
    let external_id = context.aws_args.external_id.as_deref();
    let config = aws_org::assume(base, &account.role_arn, external_id, session).await;
    // The account's own pacer: its IAM rate limit is its own.
    let iam = AwsIam::with_pacer(&config, context.pacing.for_account(&account.id));
    let caller = iam.caller_identity().await.map_err(|e| {
        format!(
            "cannot assume {} ({e}); check that the role exists in the account, trusts the \
             runner's credentials{}, and allows sts:AssumeRole",
            account.role_arn,
            if external_id.is_some() {
                " with this --external-id"
            } else {
                ""
            }
        )
    })?;
    if caller.account != account.id {
        return Err(format!(
            "the role {} acts in account {}, not {}; fix the role ARN",
            account.role_arn, caller.account, account.id
        ));
    }
    Ok((config, iam, caller))
}

/// Runs `work` in each account, reached through its role, at most
/// `--account-concurrency` at once; gives each account's result and outcome.
pub async fn each_reached<T, F, Fut>(
    context: &Context,
    accounts: &[Account],
    work: F,
) -> (Vec<AccountRun<T>>, Vec<AccountOutcome>)
where
    F: Fn(AwsIam, Caller) -> Fut + Copy,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let session = aws_org::session_name(&run_id());
    let stop = crate::fleet::Stop::new();
    let runs = org::each_account(
        accounts,
        usize::from(context.org.account_concurrency),
        &stop,
        |account| {
            let session = session.clone();
            async move {
                let (_, iam, caller) = reach(context, account, &session).await?;
                work(iam, caller).await.map_err(|e| format!("{e:#}"))
            }
        },
    )
    .await;
    let outcomes = outcomes(accounts, &runs);
    (runs, outcomes)
}

/// `plan --all --org`: `plan_one` in each account; the JSON document is
/// `{"accounts": [outcome…], "plans": [each account's plan --all summary]}`.
pub async fn plan_each<F, Fut>(
    context: &Context,
    accounts: Vec<Account>,
    plan_one: F,
) -> anyhow::Result<Status>
where
    F: Fn(AwsIam, Caller) -> Fut + Copy,
    Fut: Future<Output = anyhow::Result<serde_json::Value>>,
{
    let (runs, outcomes) = each_reached(context, &accounts, plan_one).await;
    let status = status_of_accounts(&outcomes);
    say_outcomes(context, &outcomes);
    if context.json() {
        let plans: Vec<serde_json::Value> = runs.into_iter().filter_map(AccountRun::done).collect();
        output::json(&serde_json::json!({ "accounts": outcomes, "plans": plans }))?;
    }
    Ok(status)
}

/// `run --all --org`: every plan of every account, `batch.concurrency`
/// plans at once in each account and `--account-concurrency` accounts at
/// once. Results come back account by account, with each account's
/// outcome; the plans of an account that could not be reached are failed
/// results (not touched), those of an account not started are not run.
pub async fn run_each(
    context: &Context,
    accounts: &[Account],
    options: crate::engine::RunOptions,
    batch: &Batch,
    progress: &mut dyn RunProgress,
) -> (Vec<RunResult>, Vec<AccountOutcome>) {
    let session = aws_org::session_name(&run_id());
    let paths: Vec<Result<Vec<PathBuf>, String>> = accounts
        .iter()
        .map(|account| {
            context.plans.sweep_temporaries(&account.id);
            context.plans.list(&account.id).map_err(|e| e.to_string())
        })
        .collect();
    let shared = Shared(Mutex::new(progress));
    let listed: HashMap<&str, &Result<Vec<PathBuf>, String>> =
        accounts.iter().map(|a| a.id.as_str()).zip(&paths).collect();
    let runs = org::each_account(
        accounts,
        usize::from(context.org.account_concurrency),
        &batch.stop,
        |account| {
            let listed = listed.get(account.id.as_str()).copied().cloned();
            let (session, shared) = (session.clone(), &shared);
            async move {
                let paths = listed
                    .unwrap_or_else(|| Err("not among the accounts listed".into()))
                    .map_err(|e| format!("its plans cannot be listed: {e}"))?;
                let (config, iam, caller) = reach(context, account, &session).await?;
                let fleet = Fleet {
                    iam: Arc::new(iam),
                    clock: context.clock.clone(),
                    deliver: Arc::new(Deliverer::new(Some(config), context.json())),
                    caller,
                    // Its notices' next commands act in this account.
                    notifier: Some(Arc::new(
                        context
                            .notifier()
                            .await
                            .with_command_flags(context.flags_for(&account.id)),
                    )),
                    store: context.plans.clone(),
                };
                let mut view = SharedView(shared);
                Ok(crate::fleet::run_all_until(&fleet, paths, options, batch, &mut view).await)
            }
        },
    )
    .await;
    let outcomes = outcomes(accounts, &runs);
    let mut results = Vec::new();
    for ((run, listed), outcome) in runs.into_iter().zip(paths).zip(&outcomes) {
        match run {
            AccountRun::Done(done) => results.extend(done),
            AccountRun::Failed(_) | AccountRun::NotRun(_) => {
                let state = match run {
                    AccountRun::NotRun(_) => NotRun::Stopped,
                    _ => NotRun::Failed,
                };
                let reason = format!(
                    "account {}: {}",
                    outcome.account,
                    outcome.reason.as_deref().unwrap_or_default()
                );
                for path in listed.unwrap_or_default() {
                    let result = RunResult::Other {
                        user: super::user_of(&path),
                        path,
                        state,
                        reason: reason.clone(),
                        actions: Vec::new(),
                    };
                    shared.finished(&result);
                    results.push(result);
                }
            }
        }
    }
    (results, outcomes)
}

fn outcomes<T>(accounts: &[Account], runs: &[AccountRun<T>]) -> Vec<AccountOutcome> {
    accounts
        .iter()
        .zip(runs)
        .map(|(account, run)| run.outcome(account))
        .collect()
}

/// Exit 1 when any account failed or was not run.
pub fn status_of_accounts(outcomes: &[AccountOutcome]) -> Status {
    if outcomes.iter().all(|o| o.state == org::AccountState::Done) {
        Status::Success
    } else {
        Status::Failed
    }
}

/// One line per account on stderr (the JSON document has them too).
pub fn say_outcomes(context: &Context, outcomes: &[AccountOutcome]) {
    if context.quiet && status_of_accounts(outcomes) == Status::Success {
        return;
    }
    let mut text = format!("{} accounts:", outcomes.len());
    for outcome in outcomes {
        let state = match outcome.state {
            org::AccountState::Done => "done",
            org::AccountState::Failed => "FAILED",
            org::AccountState::NotRun => "not run",
        };
        text.push_str(&format!(
            "\n  {} ({}): {state}",
            outcome.account, outcome.name
        ));
        if let Some(reason) = &outcome.reason {
            text.push_str(&format!(": {reason}"));
        }
    }
    output::note(text);
}

/// One progress display for the plans of every account.
struct Shared<'p>(Mutex<&'p mut dyn RunProgress>);

impl Shared<'_> {
    fn finished(&self, result: &RunResult) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finished(result);
    }
}

struct SharedView<'s, 'p>(&'s Shared<'p>);

impl RunProgress for SharedView<'_, '_> {
    fn started(&mut self, user: &str) {
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .started(user);
    }

    fn finished(&mut self, result: &RunResult) {
        self.0.finished(result);
    }
}
