//! `iam-rotate self-rotate`: rotate the key of the caller's own profile.
//!
//! The caller's IAM user gets a plan like any other (so the create intent,
//! orphan, drift and lock guards all hold) whose delivery is the profile:
//! create the second key and write it into the profile, wait (bounded) until
//! STS accepts the new key as the same user, then go on with the new key's
//! credentials, since the old key is about to stop working: the engine sees
//! the new key used and sets the old key inactive. `--delete-now` deletes the
//! old key at once; otherwise a later `self-rotate` or `run` deletes it once
//! `verify_period` has passed.
//!
//! The new key's credentials are read back from the profile just written,
//! not kept from the CreateAccessKey answer: the secret then lives only in
//! the destination, the credentials used are exactly what every other tool
//! will read there, and a resumed self-rotation (whose CreateAccessKey ran
//! in an earlier process) works the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use aws_config::SdkConfig;
use aws_sdk_sts::config::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::time::Instant;

use super::{status_of_outcome, Context, Status};
use crate::aws::AwsIam;
use crate::cli::SelfRotateArgs;
use crate::deliver::{self, profile, Deliverer};
use crate::duration::HumanDuration;
use crate::engine::{Engine, Outcome, RunOptions, RunReport};
use crate::error::UsageError;
use crate::iam::{Caller, Iam, IamError};
use crate::output;
use crate::plan::{mask_key, LockedPlan, Phase, Plan, PlanKind, PlanStore, Stamp};
use crate::planner::{plan_user, PlanRequest, Planned};
use crate::rotation::policy::Policy;

/// The policy of a self-rotation. The key's one consumer is the profile
/// this command rewrites itself, so there is nothing to wait for before the
/// old key goes inactive: the new key authenticating is the adoption signal.
/// The old key is kept (inactive) for a day in case something else used it.
pub fn self_policy() -> Policy {
    Policy {
        adoption_wait: HumanDuration::from_secs(0),
        quiet_period: HumanDuration::from_secs(0),
        verify_period: HumanDuration::from_days(1),
        require_new_key_use: true,
        allow_short_quiet_period: true,
    }
}

/// How often IAM is asked again while the new key's first use is not
/// recorded yet.
const POLL: Duration = Duration::from_secs(3);

