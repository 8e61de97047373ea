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
//!
//! The engine drives it ([`crate::engine::self_rotation`]); this module
//! parses, finds or writes the plan, and prints.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;

use super::{status_of_outcome, Context, Status};
use crate::aws::credentials::{check_profile_holds, iam_user_of, key_in_use, ProfileSigner};
use crate::cli::SelfRotateArgs;
use crate::deliver::{self, profile};
use crate::engine::self_rotation::{
    SelfRotateEvents, SelfRotateOptions, SelfRotated, SelfRotation, Wait,
};
use crate::engine::{Engine, Outcome, RunReport};
use crate::error::UsageError;
use crate::output;
use crate::plan::{mask_key, LockedPlan, Phase, Plan};
use crate::planner::open_self_rotation;
use crate::progress::Spinner;

/// The profile to rotate: `--profile`, else `AWS_PROFILE`, else `default`,
/// as every AWS tool picks it.
pub fn profile_name(flag: Option<&str>, env: Option<&str>) -> String {
    flag.or(env)
        .filter(|p| !p.is_empty())
        .unwrap_or("default")
        .to_string()
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
    check_profile_holds(&credentials_file, &profile, in_use.access_key_id())?;
    let delivery = format!("profile:{profile}");
    let path = context.plans.path_for(&caller.account, &user);
    let (mut locked, resumed) = open_self_rotation(
        old_iam,
        &context.plans,
        context.clock.as_ref(),
        &caller,
        &delivery,
        &path,
    )
    .await?;
    let printer = Printer {
        json: context.json(),
        spinner: Mutex::new(None),
    };
    let conclude = |locked: &LockedPlan, actions: Vec<String>, outcome: Outcome| {
        conclude(
            context,
            locked,
            &profile,
            &credentials_file,
            actions,
            outcome,
        )
    };
    if resumed && !context.json() {
        output::note(format!(
            "resuming the self-rotation in {} (phase {})",
            locked.path.display(),
            locked.plan.phase
        ));
    }

    let deliverer = context.deliverer().await;
    let signer = ProfileSigner {
        config: config.clone(),
        file: credentials_file.clone(),
        profile: profile.clone(),
        user: user.clone(),
    };
    let mut rotation = SelfRotation {
        engine: Engine {
            iam: old_iam,
            clock: context.clock.as_ref(),
            deliver: &deliverer,
            caller: caller.clone(),
        },
        signer: &signer,
        events: &printer,
        options: SelfRotateOptions {
            delete_now: args.delete_now,
            wait: Duration::from_secs(args.wait.as_secs()),
        },
        profile: &profile,
        in_use: in_use.access_key_id().to_string(),
        actions: Vec::new(),
    };
    drop(in_use);
    let ended = rotation.run(&mut locked).await?;
    let actions = std::mem::take(&mut rotation.actions);
    match ended {
        SelfRotated::Ended(outcome) => conclude(&locked, actions, outcome),
        SelfRotated::TimedOut { message } => {
            if context.json() {
                conclude(
                    &locked,
                    actions,
                    Outcome::Waiting {
                        until: None,
                        reason: message,
                        next: "run `iam-rotate self-rotate` again".into(),
                    },
                )?;
            }
            Ok(Status::Failed)
        }
    }
}

/// Says where the rotation stands (or prints the JSON document) and picks
/// the exit status.
fn conclude(
    context: &Context,
    locked: &LockedPlan,
    profile: &str,
    credentials_file: &Path,
    actions: Vec<String>,
    outcome: Outcome,
) -> anyhow::Result<Status> {
    let status = status_of_outcome(&outcome);
    let plan = &locked.plan;
    if !context.json() {
        say_where_it_stands(context, plan, profile, &outcome);
        return Ok(status);
    }
    output::json(&SelfRotateReport {
        user: plan.user.clone(),
        account: plan.account.clone(),
        profile: profile.to_string(),
        credentials_file: credentials_file.to_path_buf(),
        phase: plan.phase,
        old_key: plan.old_key.id.clone(),
        new_key: plan.new_key.as_ref().map(|k| k.id.clone()),
        actions,
        outcome,
    })?;
    Ok(status)
}

/// Prints what the engine does as it goes (nothing but the final document
/// with `--output json`), and draws the wait's spinner.
struct Printer {
    json: bool,
    spinner: Mutex<Option<Spinner>>,
}

impl SelfRotateEvents for Printer {
    fn report(&self, report: &RunReport) {
        if self.json {
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

    fn action(&self, user: &str, action: &str) {
        if !self.json {
            output::line(format!("{user}: {action}"));
        }
    }

    fn blocked(&self, user: &str, reason: &str) {
        if !self.json {
            output::line(format!("{user}: BLOCKED - {reason}"));
        }
    }

    fn waiting(&self, wait: Wait<'_>) {
        let mut spinner = self.spinner.lock().unwrap_or_else(|e| e.into_inner());
        match wait {
            Wait::Start { message, announce } => {
                *spinner = Some(Spinner::start(message, announce));
            }
            Wait::Update(message) => {
                if let Some(spinner) = spinner.as_ref() {
                    spinner.update(message);
                }
            }
            Wait::End => {
                if let Some(spinner) = spinner.take() {
                    spinner.finish();
                }
            }
        }
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
}
