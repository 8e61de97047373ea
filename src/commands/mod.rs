//! One module per subcommand: each turns parsed arguments into calls on the
//! core and prints the result. Shared here: the context every command gets
//! and how a USER argument becomes a plan path.

mod accounts;
mod completions;
mod demo;
mod man;
mod plan;
mod report;
mod rollback;
mod run;
pub use run::status_of;
mod schema;
mod self_rotate;
mod show;
mod status;
mod unlock;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::aws::pacing::{self, Pacing, PacingOptions};
use crate::aws::{self, AwsArgs, AwsIam};
use crate::cli::{Cli, Command, OutputFormat, RetryMode};
use crate::clock::{self, Clock};
use crate::deliver::Deliverer;
use crate::engine::Outcome;
use crate::error::UsageError;
use crate::iam::{Caller, Iam};
use crate::notify::{Notifier, Senders, Target};
use crate::plan::store::is_valid_user_name;
use crate::plan::PlanStore;

/// How a command ended, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Done or waiting normally (exit 0).
    Success,
    /// Something failed and was reported; the rest went on (exit 1).
    Failed,
    /// One or more plans are blocked (exit 3).
    Blocked,
}

impl Status {
    /// The worse of two: failed > blocked > success.
    pub fn and(self, other: Status) -> Status {
        use Status::*;
        match (self, other) {
            (Failed, _) | (_, Failed) => Failed,
            (Blocked, _) | (_, Blocked) => Blocked,
            _ => Success,
        }
    }
}

/// The exit status one plan's outcome asks for: the one mapping every
/// command that drives plans (`run`, `self-rotate`) uses.
///
/// A blocked plan needs a person (exit 3). A plan of another account than
/// the credentials' is fine itself and was not touched: the invocation is
/// wrong (exit 1).
pub fn status_of_outcome(outcome: &Outcome) -> Status {
    match outcome {
        Outcome::Blocked { .. } => Status::Blocked,
        Outcome::WrongAccount { .. } => Status::Failed,
        Outcome::Finished | Outcome::Waiting { .. } | Outcome::WouldAct { .. } => Status::Success,
    }
}

/// What every command may need.
pub struct Context {
    pub plans: PlanStore,
    pub output: OutputFormat,
    pub aws_args: AwsArgs,
    pub clock: Arc<dyn Clock>,
    /// `-q`: no progress, only errors on stderr.
    pub quiet: bool,
    /// Where notices go: `--notify` and `IAM_ROTATE_NOTIFY`.
    pub notify: Vec<Target>,
    /// The `--notify` specs as typed (without the environment's), which
    /// `plan` keeps in each plan.
    pub plan_notify: Vec<String>,
    /// The global flags a printed next command repeats, so that it works
    /// where this one did (plans folder, profile, region, endpoint, role).
    pub repeated_flags: Vec<String>,
    /// `--org`, `--accounts-file` and their account filters.
    pub org: crate::cli::OrgArgs,
    /// With --org / --accounts-file: the flags a printed next command adds
    /// to act in each account (`--role-arn` of its role), by account id.
    pub account_flags: std::sync::OnceLock<std::collections::HashMap<String, Vec<String>>>,
    /// `--deadline`: how long a batch may take new plans.
    pub deadline: Option<crate::duration::HumanDuration>,
    /// One IAM request pacer per account, shared by every client of it.
    pub pacing: Pacing,
    aws: tokio::sync::OnceCell<(aws_config::SdkConfig, AwsIam)>,
}

impl Context {
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// The SDK configuration and IAM client, built on first use.
    pub async fn aws(&self) -> &(aws_config::SdkConfig, AwsIam) {
        self.aws
            .get_or_init(|| async {
                let config = aws::load_config(&self.aws_args).await;
                let account = pacing::account_of_role(self.aws_args.role_arn.as_deref());
                let iam = AwsIam::with_pacer(&config, self.pacing.for_account(account));
                (config, iam)
            })
            .await
    }

    /// The secret destinations, with the SDK configuration the AWS ones
    /// (Secrets Manager, SSM) need.
    pub async fn deliverer(&self) -> Deliverer {
        Deliverer::new(Some(self.aws().await.0.clone()), self.json())
    }

    /// Sends plans' notices to `--notify` targets and the plans' own, with
    /// the process's SDK configuration for SNS.
    pub async fn notifier(&self) -> Notifier {
        let senders = Senders::new(Some(self.aws().await.0.clone()));
        Notifier::new(self.notify.clone(), Arc::new(senders))
            .with_command_flags(self.repeated_flags.clone())
    }

