//! `iam-rotate rollback`: reactivate the old key, stop the rotation.

use super::{plan_path, Context, Status};
use crate::cli::RollbackArgs;
use crate::deliver::Deliverer;
use crate::engine::Engine;
use crate::output;

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
    let report = engine.rollback(&mut locked, args.delete_new).await?;
    if context.json() {
        output::json(&report)?;
    } else {
        if report.actions.is_empty() {
            output::line(format!(
                "{}: already rolled back; nothing to do",
                report.user
            ));
        }
        for action in &report.actions {
            output::line(format!("{}: {action}", report.user));
        }
        if !args.delete_new {
            if let Some(new_key) = &locked.plan.new_key {
                output::note(format!(
                    "  the new key {} still exists; `iam-rotate rollback --delete-new {}` removes it",
                    crate::plan::mask_key(&new_key.id),
                    report.user
                ));
            }
        }
    }
    Ok(Status::Success)
}