/// The profile to rotate: `--profile`, else `AWS_PROFILE`, else `default`,
/// as every AWS tool picks it.
pub fn profile_name(flag: Option<&str>, env: Option<&str>) -> String {
    flag.or(env)
        .filter(|p| !p.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// The IAM user name in a caller ARN, or why the caller is not an IAM user.
pub fn iam_user_of(arn: &str) -> Result<&str, String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some(service), Some(_), Some(_account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(format!("the caller ARN {arn:?} is not an ARN"));
    };
    if service == "iam" {
        if let Some(path_and_name) = resource.strip_prefix("user/") {
            if let Some(name) = path_and_name.rsplit('/').next().filter(|n| !n.is_empty()) {
                return Ok(name);
            }
        }
    }
    let what = if resource == "root" {
        "the account's root user, whose access keys should not exist at all (AWS advises \
         deleting them)"
            .to_string()
    } else if resource.starts_with("assumed-role/") {
        "an assumed role, whose credentials are temporary and are renewed by their source, not \
         rotated"
            .to_string()
    } else if resource.starts_with("federated-user/") {
        "a federated user, whose credentials are temporary".to_string()
    } else {
        format!("something that is not an IAM user ({resource})")
    };
    Err(format!(
        "self-rotate rotates the access key of an IAM user, but the credentials in use belong to \
         {what} ({arn}). Run it with --profile naming a profile that holds an IAM user's \
         long-term access key"
    ))
}

/// What `self-rotate` did, for `--output json`.
#[derive(Serialize)]
struct SelfRotateReport {
    user: String,
    account: String,
    profile: String,
    credentials_file: PathBuf,
    phase: Phase,
    old_key: String,
    new_key: Option<String>,
    actions: Vec<String>,
    #[serde(flatten)]
    outcome: Outcome,
}

pub async fn execute(context: &Context, args: SelfRotateArgs) -> anyhow::Result<Status> {
    let env_profile = std::env::var("AWS_PROFILE").ok();
    let profile = profile_name(context.aws_args.profile.as_deref(), env_profile.as_deref());
    if !deliver::is_profile_name(&profile) {
        return Err(UsageError(format!(
            "{profile:?} is not a profile name the AWS SDKs accept (letters, digits and \
             _ - / . % @ : + only)"
        ))
        .into());
    }
    let credentials_file = profile::credentials_path().map_err(|m| anyhow!(m))?;
    let caller = context.caller().await?;
    let user = iam_user_of(&caller.arn)
        .map_err(|m| anyhow!(m))?
        .to_string();
    let (config, old_iam) = context.aws().await;

    let in_use = key_in_use(config).await?;
    check_profile_holds(&credentials_file, &profile, &in_use)?;
    let delivery = format!("profile:{profile}");
    let path = context.plans.path_for(&caller.account, &user);
    let (locked, resumed) =
        open_or_plan(context, old_iam, &caller, &user, &delivery, &path).await?;
    let mut session = Session {
        context,
        caller,
        profile,
        credentials_file,
        deliverer: context.deliverer().await,
        locked,
        actions: Vec::new(),
    };
    // A plan in this account's folder that names another account was put
    // there by hand: nothing is read or changed for it, as `run` does.
    if session.locked.plan.account != session.caller.account {
        let reason = other_account(
            &session.locked,
            &session.caller,
            &session.profile,
            &context.plans,
        );
        return session.conclude(Outcome::WrongAccount { reason });
    }
    if resumed && !context.json() {
        output::note(format!(
            "resuming the self-rotation in {} (phase {})",
            session.locked.path.display(),
            session.locked.plan.phase
        ));
    }
    check_plan_key(&session.locked, in_use.access_key_id(), &session.profile)?;
    drop(in_use);

    // With the old key: create the new one and write it into the profile.
    let mut just_blocked = false;
    if session.locked.plan.phase == Phase::CreateSecondKey {
        let report = session.run_engine(old_iam).await?;
        match report.outcome {
            Outcome::WrongAccount { .. } => return session.conclude(report.outcome),
            Outcome::Blocked { .. } => just_blocked = true,
            _ => {}
        }
    }
    match session.locked.plan.phase {
        Phase::Blocked => {
            let reason = session.locked.plan.blocked_reason.clone();
            let reason = reason.unwrap_or_default();
            if !just_blocked && !context.json() {
                output::line(format!("{user}: BLOCKED - {reason}"));
            }
            return session.conclude(Outcome::Blocked { reason });
        }
        Phase::CreateSecondKey | Phase::Done | Phase::RolledBack => {
            return session.conclude(Outcome::Finished)
        }
        _ => {}
    }

    // Switch to the new key: the old one is about to stop working.
    let new_iam = session.new_key_iam(config)?;
    // The bound covers waiting for the key to authenticate and for IAM to
    // record its use.
    let deadline = Instant::now() + Duration::from_secs(args.wait.as_secs());
    // Once the old key is inactive the new one has long been proven.
    if !matches!(session.locked.plan.phase, Phase::Verify | Phase::Delete) {
        let new_key_id = session.new_key_id()?;
        let user_arn = session.locked.plan.user_arn.clone();
        match wait_until_authenticates(&new_iam, &user_arn, &new_key_id, deadline).await {
            Ok(waited) => session.authenticated(waited)?,
            Err(Refusal::Fatal(message)) => bail!("{message}"),
            Err(Refusal::Timeout(last)) => return session.timed_out(&last, args.wait),
        }
    }

    // With the new key: the engine sees it used and sets the old key
    // inactive.
    let before = session.locked.plan.phase;
    let mut outcome = session.advance(&new_iam, deadline).await?;
    if session.locked.plan.phase == Phase::Verify {
        if args.delete_now {
            outcome = session.delete_now(&new_iam).await?;
        } else if before != Phase::Verify {
            session.baseline_at_deactivation()?;
        }
    }
    session.conclude(outcome)
}

/// One self-rotation under way: the plan (locked) and what was done to it.
struct Session<'a> {
    context: &'a Context,
    caller: Caller,
    profile: String,
    credentials_file: PathBuf,
    deliverer: Deliverer,
    locked: LockedPlan,
    /// Every action taken in this process, in order, as history has them.
    actions: Vec<String>,
}

