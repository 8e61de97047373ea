//! The command line, as typed: clap types only. Validation and resolution
//! into what the core needs happens in [`crate::commands`].

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::duration::HumanDuration;

const ABOUT: &str = "Rotate AWS IAM user access keys the safe way AWS's guide describes";

const LONG_ABOUT: &str = "\
Rotate AWS IAM user access keys the safe way AWS's guide describes: create a \
second key, wait until applications adopt it, make sure the old key is no \
longer used, set it inactive, verify nothing breaks, then delete it.

Each user's rotation is a YAML plan file (<plans-dir>/<account>/<user>.yaml), \
so a rotation can pause for days, resume on another machine, and be rolled back \
by reactivating the old key.

Typical use:
  iam-rotate plan alice            # write plans/<account>/alice.yaml
  iam-rotate run alice             # take every step that is due now
  iam-rotate status                # where every plan stands, and what next
  iam-rotate rollback alice        # reactivate the old key

Exit codes: 0 done or waiting normally; 1 error; 2 usage; 3 a plan is blocked.";

const AFTER_LONG_HELP: &str = "\
Environment:
  IAM_ROTATE_PLANS_DIR   the plans folder (--plans-dir; default ./plans), or s3://BUCKET/PREFIX
  IAM_ROTATE_NOW         an RFC 3339 time that replaces the clock, to rehearse a rotation
                         (only for reads, and for writes against an emulator)
  IAM_ROTATE_LOG         a tracing filter for stderr, for example iam_rotate=debug
  IAM_ROTATE_LOG_FORMAT  --log-format: text (default) or json, one object per log line
  NO_COLOR               no ANSI colours in logs (there are none off a terminal either)
  IAM_ROTATE_ROLE_ARN    --role-arn
  IAM_ROTATE_NOTIFY      more --notify targets, comma-separated (not kept in plans by `plan`)
  IAM_ROTATE_MAX_RPS     --max-rps: a cap on IAM requests per second in each account
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_IAM, AWS_SHARED_CREDENTIALS_FILE,
  AWS_MAX_ATTEMPTS, AWS_RETRY_MODE and the rest of the standard AWS credentials chain

Files:
  <plans-dir>/<account>/<user>.yaml   one plan per user (JSON Schema: iam-rotate schema)
  ~/.iam-rotate/credentials/<account>/<user>.csv   where a new secret goes by default
  ~/.aws/credentials                  what --deliver profile:NAME and self-rotate edit

Shell completions: iam-rotate completions bash|zsh|fish|powershell|elvish.
Man page: iam-rotate man.";