    pub async fn iam(&self) -> &AwsIam {
        &self.aws().await.1
    }

    /// The account folder `status` and `show` read: `--account`, else the
    /// only account folder there is (no AWS call: they work offline), else
    /// the caller's account (STS), to choose between several.
    pub async fn reading_account(&self, explicit: Option<&str>) -> anyhow::Result<String> {
        if let Some(account) = explicit {
            return Ok(account.to_string());
        }
        if let Ok(accounts) = self.plans.accounts() {
            if let [only] = accounts.as_slice() {
                return Ok(only.clone());
            }
        }
        Ok(self.caller().await?.account)
    }

    /// The exact command line to run next for `plan` (starting
    /// `iam-rotate `), or `None` when nothing is left to do. See
    /// [`rotation::next_command`](crate::rotation::next_command).
    pub fn next_command(&self, plan: &crate::plan::Plan) -> Option<String> {
        let next = crate::rotation::next_command(plan)?;
        Some(command_line(
            &self.flags_for(&plan.account),
            next.words(),
            &plan.user,
        ))
    }

    /// The global flags a printed command repeats to act on `account`'s
    /// plans: this invocation's, plus the role that reaches the account
    /// when --org or --accounts-file chose it.
    pub fn flags_for(&self, account: &str) -> Vec<String> {
        let mut flags = self.repeated_flags.clone();
        if let Some(extra) = self.account_flags.get().and_then(|all| all.get(account)) {
            flags.extend(extra.iter().cloned());
        }
        flags
    }

    /// STS GetCallerIdentity, with an error that says what to check.
    pub async fn caller(&self) -> anyhow::Result<Caller> {
        self.iam().await.caller_identity().await.context(
            "cannot tell which AWS account the credentials belong to (STS GetCallerIdentity). \
             Check --profile / AWS_PROFILE, the credentials, and --endpoint-url",
        )
    }
}

/// A USER argument is a path to a plan file when it holds a `/`
/// (`./alice.yaml` for one in the current folder); anything else is a user
/// name, even one ending in `.yaml` (IAM allows that). A name starting with
/// `-` goes after `--`: `iam-rotate run -- -svc`.
pub fn is_plan_path(arg: &str) -> bool {
    arg.contains('/')
}

pub fn plan_path(store: &PlanStore, arg: &str, account: &str) -> anyhow::Result<PathBuf> {
    if is_plan_path(arg) {
        if !arg.ends_with(".yaml") {
            return Err(UsageError(format!(
                "{arg:?} is a path (it holds a `/`) but does not end in .yaml, so it is not a \
                 plan file; plan files are <plans-dir>/<account>/<user>.yaml. Give a user name \
                 or the path of a plan"
            ))
            .into());
        }
        return Ok(PathBuf::from(arg));
    }
    if !is_valid_user_name(arg) {
        return Err(UsageError(format!(
            "{arg:?} is neither a plan file path nor a valid IAM user name \
             (letters, digits and +=,.@_- only)"
        ))
        .into());
    }
    Ok(store.path_for(account, arg))
}

/// The user a plan path is for, for messages before the plan is read.
pub fn user_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `iam-rotate FLAGS WORDS USER`, each word quoted for a POSIX shell where
/// it needs it; a user name that starts with `-` goes after `--`.
pub fn command_line(flags: &[String], words: &[&str], user: &str) -> String {
    let mut parts = vec!["iam-rotate".to_string()];
    parts.extend(flags.iter().map(|f| shell_words::quote(f).into_owned()));
    parts.extend(words.iter().map(|w| w.to_string()));
    if user.starts_with('-') {
        parts.push("--".into());
    }
    parts.push(shell_words::quote(user).into_owned());
    parts.join(" ")
}

/// The `--notify` specs `plan` keeps in each plan: as typed, once each.
fn plan_notify(specs: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for spec in specs.iter().map(|s| s.trim()) {
        if !kept.iter().any(|k| k == spec) {
            kept.push(spec.to_string());
        }
    }
    kept
}