impl Session<'_> {
    fn stamp(&self) -> Stamp {
        stamp(self.context, &self.caller)
    }

    fn new_key_id(&self) -> anyhow::Result<String> {
        self.locked
            .plan
            .new_key
            .as_ref()
            .map(|k| k.id.clone())
            .ok_or_else(|| anyhow!("the plan records no new key; restore it from version control"))
    }

    /// Records an action that changes no phase, and says it.
    fn record(&mut self, action: String) -> anyhow::Result<()> {
        let stamp = self.stamp();
        self.locked.plan.record(action.clone(), &stamp);
        self.locked.save()?;
        if !self.context.json() {
            output::line(format!("{}: {action}", self.locked.plan.user));
        }
        self.actions.push(action);
        Ok(())
    }

    /// Takes the plan through every step due now, signing with `iam`.
    async fn run_engine(&mut self, iam: &dyn Iam) -> anyhow::Result<RunReport> {
        let engine = Engine {
            iam,
            clock: self.context.clock.as_ref(),
            deliver: &self.deliverer,
            caller: self.caller.clone(),
        };
        let report = engine.run(&mut self.locked, RunOptions::default()).await?;
        say_actions(self.context, &report);
        self.actions.extend(report.actions.iter().cloned());
        Ok(report)
    }

    /// IAM and STS signed with the new key, read back from the profile.
    fn new_key_iam(&self, config: &SdkConfig) -> anyhow::Result<AwsIam> {
        let new_key_id = self.new_key_id()?;
        let secret = new_key_secret(
            &self.credentials_file,
            &self.profile,
            &new_key_id,
            &self.locked.plan.user,
        )?;
        Ok(AwsIam::new(&with_key(config, &new_key_id, &secret)))
    }

    fn authenticated(&mut self, waited: Duration) -> anyhow::Result<()> {
        if self.locked.plan.phase != Phase::WaitForAdoption {
            return Ok(());
        }
        let action = format!(
            "new key {} authenticated as {} (STS GetCallerIdentity signed with it, after {}s); \
             IAM calls from here on are signed with it",
            mask_key(&self.new_key_id()?),
            self.locked.plan.user_arn,
            waited.as_secs()
        );
        self.record(action)
    }

    /// The new key never authenticated: the old key stays active, and the
    /// plan says so.
    fn timed_out(mut self, last: &str, wait: HumanDuration) -> anyhow::Result<Status> {
        let plan = &self.locked.plan;
        let message = format!(
            "the new key {} did not authenticate within {wait} (last answer from STS: {last}). \
             The old key {} stays active and the plan stays in {}; profile [{}] already holds \
             the new key. Run `iam-rotate self-rotate` again in a few minutes: it waits for the \
             new key again",
            mask_key(&self.new_key_id()?),
            mask_key(&plan.old_key.id),
            plan.phase,
            self.profile
        );
        self.locked.plan.last_error = Some(message.clone());
        self.record(message.clone())?;
        if self.context.json() {
            self.conclude(Outcome::Waiting {
                until: None,
                reason: message,
                next: "run `iam-rotate self-rotate` again".into(),
            })?;
        }
        Ok(Status::Failed)
    }

    /// Runs the engine with the new key, waiting within the bound for what
    /// can come soon (IAM recording the new key's use).
    async fn advance(&mut self, iam: &dyn Iam, deadline: Instant) -> anyhow::Result<Outcome> {
        let mut bar: Option<ProgressBar> = None;
        let result = loop {
            let report = match self.run_engine(iam).await {
                Ok(report) => report,
                Err(e) => break Err(e),
            };
            if let Some(pause) = worth_waiting(&report, self.context.clock.now(), deadline) {
                bar.get_or_insert_with(|| {
                    spinner("waiting for IAM to record the new key's first use", false)
                });
                tokio::time::sleep(pause).await;
                continue;
            }
            break Ok(report.outcome);
        };
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        result
    }

    /// The old key's last uses were this command's own calls, seconds
    /// before it went inactive, and IAM may publish them only later (its
    /// last-used data lags and is coarse). So that verify does not take them
    /// for a use after deactivation, its baseline becomes the real moment
    /// the key went inactive.
    fn baseline_at_deactivation(&mut self) -> anyhow::Result<()> {
        let now = self.context.clock.system_now();
        let old = &mut self.locked.plan.old_key;
        if old.last_used_at_deactivation.is_some_and(|at| at >= now) {
            return Ok(());
        }
        old.last_used_at_deactivation = Some(now);
        let action = format!(
            "verify baseline for old key {} set to {}, when it went inactive: its last uses were \
             self-rotate's own calls just before, which IAM may record late",
            mask_key(&old.id),
            output::time(now)
        );
        self.record(action)
    }

    /// `--delete-now`: the old key goes once the new one works, without
    /// waiting for verify_period.
    async fn delete_now(&mut self, iam: &dyn Iam) -> anyhow::Result<Outcome> {
        let stamp = self.stamp();
        let plan = &mut self.locked.plan;
        let action = format!(
            "verify_period skipped (--delete-now): the new key {} authenticates as {} and the \
             old key {} is inactive",
            plan.new_key
                .as_ref()
                .map(|k| mask_key(&k.id))
                .unwrap_or_default(),
            plan.user_arn,
            mask_key(&plan.old_key.id)
        );
        plan.transition(Phase::Delete, action.clone(), &stamp);
        self.locked.save()?;
        if !self.context.json() {
            output::line(format!("{}: {action}", self.locked.plan.user));
        }
        self.actions.push(action);
        Ok(self.run_engine(iam).await?.outcome)
    }

    /// Says where the rotation stands (or prints the JSON document) and
    /// picks the exit status.
    fn conclude(self, outcome: Outcome) -> anyhow::Result<Status> {
        let status = status_of_outcome(&outcome);
        let plan = &self.locked.plan;
        if !self.context.json() {
            say_where_it_stands(self.context, plan, &self.profile, &outcome);
            return Ok(status);
        }
        output::json(&SelfRotateReport {
            user: plan.user.clone(),
            account: plan.account.clone(),
            profile: self.profile.clone(),
            credentials_file: self.credentials_file.clone(),
            phase: plan.phase,
            old_key: plan.old_key.id.clone(),
            new_key: plan.new_key.as_ref().map(|k| k.id.clone()),
            actions: self.actions,
            outcome,
        })?;
        Ok(status)
    }
}