#[derive(Debug, Parser)]
#[command(
    name = "iam-rotate",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Folder of plan files, one sub-folder per account; or
    /// `s3://BUCKET/PREFIX` to keep them in S3 (saved with conditional
    /// writes, guarded by leases; see --lease), shared by every runner.
    #[arg(
        long,
        global = true,
        env = "IAM_ROTATE_PLANS_DIR",
        default_value = "plans",
        value_name = "DIR"
    )]
    pub plans_dir: PathBuf,

    /// `text` for people (on stdout, with notes on stderr; tables are boxed on
    /// a terminal, plain aligned columns elsewhere); `table` is text with
    /// boxed tables everywhere; `json` prints one JSON document on stdout
    /// and everything else on stderr.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// AWS profile to use (default: AWS_PROFILE, then `default`).
    #[arg(long, global = true, value_name = "PROFILE")]
    pub profile: Option<String>,

    /// AWS region for signing (default: AWS_REGION or the profile's; IAM is
    /// global, us-east-1 when none is set).
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,

    /// Send AWS calls to this endpoint (default: AWS_ENDPOINT_URL_IAM,
    /// AWS_ENDPOINT_URL, or AWS itself).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Work in another account: assume this IAM role (STS AssumeRole, session
    /// name `iam-rotate`) with the credentials of --profile / the default
    /// chain. Plans stay in that account's own folder.
    #[arg(long, global = true, env = "IAM_ROTATE_ROLE_ARN", value_name = "ARN")]
    pub role_arn: Option<String>,

    /// The external id the role's trust policy asks for (with --role-arn,
    /// or the roles of --org).
    #[arg(long, global = true, value_name = "ID")]
    pub external_id: Option<String>,

    /// Attempts per AWS call, the first included, when AWS throttles or
    /// fails with a 5xx (default 5).
    #[arg(long, global = true, env = "AWS_MAX_ATTEMPTS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_attempts: Option<u32>,

    /// At most this many IAM requests per second in each account (a decimal
    /// number, such as 5 or 0.5), for an account whose request quota is known
    /// or shared with other tools. Without it the rate adapts to IAM's
    /// throttling with no cap.
    #[arg(long, global = true, env = "IAM_ROTATE_MAX_RPS", value_name = "N",
          value_parser = requests_per_second)]
    pub max_rps: Option<f64>,

    /// How retries back off: `standard` (default) backs off per call, and
    /// iam-rotate paces IAM requests at the account's rate limit; `adaptive`
    /// leaves throttling to the SDK's own client-side rate limiter instead.
    #[arg(
        long,
        global = true,
        env = "AWS_RETRY_MODE",
        value_enum,
        value_name = "MODE"
    )]
    pub retry_mode: Option<RetryMode>,

    /// More detail on stderr: -v logs each AWS request (service, operation,
    /// outcome, duration); -vv adds each attempt, the SDK's retry decisions
    /// and debug notes. Request and response bodies are never logged: they
    /// can hold secrets.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// How log lines on stderr look: `text` for people, `json` for
    /// schedulers (one JSON object per line; other notes stay text).
    #[arg(
        long,
        global = true,
        env = "IAM_ROTATE_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Tell people when a plan needs them: a notice (one JSON object) goes
    /// to SPEC when a plan becomes blocked, is overdue (at most once a day),
    /// fails, is rolled back or is done. SPEC is sns:TOPIC_ARN (SNS Publish)
    /// or webhook:URL (an HTTPS POST; plain http only to localhost).
    /// Repeatable; IAM_ROTATE_NOTIFY adds more, comma-separated. With
    /// `plan`, the --notify targets are kept in each plan, for the user's
    /// owners, and every later run notifies them too.
    #[arg(long, global = true, value_name = "SPEC", action = ArgAction::Append)]
    pub notify: Vec<String>,

    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// With plans in S3: how long a runner's lease on a plan lasts unless
    /// renewed (it is renewed every third of that while the plan is worked
    /// on). Another runner skips a leased plan until it expires, then takes
    /// it over. At least 1s.
    #[arg(long, global = true, value_name = "DURATION", default_value = "15m",
          value_parser = lease_length)]
    pub lease: HumanDuration,

    /// Stop taking new plans once this long has passed since the start
    /// (for example 50m, under a scheduler's own time limit). Plans in
    /// flight finish their run (cancelled, their lock released, if that
    /// takes more than 20s more); plans not started are reported as not
    /// run, and the exit code is 1. SIGTERM and SIGINT stop a run the same
    /// way at any time.
    #[arg(long, global = true, value_name = "DURATION")]
    pub deadline: Option<HumanDuration>,

    #[command(flatten)]
    pub org: OrgArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Which accounts a command covers, beyond the caller's own: an AWS
/// Organization's, or a list in a file (for `plan --all`, `run --all`,
/// `status` and `report`); `--account` alone is the one account folder `status`, `show`
/// and `unlock` read.
#[derive(Clone, Debug, Default, Args)]
pub struct OrgArgs {
    /// With plan --all, run --all, status and report: every ACTIVE account
    /// of the caller's AWS Organization (Organizations
    /// ListAccounts, from the management or a delegated administrator
    /// account), each through the role --role-name, assumed with the
    /// caller's credentials (and --external-id). Plans go in each
    /// account's own folder. One account that fails (its role cannot be
    /// assumed) fails alone: the others go on, and the exit code is 1.
    #[arg(long, global = true, conflicts_with = "accounts_file")]
    pub org: bool,

    /// With --org: the role assumed in each account,
    /// arn:<partition>:iam::<account>:role/NAME (default IamRotate).
    #[arg(long, global = true, value_name = "NAME")]
    pub role_name: Option<String>,

