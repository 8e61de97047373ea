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

use std::sync::Mutex;
use std::time::Duration;

use anyhow::anyhow;

mod print;

use print::{conclude, Printer};

use super::{Context, Status};
use crate::aws::credentials::{check_profile_holds, iam_user_of, key_in_use, ProfileSigner};
use crate::cli::SelfRotateArgs;
use crate::deliver::{self, profile};
use crate::engine::self_rotation::{SelfRotateOptions, SelfRotated, SelfRotation};
use crate::engine::{Engine, Outcome};
use crate::error::UsageError;
use crate::output;
use crate::plan::LockedPlan;
use crate::planner::open_self_rotation;

/// The profile to rotate: `--profile`, else `AWS_PROFILE`, else `default`,
/// as every AWS tool picks it.
pub fn profile_name(flag: Option<&str>, env: Option<&str>) -> String {
    flag.or(env)
        .filter(|p| !p.is_empty())
        .unwrap_or("default")
        .to_string()
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
    // The profile read and signed with here must be the one the plan
    // delivers to: a resumed self-rotation in another environment would
    // write the new key into one file and read it back from another.
    let here = std::path::absolute(&credentials_file).unwrap_or(credentials_file.clone());
    if let Some(pinned) = locked
        .plan
        .credentials_file
        .as_ref()
        .filter(|p| **p != here)
    {
        return Err(anyhow!(
            "{} delivers to profile [{profile}] in {}, but this environment's credentials file \
             is {} (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials). Nothing was changed. \
             Run self-rotate again with AWS_SHARED_CREDENTIALS_FILE={}",
            locked.path.display(),
            pinned.display(),
            here.display(),
            pinned.display()
        ));
    }
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