/// How long to pause before asking the engine again, when the plan waits
/// for something that can come within the bound: IAM recording the new
/// key's first use (it lags), or a due time the bound reaches. A plan that
/// waits for days (a policy other than self-rotate's) is not waited for.
fn worth_waiting(
    report: &RunReport,
    now: chrono::DateTime<chrono::Utc>,
    deadline: Instant,
) -> Option<Duration> {
    let Outcome::Waiting { until, .. } = &report.outcome else {
        return None;
    };
    if !matches!(report.phase, Phase::WaitForAdoption | Phase::CheckLastUsed) {
        return None;
    }
    let left = deadline.checked_duration_since(Instant::now())?;
    let reachable = match until {
        None => true,
        Some(until) => (*until - now).to_std().unwrap_or_default() <= left,
    };
    (reachable && !left.is_zero()).then(|| POLL.min(left))
}

fn stamp(context: &Context, caller: &Caller) -> Stamp {
    Stamp {
        at: context.clock.now(),
        actor: caller.arn.clone(),
        clock: context.clock.note(),
    }
}

/// The key the SDK signs with now.
async fn key_in_use(config: &SdkConfig) -> anyhow::Result<Credentials> {
    let provider = config.credentials_provider().ok_or_else(|| {
        anyhow!("no AWS credentials are configured; set --profile or AWS_PROFILE")
    })?;
    let credentials = provider
        .provide_credentials()
        .await
        .context("cannot load the AWS credentials in use")?;
    if credentials.session_token().is_some() && credentials.access_key_id().starts_with("AKIA") {
        bail!(
            "the credentials in use pair the long-term key {} with a session token, which AWS \
             rejects; remove aws_session_token from the profile (or unset AWS_SESSION_TOKEN) \
             and run again",
            mask_key(credentials.access_key_id())
        );
    }
    if credentials.session_token().is_some() {
        bail!(
            "the credentials in use are temporary (key {}, with a session token): self-rotate \
             rotates an IAM user's long-term access key kept in the shared credentials file. Run \
             it with --profile naming the profile that holds that key",
            mask_key(credentials.access_key_id())
        );
    }
    Ok(credentials)
}