    /// Instead of --org: the accounts in a c7n-org accounts file
    /// (`accounts: [{account_id, name, role}]`, role a full role ARN).
    #[arg(long, global = true, value_name = "FILE")]
    pub accounts_file: Option<PathBuf>,

    /// With --org or --accounts-file: only these accounts. Without them
    /// (status, show, unlock): the one account folder to read (default:
    /// the only one there is, else the caller's account, from STS).
    #[arg(long = "account", global = true, value_name = "ID", num_args = 1..,
          value_parser = account_id)]
    pub accounts: Vec<String>,

    /// With --org or --accounts-file: leave these accounts out.
    #[arg(long, global = true, value_name = "ID", num_args = 1.., value_parser = account_id)]
    pub exclude_account: Vec<String>,

    /// With --org or --accounts-file: how many accounts to work on at once
    /// (each with its own --concurrency).
    #[arg(long, global = true, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub account_concurrency: u16,
}

/// An AWS account id: exactly twelve digits.
fn account_id(value: &str) -> Result<String, String> {
    if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
        Ok(value.to_string())
    } else {
        Err("an AWS account id is exactly 12 digits, for example 123456789012".into())
    }
}

/// `--max-rps`: a positive number of requests per second.
fn requests_per_second(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.01 => Ok(rate),
        _ => Err("a number of requests per second, at least 0.01, such as 5 or 0.5".into()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    /// Text, with box-drawn tables even off a terminal.
    Table,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RetryMode {
    /// AWS's `legacy` mode is taken as `standard`, the SDK's nearest.
    #[value(alias = "legacy")]
    Standard,
    Adaptive,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a rotation plan for each user (nothing is changed in AWS).
    #[command(
        long_about = "Write a rotation plan for each user: <plans-dir>/<account>/<user>.yaml, in phase \
create_second_key. Nothing is changed in AWS. A user who already has two access keys, or \
no active key, is refused with what to do. A user with an unfinished plan is left alone."
    )]
    Plan(PlanArgs),

    /// Take each plan through every step that is due now.
    #[command(
        long_about = "Take each plan through every step that is due now, and stop at the first \
that is not, saying what it waits for and when it can go on. Waiting is not an error (exit 0). \
A blocked plan exits 3 until a person fixes the cause and runs with --retry-blocked."
    )]
    Run(RunArgs),

    /// One row a plan: phase, since, next step, due at, blocked reason.
    Status(StatusArgs),

    /// One plan in full: keys, observations, history, and what to do next.
    Show(ShowArgs),

    /// Reactivate the old key and go back to waiting for adoption (--abort: end the rotation).
    #[command(
        long_about = "The guide's step 5 → step 2: when an application broke after the old key \
was set inactive, make the old key Active again, keep the new key, and send the rotation back to \
wait_for_adoption with its adoption, quiet and verify clocks restarted. Switch the failing \
application to the new key, then `iam-rotate run USER` carries the same rotation on to the end. \
Allowed from set_inactive, verify, delete and blocked while the old key exists; before the old \
key was set inactive it changes nothing and says so.

With --abort the rotation ends instead (phase rolled_back) with the old key Active; add \
--delete-new to delete the new key as well (its applications lose access). A rolled-back plan \
that kept its new key leaves the user with two keys: `rollback --abort --delete-new USER` \
removes it, and then `plan USER` can start a new rotation.

