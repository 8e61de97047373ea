//! `iam-rotate rollback`: the guide's step 5 → step 2 (the old key Active
//! again, back to waiting for adoption), or with `--abort` the rotation
//! ended.

use serde::Serialize;

use super::{plan_path, Context, Status};
use crate::cli::RollbackArgs;
use crate::deliver::Deliverer;
use crate::engine::{Engine, RunReport};
use crate::output;
use crate::plan::{mask_key, Phase};
use crate::rotation::RollbackOptions;

#[derive(Serialize)]
struct RolledBack<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    /// Why nothing was undone, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    unchanged: Option<&'a str>,
    next_command: Option<String>,
}

pub async fn execute(context: &Context, args: RollbackArgs) -> anyhow::Result<Status> {
    let caller = context.caller().await?;
    let path = plan_path(&context.plans, &args.user, &caller.account)?;
    let Some(mut locked) = context.plans.lock(&path)? else {
        anyhow::bail!(
            "{} is locked by another iam-rotate process; wait for it to finish and roll back again",
            path.display()
        );
    };
    let deliverer = Deliverer::default();
    let engine = Engine {
        iam: context.iam().await,
        clock: context.clock.as_ref(),
        deliver: &deliverer,
        caller,
    };
    let options = RollbackOptions {
        abort: args.abort,
        delete_new: args.delete_new,
    };
    let before = crate::notify::Before::of(&locked.plan);
    let (report, unchanged) = engine.rollback(&mut locked, options).await?;
    let notifier = context.notifier().await;
    notifier
        .after_rollback(&mut locked, &before, context.clock.now())
        .await;
    let plan = &locked.plan;
    let next_command = context.next_command(plan);
    if context.json() {
        output::json(&RolledBack {
            report: &report,
            unchanged: unchanged.as_deref(),
            next_command,
        })?;
        return Ok(Status::Success);
    }
    let user = &report.user;
    if let Some(why) = &unchanged {
        output::line(format!("{user}: nothing changed: {why}"));
        return Ok(Status::Success);
    }
    if report.actions.is_empty() {
        output::line(format!("{user}: already rolled back; nothing to do"));
    }
    for action in &report.actions {
        output::line(format!("{user}: {action}"));
    }
    match (plan.phase, &plan.new_key) {
        (Phase::WaitForAdoption, Some(new_key)) => {
            output::line(format!(
                "  next: switch the application that failed to the new key {} (delivered to \
                 {}); the old key works again meanwhile",
                mask_key(&new_key.id),
                plan.delivery
            ));
            if let Some(command) = &next_command {
                output::line(format!(
                    "  then `{command}` carries the rotation on: it waits for adoption, checks \
                     the old key's last use and sets it inactive again"
                ));
            }
        }
        _ => {
            if let Some(command) = &next_command {
                output::line(format!(
                    "  the user has two keys until the new one goes; `{command}` deletes it (its \
                     applications lose access), after which `iam-rotate plan {user}` can start \
                     a new rotation"
                ));
            }
        }
    }
    Ok(Status::Success)
}