/// The global flags of this invocation that a printed next command must
/// repeat to act on the same plans with the same credentials.
fn repeated_flags(cli: &Cli) -> Vec<String> {
    let mut flags = Vec::new();
    if cli.plans_dir != Path::new("plans") {
        flags.push("--plans-dir".into());
        flags.push(cli.plans_dir.display().to_string());
    }
    let options = [
        ("--profile", &cli.profile),
        ("--region", &cli.region),
        ("--endpoint-url", &cli.endpoint_url),
        ("--role-arn", &cli.role_arn),
        ("--external-id", &cli.external_id),
    ];
    for (flag, value) in options {
        if let Some(value) = value {
            flags.push(flag.into());
            flags.push(value.clone());
        }
    }
    flags
}

/// The command's name for messages, and whether it only reads: the
/// commands a replaced clock (`IAM_ROTATE_NOW`) cannot make cut a real wait
/// short.
fn command_kind(command: &Command) -> (&'static str, bool) {
    match command {
        Command::Plan(_) => ("plan", false),
        Command::Run(args) => ("run", args.dry_run),
        Command::Status(_) => ("status", true),
        Command::Show(_) => ("show", true),
        Command::Rollback(_) => ("rollback", false),
        Command::Report(_) => ("report", true),
        Command::Demo(_) => ("demo", true),
        Command::Unlock(_) => ("unlock", false),
        Command::SelfRotate(_) => ("self-rotate", false),
        Command::Completions(_) => ("completions", true),
        Command::Man(_) => ("man", true),
        Command::Schema(_) => ("schema", true),
    }
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<Status> {
    // These print what the binary is, not what an account holds: no clock,
    // no plans folder, no AWS.
    match cli.command {
        Command::Completions(args) => return completions::execute(args),
        Command::Man(args) => return man::execute(args),
        Command::Schema(_) => return schema::execute(),
        _ => {}
    }
    // A mistyped target is a usage error before anything is read or done.
    let notify = crate::notify::parse_all(
        cli.notify.iter().map(String::as_str),
        std::env::var(crate::notify::ENV).ok().as_deref(),
    )
    .map_err(UsageError)?;
    let clock = clock::from_env().map_err(UsageError)?;
    if clock.note().is_some() {
        let endpoint =
            clock::iam_endpoint(cli.endpoint_url.as_deref(), |name| std::env::var(name).ok());
        let (command, reads_only) = command_kind(&cli.command);
        clock::check_fixed_clock_allowed(command, reads_only, endpoint.as_deref())
            .map_err(UsageError)?;
    }
    if let Some(note) = clock.note() {
        // Against real AWS this moves every wait: say so every time.
        crate::output::note(format!(
            "{note}: every wait is judged against that time, not the real one"
        ));
    }
    if cli.output == OutputFormat::Table {
        crate::output::force_boxes();
    }
    let repeated_flags = repeated_flags(&cli);
    let mut command = cli.command;
    check_accounts(&cli.org, &mut command)?;
    if cli.external_id.is_some()
        && cli.role_arn.is_none()
        && !(cli.org.org || cli.org.accounts_file.is_some())
    {
        return Err(UsageError(
            "--external-id goes with the role it is for: --role-arn, or the roles of --org or \
             --accounts-file"
                .into(),
        )
        .into());
    }
    let aws_args = AwsArgs {
        profile: cli.profile,
        region: cli.region,
        endpoint_url: cli.endpoint_url,
        max_attempts: cli.max_attempts,
        max_rps: cli.max_rps,
        retry_mode: cli.retry_mode.map(|mode| match mode {
            RetryMode::Standard => aws::RetryMode::Standard,
            RetryMode::Adaptive => aws::RetryMode::Adaptive,
        }),
        role_arn: cli.role_arn,
        external_id: cli.external_id,
    };
    // `demo` keeps its plans in a scratch folder of its own.
    let plans = match command {
        Command::Demo(_) => PlanStore::new(cli.plans_dir),
        _ => open_plans(cli.plans_dir, &aws_args, cli.lease.as_secs()).await?,
    };
    let pacing = Pacing::new(
        PacingOptions {
            max_rps: cli.max_rps,
            sdk_adaptive: cli.retry_mode == Some(RetryMode::Adaptive),
        },
        clock.clone(),
    );
    let context = Context {
        repeated_flags,
        plans,
        output: cli.output,
        aws_args,
        clock,
        quiet: cli.quiet,
        notify,
        plan_notify: plan_notify(&cli.notify),
        deadline: cli.deadline,
        account_flags: std::sync::OnceLock::new(),
        org: cli.org,
        pacing,
        aws: tokio::sync::OnceCell::new(),
    };
    match command {
        Command::Plan(args) => plan::execute(&context, args).await,
        Command::Run(args) => run::execute(&context, args).await,
        Command::Status(args) => status::execute(&context, args).await,
        Command::Show(args) => show::execute(&context, args).await,
        Command::Rollback(args) => rollback::execute(&context, args).await,
        Command::Report(args) => report::execute(&context, args).await,
        Command::Demo(args) => demo::execute(&context, args).await,
        Command::Unlock(args) => unlock::execute(&context, args).await,
        Command::SelfRotate(args) => self_rotate::execute(&context, args).await,
        Command::Completions(args) => completions::execute(args),
        Command::Man(args) => man::execute(args),
        Command::Schema(_) => schema::execute(),
    }
}

/// Where the account flags apply: `--org` / `--accounts-file` with
/// `plan --all`, `run --all`, `status`; a single `--account` (the folder to
/// read) with `status`, `show`, `unlock`. Anything else is a usage error.
fn check_accounts(org: &crate::cli::OrgArgs, command: &mut Command) -> Result<(), UsageError> {
    let many = org.org || org.accounts_file.is_some();
    let usage = |text: &str| Err(UsageError(text.to_string()));
    if org.role_name.is_some() && !org.org {
        return usage("--role-name names the role --org assumes in each account; add --org");
    }
    if !many && !org.exclude_account.is_empty() {
        return usage(
            "--exclude-account leaves accounts out of --org or --accounts-file; give one of those",
        );
    }
    let single = |command: &str| -> Result<Option<String>, UsageError> {
        match org.accounts.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            _ => Err(UsageError(format!(
                "`{command}` reads one account folder: give one --account (several go with \
                 --org or --accounts-file)"
            ))),
        }
    };
    match command {
        Command::Plan(args) if many && !args.all => {
            usage("--org and --accounts-file go with `plan --all`")
        }
        Command::Run(args) if many && !args.all => {
            usage("--org and --accounts-file go with `run --all`")
        }
        Command::Plan(_) | Command::Run(_) if !many && !org.accounts.is_empty() => usage(
            "--account chooses among the accounts of --org or --accounts-file; give one of those \
             (or --role-arn for one other account)",
        ),
        Command::Plan(_) | Command::Run(_) => Ok(()),
        Command::Status(args) if !many => {
            args.account = single("status")?;
            if args.account.is_some() && args.all_accounts {
                return usage("--account and --all-accounts: give one of them");
            }
            Ok(())
        }
        Command::Status(_) | Command::Report(_) if many => Ok(()),
        Command::Show(args) if !many => {
            args.account = single("show")?;
            Ok(())
        }
        Command::Unlock(args) if !many => {
            args.account = single("unlock")?;
            Ok(())
        }
        _ if many || !org.accounts.is_empty() => usage(
            "--org, --accounts-file and --account go with plan --all, run --all, status, report, \
             show and unlock",
        ),
        _ => Ok(()),
    }
}