After the old key was deleted nothing can be rolled back: a deleted key never comes back."
    )]
    Rollback(RollbackArgs),

    /// Every user's keys: age, status, last use, plan phase.
    Report(ReportArgs),

    /// A whole rotation on a built-in simulated account: no AWS needed.
    Demo(DemoArgs),

    /// Remove a dead runner's lock (local plans) or lease (plans in S3).
    #[command(
        long_about = "Remove the lock beside a plan by hand, after the runner that held it died. \
In S3 that is the plan's lease, which is removed whoever holds it: make sure its runner (named \
in the output) is gone, or it may save once more and then stop, its next save refused. A local \
lock file is removed only when no process holds it: an OS lock ends with its process, so a held \
one has a live holder. --force is required."
    )]
    Unlock(UnlockArgs),

    /// Rotate the key of the caller's own profile.
    #[command(
        long_about = "Rotate the key of the caller's own profile (--profile, else AWS_PROFILE, else \
default): create a new key, write it into that profile of the shared credentials file, wait \
until it authenticates, then set the old key inactive using the new key. The old key is deleted \
now with --delete-now, or by a later self-rotate or run once verify_period (1d) has passed. \
Running it again resumes an unfinished self-rotation. Needs only the self-service IAM \
permissions on one's own user (see docs/self-rotate.md)."
    )]
    SelfRotate(SelfRotateArgs),

    /// Print a shell completion script on stdout.
    #[command(
        long_about = "Print a completion script for SHELL on stdout: subcommands, flags \
and their values complete with Tab. Nothing is read or changed, in AWS or on disk.

Install it once (a new shell picks it up):
  bash:        iam-rotate completions bash > ~/.local/share/bash-completion/completions/iam-rotate
  zsh:         iam-rotate completions zsh > ~/.zfunc/_iam-rotate
               (with fpath=(~/.zfunc $fpath); autoload -U compinit; compinit in ~/.zshrc)
  fish:        iam-rotate completions fish > ~/.config/fish/completions/iam-rotate.fish
  powershell:  iam-rotate completions powershell >> $PROFILE
  elvish:      iam-rotate completions elvish > ~/.config/elvish/lib/iam-rotate.elv