/// The key in use must be the one in the profile this command rewrites;
/// otherwise the profile would get a key while something else keeps
/// signing with the old one.
fn check_profile_holds(file: &Path, profile: &str, in_use: &Credentials) -> anyhow::Result<()> {
    let text = profile::read_file(file)
        .with_context(|| format!("cannot read the credentials file {}", file.display()))?
        .unwrap_or_default();
    let held = profile::read_key(&text, profile)
        .map_err(|e| anyhow!("{}, {e}. Fix the file and run again", file.display()))?;
    let in_use_id = in_use.access_key_id();
    let found = match &held {
        None => format!("there is no profile [{profile}] in {}", file.display()),
        Some(key) => match key.key_id.as_deref() {
            Some(id) if id == in_use_id => return Ok(()),
            Some(id) => format!(
                "profile [{profile}] in {} holds the key {}",
                file.display(),
                mask_key(id)
            ),
            None => format!(
                "profile [{profile}] in {} holds no aws_access_key_id",
                file.display()
            ),
        },
    };
    bail!(
        "the credentials in use are the key {}, but {found}. self-rotate only rotates the key \
         of the profile it signs with. Check that AWS_ACCESS_KEY_ID is not set in the \
         environment (it wins over any profile) and that the profile's key is in the shared \
         credentials file, not in ~/.aws/config",
        mask_key(in_use_id)
    )
}

/// A plan in the caller's account folder that names another account.
fn other_account(locked: &LockedPlan, caller: &Caller, profile: &str, store: &PlanStore) -> String {
    let plan = &locked.plan;
    format!(
        "{} is a plan for account {}, but profile [{profile}] signs as {} in account {}. \
         Nothing was changed. If the plan belongs to account {}, move it to {}; if it is a \
         stale copy, move it away; then run `iam-rotate self-rotate` again",
        locked.path.display(),
        plan.account,
        caller.arn,
        caller.account,
        plan.account,
        store.path_for(&plan.account, &plan.user).display()
    )
}

/// Whether the plan at `path` is an unfinished self-rotation of `delivery`
/// to resume (`false`: it is finished, and a new plan replaces it). Any
/// other unfinished plan is refused, and left as it is.
fn resumable(existing: &Plan, path: &Path, user: &str, delivery: &str) -> anyhow::Result<bool> {
    if existing.phase.is_finished() {
        return Ok(false);
    }
    if existing.kind != PlanKind::SelfRotate {
        let policy = &existing.policy;
        bail!(
            "{user} already has an unfinished rotation plan at {} (phase {}, kind {}), made by \
             `iam-rotate plan`, not by self-rotate. Its policy (adoption_wait {}, quiet_period \
             {}, verify_period {}) gives everything that uses the old key time to move to the \
             new one, and self-rotate would cut that short, so the plan and the keys were left \
             as they were. Finish it with `iam-rotate run {user}`, end it with `iam-rotate \
             rollback {user}`, or move the plan file away if it is stale; then self-rotate again",
            path.display(),
            existing.phase,
            existing.kind,
            policy.adoption_wait,
            policy.quiet_period,
            policy.verify_period
        );
    }
    if existing.delivery != delivery {
        bail!(
            "{user} already has an unfinished rotation plan at {} (phase {}) delivering to {}, \
             not {delivery}. Carry it on with `iam-rotate run {user}`, or roll it back with \
             `iam-rotate rollback {user}`, before self-rotating",
            path.display(),
            existing.phase,
            existing.delivery
        );
    }
    Ok(true)
}