/// The plans folder, or the plans bucket checked before anything else:
/// a missing bucket or denied access is one error (exit 1). The bucket is
/// reached with the runner's own credentials, never those of --role-arn:
/// the plans belong to whoever runs the rotations, not to the account
/// rotated.
async fn open_plans(
    plans_dir: PathBuf,
    aws_args: &AwsArgs,
    lease_secs: u64,
) -> anyhow::Result<PlanStore> {
    if !crate::plan::store::is_s3(&plans_dir) {
        return Ok(PlanStore::new(plans_dir));
    }
    let own = AwsArgs {
        role_arn: None,
        external_id: None,
        ..aws_args.clone()
    };
    let config = aws::load_config(&own).await;
    let plans = crate::plan::store::S3Plans::open(
        &config,
        &plans_dir.to_string_lossy(),
        std::time::Duration::from_secs(lease_secs),
    )
    .await?;
    Ok(PlanStore::s3(plans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_one_exit_status_everywhere() {
        let reason = || "r".to_string();
        let cases = [
            (Outcome::Finished, Status::Success),
            (
                Outcome::Waiting {
                    until: None,
                    reason: reason(),
                    next: reason(),
                },
                Status::Success,
            ),
            (Outcome::WouldAct { steps: Vec::new() }, Status::Success),
            (Outcome::Blocked { reason: reason() }, Status::Blocked),
            // The plan is fine; the credentials were the wrong ones: exit 1.
            (Outcome::WrongAccount { reason: reason() }, Status::Failed),
        ];
        for (outcome, status) in cases {
            assert_eq!(status_of_outcome(&outcome), status, "{outcome:?}");
        }
    }
}
