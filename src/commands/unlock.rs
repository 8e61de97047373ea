//! `iam-rotate unlock USER --force`: remove a dead runner's lock file or
//! S3 lease by hand.

use super::{is_plan_path, plan_path, Context, Status};
use crate::cli::UnlockArgs;
use crate::error::UsageError;
use crate::output;
use crate::plan::store::Unlocked;

pub async fn execute(context: &Context, args: UnlockArgs) -> anyhow::Result<Status> {
    if !args.force {
        return Err(UsageError(format!(
            "unlock removes the lock another runner may still hold; if its runner is dead, run \
             `iam-rotate unlock {} --force`",
            args.user
        ))
        .into());
    }
    let account = if is_plan_path(&args.user) {
        String::new()
    } else {
        context.reading_account(args.account.as_deref()).await?
    };
    let path = plan_path(&context.plans, &args.user, &account)?;
    let unlocked = context.plans.unlock(&path)?;
    if context.json() {
        let removed = match &unlocked {
            Unlocked::Nothing => None,
            Unlocked::Removed(what) => Some(what.as_str()),
        };
        output::json(&serde_json::json!({
            "plan": path.display().to_string(),
            "removed": removed,
        }))?;
    } else {
        match unlocked {
            Unlocked::Nothing => {
                output::line(format!("{}: no lock or lease to remove", path.display()))
            }
            Unlocked::Removed(what) => output::line(format!("{}: removed {what}", path.display())),
        }
    }
    Ok(Status::Success)
}