/// The unfinished self-rotation plan of this user (and `true`: resumed),
/// or a new one. An unfinished plan that self-rotate did not make is never
/// taken over.
async fn open_or_plan(
    context: &Context,
    iam: &AwsIam,
    caller: &Caller,
    user: &str,
    delivery: &str,
    path: &Path,
) -> anyhow::Result<(LockedPlan, bool)> {
    let locked_elsewhere = || {
        anyhow!(
            "{} is locked by another iam-rotate process; wait for it to finish and run again",
            path.display()
        )
    };
    // Checked before the lock, so that a plan another process is driving
    // is still named for what it is, and again under it.
    if path.exists() && resumable(&PlanStore::load(path)?, path, user, delivery)? {
        let locked = PlanStore::lock(path)?.ok_or_else(locked_elsewhere)?;
        if resumable(&locked.plan, path, user, delivery)? {
            return Ok((locked, true));
        }
    }
    let policy = self_policy();
    let stamp = stamp(context, caller);
    let request = PlanRequest {
        user,
        policy: &policy,
        delivery,
        older_than: None,
        kind: PlanKind::SelfRotate,
    };
    match plan_user(iam, &context.plans, caller, &stamp, &request).await? {
        Planned::Planned { .. } => {}
        Planned::Skipped { reason } | Planned::Refused { reason } => {
            bail!("cannot self-rotate {user}: {reason}")
        }
    }
    let mut locked = PlanStore::lock(path)?.ok_or_else(locked_elsewhere)?;
    locked.plan.record(
        format!(
            "self-rotate of {delivery}: adoption_wait 0s and quiet_period 0s because this key's \
             one consumer is that profile, which self-rotate rewrites itself, so the new key \
             authenticating (STS GetCallerIdentity signed with it) is the adoption signal; \
             verify_period 1d keeps the old key inactive, not deleted, for a day in case \
             something else used it"
        ),
        &stamp,
    );
    locked.save()?;
    Ok((locked, false))
}

/// The key in use must be the one the plan expects the profile to hold:
/// the old key before the new one is created, the new key after.
fn check_plan_key(locked: &LockedPlan, in_use: &str, profile: &str) -> anyhow::Result<()> {
    let plan = &locked.plan;
    let new_key = plan.new_key.as_ref().map(|k| k.id.as_str());
    let expected = match plan.effective_phase() {
        Phase::CreateSecondKey => Some(plan.old_key.id.as_str()),
        Phase::Done | Phase::RolledBack => None,
        _ => new_key,
    };
    match expected {
        None => Ok(()),
        Some(id) if id == in_use => Ok(()),
        Some(_) if in_use == plan.old_key.id => bail!(
            "profile [{profile}] holds the old key {} again, but this self-rotation already \
             created the new key {} and wrote it there; its secret is no longer in the profile. \
             Undo the rotation with `iam-rotate rollback {} --delete-new`, then self-rotate anew",
            mask_key(&plan.old_key.id),
            new_key.map(mask_key).unwrap_or_default(),
            plan.user
        ),
        Some(id) => bail!(
            "profile [{profile}] signs with the key {}, but the plan {} expects {}. Check the \
             profile, or move the plan away if it is stale",
            mask_key(in_use),
            locked.path.display(),
            mask_key(id)
        ),
    }
}

/// The new key's secret, read back from the profile it was written to.
fn new_key_secret(
    file: &Path,
    profile: &str,
    new_key_id: &str,
    user: &str,
) -> anyhow::Result<SecretString> {
    let text = profile::read_file(file)
        .with_context(|| format!("cannot read the credentials file {}", file.display()))?
        .unwrap_or_default();
    let held = profile::read_key(&text, profile)
        .map_err(|e| anyhow!("{}, {e}. Fix the file and run again", file.display()))?;
    match held {
        Some(profile::ProfileKey {
            key_id: Some(id),
            secret: Some(secret),
            ..
        }) if id == new_key_id => Ok(secret),
        _ => bail!(
            "profile [{profile}] in {} no longer holds the new key {}, whose secret was written \
             only there. Undo the rotation with `iam-rotate rollback {user} --delete-new` (the \
             old key is still active), then self-rotate anew",
            file.display(),
            mask_key(new_key_id)
        ),
    }
}