Or, for this shell only: source <(iam-rotate completions bash)"
    )]
    Completions(CompletionsArgs),

    /// Print the man page (roff) on stdout.
    #[command(
        long_about = "Print the man page on stdout, in roff, the format man(1) reads. \
Nothing is read or changed, in AWS or on disk.

  iam-rotate man | man -l -                      read it now
  iam-rotate man > ~/.local/share/man/man1/iam-rotate.1
  iam-rotate man --out-dir ~/.local/share/man/man1   that page and one per subcommand
                                                 (iam-rotate-plan.1, ...), for `man iam-rotate-plan`"
    )]
    Man(ManArgs),

    /// Print the JSON Schema of the plan file on stdout.
    #[command(
        long_about = "Print the JSON Schema (draft 2020-12) of the plan file on stdout: \
every field, its type, which are required, the phases and key statuses, and the form of a \
duration. Every plan iam-rotate writes validates against it; editors and CI can check hand \
edits with it (a YAML plan is validated as the JSON it parses to). The schema says what a plan \
may look like; iam-rotate also refuses, on load, plans that contradict themselves (see \
plans/README.md). Nothing is read or changed, in AWS or on disk."
    )]
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write iam-rotate.1 and one page per subcommand (iam-rotate-plan.1, ...)
    /// into this folder instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// IAM user names.
    #[arg(value_name = "USER", required_unless_present = "all")]
    pub users: Vec<String>,

    /// Plan every user whose active key is older than --older-than.
    #[arg(long, conflicts_with = "users")]
    pub all: bool,

    /// With --all: only keys older than this (for example 90d).
    #[arg(long, value_name = "DURATION", requires = "all")]
    pub older_than: Option<HumanDuration>,

    /// With --all: only users under this IAM path (for example /apps/).
    #[arg(long, value_name = "PATH", requires = "all")]
    pub path_prefix: Option<String>,

    /// With --all: leave these users out.
    #[arg(long, value_name = "USER", requires = "all", num_args = 1..)]
    pub exclude: Vec<String>,

    /// With --all: how many users to read from IAM at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Where the new secret goes: file:PATH, profile:NAME,
    /// secretsmanager:NAME_OR_ARN, ssm:/NAME or stdout; {user} and {account}
    /// are filled in. Default: file:~/.iam-rotate/credentials/{account}/{user}.csv
    #[arg(long, value_name = "SPEC")]
    pub deliver: Option<String>,

    /// How long consumers get to adopt the new key (default 7d).
    #[arg(long, value_name = "DURATION")]
    pub adoption_wait: Option<HumanDuration>,

    /// How long the old key must be unused before it is set inactive
    /// (default 3d; at least 4h).
    #[arg(long, value_name = "DURATION")]
    pub quiet_period: Option<HumanDuration>,

    /// Accept a quiet period under 4h, although AWS's last-used data lags.
    #[arg(long)]
    pub allow_short_quiet_period: bool,

    /// How long the old key stays inactive before it is deleted (default 7d).
    #[arg(long, value_name = "DURATION")]
    pub verify_period: Option<HumanDuration>,

    /// How long past its own wait a plan may stay in a waiting phase
    /// (adoption, quiet period, verification) before it is overdue and
    /// `status --needs-attention` reports it (default 7d).
    #[arg(long, value_name = "DURATION")]
    pub overdue_after: Option<HumanDuration>,

    /// A YAML file with any of adoption_wait, quiet_period, verify_period,
    /// overdue_after, require_new_key_use, allow_short_quiet_period; flags
    /// win over it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// User names (plans in the caller's account folder) or plan file paths.
    #[arg(value_name = "USER", required_unless_present = "all")]
    pub users: Vec<String>,

    /// Every plan in the caller's account folder.
    #[arg(long, conflicts_with = "users")]
    pub all: bool,

    /// How many plans to advance at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,

    /// Say what would be done, change nothing (in AWS or in plans).
    #[arg(long)]
    pub dry_run: bool,

    /// Re-check blocked plans after a person fixed the cause.
    #[arg(long)]
    pub retry_blocked: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// User names or plan file paths (default: every plan of the account).
    #[arg(value_name = "USER")]
    pub users: Vec<String>,

    /// The account folder to read: the global `--account ID` (default:
    /// the only one there is, else the caller's account, from STS).
    #[arg(skip)]
    pub account: Option<String>,

    /// Every account folder under --plans-dir.
    #[arg(long)]
    pub all_accounts: bool,

    /// Only plans a person must look at: blocked, or overdue (stuck in a
    /// waiting phase past its wait plus overdue_after). Exits 3 when there
    /// are any and 0 when there are none: the one command a scheduler
    /// alerts on.
    #[arg(long)]
    pub needs_attention: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A user name or a plan file path.
    #[arg(value_name = "USER")]
    pub user: String,

    /// The account folder to read: the global `--account ID` (default:
    /// the only one there is, else the caller's account, from STS).
    #[arg(skip)]
    pub account: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// A user name or a plan file path.
    #[arg(value_name = "USER")]
    pub user: String,

    /// End the rotation (rolled_back) with the old key Active, instead of
    /// going back to wait_for_adoption.
    #[arg(long)]
    pub abort: bool,

    /// With --abort: also delete the new key (its applications lose access).
    #[arg(long, requires = "abort")]
    pub delete_new: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only users with a key older than this.
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<HumanDuration>,

    /// Only users under this IAM path.
    #[arg(long, value_name = "PATH")]
    pub path_prefix: Option<String>,

    /// How many users to read from IAM at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

#[derive(Debug, Args)]
pub struct DemoArgs {}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// A user name or a plan path.
    #[arg(value_name = "USER")]
    pub user: String,

    /// The account folder to read: the global `--account ID` (default:
    /// the only one there is, else the caller's account, from STS).
    #[arg(skip)]
    pub account: Option<String>,

    /// Yes, remove it: its runner is dead.
    #[arg(long)]
    pub force: bool,
}

/// `--lease`: a duration of at least one second.
fn lease_length(text: &str) -> Result<HumanDuration, String> {
    let length: HumanDuration = text.parse()?;
    if length.as_secs() < 1 {
        return Err(format!("a lease of {text} is too short; give at least 1s"));
    }
    Ok(length)
}

#[derive(Debug, Args)]
pub struct SelfRotateArgs {
    /// Delete the old key as soon as the new one works.
    #[arg(long)]
    pub delete_now: bool,

    /// How long to wait for the new key to authenticate (IAM is eventually
    /// consistent) before giving up; the old key then stays active and
    /// running again resumes.
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub wait: HumanDuration,
}