/// The process's SDK configuration, signing with the given key instead.
fn with_key(config: &SdkConfig, key_id: &str, secret: &SecretString) -> SdkConfig {
    let credentials = Credentials::new(key_id, secret.expose_secret(), None, None, "iam-rotate");
    config
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

enum Refusal {
    /// Still not accepted when the time was up; the last answer.
    Timeout(String),
    /// Accepted as someone else: never go on.
    Fatal(String),
}

/// Calls STS GetCallerIdentity with the new key until it answers with the
/// user's ARN, or the deadline passes.
async fn wait_until_authenticates(
    iam: &AwsIam,
    user_arn: &str,
    key_id: &str,
    deadline: Instant,
) -> Result<Duration, Refusal> {
    let started = Instant::now();
    let bar = spinner(
        &format!(
            "waiting for the new key {} to authenticate",
            mask_key(key_id)
        ),
        true,
    );
    let mut pause = Duration::from_millis(500);
    let result = loop {
        let last = match tokio::time::timeout_at(deadline, iam.caller_identity()).await {
            Ok(Ok(caller)) if caller.arn == user_arn => break Ok(started.elapsed()),
            Ok(Ok(caller)) => {
                break Err(Refusal::Fatal(format!(
                    "the new key {} authenticates as {}, not as {user_arn}; nothing more was \
                     changed. Check the profile and the plan",
                    mask_key(key_id),
                    caller.arn
                )))
            }
            Ok(Err(IamError::Other { message, .. } | IamError::AccessDenied { message, .. })) => {
                message
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer before the time was up".into(),
        };
        let now = Instant::now();
        if now >= deadline {
            break Err(Refusal::Timeout(last));
        }
        bar.set_message(format!(
            "waiting for the new key {} to authenticate ({}s; last answer: {last})",
            mask_key(key_id),
            started.elapsed().as_secs()
        ));
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    };
    bar.finish_and_clear();
    result
}

/// A spinner on stderr when it is a terminal; otherwise nothing, or one
/// plain line when `plain_note`.
fn spinner(message: &str, plain_note: bool) -> ProgressBar {
    if !output::stderr_is_terminal() {
        if plain_note {
            output::note(format!("{message}…"));
        }
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
        bar.set_style(style);
    }
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn say_actions(context: &Context, report: &RunReport) {
    if context.json() {
        return;
    }
    for action in report
        .actions
        .iter()
        .filter(|a| !a.starts_with("blocked: "))
    {
        output::line(format!("{}: {action}", report.user));
    }
    if let Outcome::Blocked { reason } = &report.outcome {
        output::line(format!("{}: BLOCKED - {reason}", report.user));
    }
}

fn say_where_it_stands(context: &Context, plan: &Plan, profile: &str, outcome: &Outcome) {
    let user = &plan.user;
    let old = mask_key(&plan.old_key.id);
    let new = plan
        .new_key
        .as_ref()
        .map(|k| mask_key(&k.id))
        .unwrap_or_default();
    let now = context.clock.now();
    match (plan.phase, outcome) {
        (_, Outcome::WrongAccount { reason }) => {
            output::line(format!("{user}: REFUSED - {reason}"))
        }
        (Phase::Done, _) => output::line(format!(
            "{user}: done - profile [{profile}] holds the new key {new}; the old key {old} is \
             deleted"
        )),
        (Phase::Verify, _) => {
            let due = plan.phase_since + plan.policy.verify_period.to_chrono();
            output::line(format!(
                "{user}: the old key {old} is inactive; profile [{profile}] holds the new key {new}"
            ));
            output::line(format!(
                "  `iam-rotate self-rotate` (or `iam-rotate run {user}`) deletes the old key from \
                 {} ({}); `iam-rotate rollback {user}` reactivates it if something else still \
                 needs it",
                output::time(due),
                crate::duration::relative(due, now)
            ));
        }
        (_, Outcome::Waiting { reason, until, .. }) => {
            output::line(format!("{user}: {} - {reason}", plan.phase));
            let when = match until {
                Some(until) => format!(
                    "after {} ({})",
                    output::time(*until),
                    crate::duration::relative(*until, now)
                ),
                None => "in a few minutes, once IAM has recorded the new key's use".into(),
            };
            output::line(format!(
                "  the new key {new} works and is in profile [{profile}]; the old key {old} stays \
                 active for now. Run `iam-rotate self-rotate` again {when}"
            ));
        }
        (Phase::Blocked, _) => output::line(format!(
            "  once that is fixed, `iam-rotate run --retry-blocked {user}` goes on (or \
             `iam-rotate rollback {user}`)"
        )),
        (phase, _) => output::line(format!("{user}: {phase}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_is_the_flag_then_the_environment_then_default() {
        assert_eq!(profile_name(Some("ci"), Some("env")), "ci");
        assert_eq!(profile_name(None, Some("env")), "env");
        assert_eq!(profile_name(None, None), "default");
        assert_eq!(profile_name(None, Some("")), "default");
    }

    #[test]
    fn only_iam_users_can_self_rotate() {
        assert_eq!(
            iam_user_of("arn:aws:iam::123456789012:user/alice"),
            Ok("alice")
        );
        assert_eq!(
            iam_user_of("arn:aws:iam::123456789012:user/division/team/bob"),
            Ok("bob")
        );
        assert_eq!(
            iam_user_of("arn:aws-us-gov:iam::123456789012:user/carol"),
            Ok("carol")
        );
        for (arn, words) in [
            ("arn:aws:iam::123456789012:root", "root user"),
            (
                "arn:aws:sts::123456789012:assumed-role/Admin/session",
                "assumed role",
            ),
            (
                "arn:aws:sts::123456789012:federated-user/bob",
                "federated user",
            ),
            ("arn:aws:iam::123456789012:role/x", "not an IAM user"),
            ("not-an-arn", "is not an ARN"),
        ] {
            let err = iam_user_of(arn).unwrap_err();
            assert!(err.contains(words), "{arn}: {err}");
        }
    }

    #[test]
    fn the_self_rotation_policy_is_the_documented_one() {
        let policy = self_policy();
        assert_eq!(policy.adoption_wait.to_string(), "0s");
        assert_eq!(policy.quiet_period.to_string(), "0s");
        assert_eq!(policy.verify_period.to_string(), "1d");
        assert!(policy.require_new_key_use);
    }

    fn waiting(phase: Phase, until: Option<chrono::DateTime<chrono::Utc>>) -> RunReport {
        RunReport {
            user: "alice".into(),
            account: "123456789012".into(),
            phase,
            actions: Vec::new(),
            outcome: Outcome::Waiting {
                until,
                reason: String::new(),
                next: String::new(),
            },
        }
    }

    #[test]
    fn only_waits_that_can_end_within_the_bound_are_waited_for() {
        let now = chrono::Utc::now();
        let deadline = Instant::now() + Duration::from_secs(120);
        let pause = worth_waiting(&waiting(Phase::WaitForAdoption, None), now, deadline);
        assert_eq!(pause, Some(POLL));
        let soon = Some(now + chrono::Duration::seconds(30));
        assert!(worth_waiting(&waiting(Phase::CheckLastUsed, soon), now, deadline).is_some());
        // A normal plan's seven-day adoption wait is not waited out here.
        let days = Some(now + chrono::Duration::days(7));
        assert_eq!(
            worth_waiting(&waiting(Phase::WaitForAdoption, days), now, deadline),
            None
        );
        assert_eq!(
            worth_waiting(&waiting(Phase::Verify, None), now, deadline),
            None
        );
        let passed = Instant::now();
        assert_eq!(
            worth_waiting(&waiting(Phase::WaitForAdoption, None), now, passed),
            None
        );
        let mut finished = waiting(Phase::WaitForAdoption, None);
        finished.outcome = Outcome::Finished;
        assert_eq!(worth_waiting(&finished, now, deadline), None);
    }

    fn credentials(id: &str) -> Credentials {
        Credentials::new(id, "secret", None, None, "test")
    }

    #[test]
    fn the_key_in_use_must_be_the_profile_s() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[ci]\naws_access_key_id = AKIAINUSE00000000001\naws_secret_access_key = s\n\
             [empty]\nregion = x\n",
        )
        .unwrap();
        check_profile_holds(&file, "ci", &credentials("AKIAINUSE00000000001")).unwrap();
        for (profile, id, words) in [
            ("ci", "AKIAOTHER00000000001", "holds the key AKIA…0001"),
            (
                "empty",
                "AKIAINUSE00000000001",
                "holds no aws_access_key_id",
            ),
            (
                "missing",
                "AKIAINUSE00000000001",
                "there is no profile [missing]",
            ),
        ] {
            let err = check_profile_holds(&file, profile, &credentials(id))
                .unwrap_err()
                .to_string();
            assert!(err.contains(words), "{err}");
            assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        }
    }
}
