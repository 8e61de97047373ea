//! `iam-rotate show`: one plan in full, and what to do next.

use serde::Serialize;

use super::{is_plan_path, plan_path, Context, Status};
use crate::cli::ShowArgs;
use crate::output::{self, opt_time, time};
use crate::plan::{mask_key, Plan};
use crate::rotation::{outlook, overdue};

#[derive(Serialize)]
struct Shown<'a> {
    plan: &'a Plan,
    next_step: String,
    due_at: Option<chrono::DateTime<chrono::Utc>>,
    overdue: bool,
    overdue_reason: Option<String>,
    /// The exact command to run next, or null.
    next_command: Option<String>,
}

pub async fn execute(context: &Context, args: ShowArgs) -> anyhow::Result<Status> {
    let account = if is_plan_path(&args.user) {
        String::new()
    } else {
        context.reading_account(args.account.as_deref()).await?
    };
    let path = plan_path(&context.plans, &args.user, &account)?;
    let plan = context.plans.load(&path)?;
    let now = context.clock.now();
    let look = outlook(&plan, now);
    let overdue = overdue(&plan, now);
    let next_command = context.next_command(&plan);
    if context.json() {
        output::json(&Shown {
            plan: &plan,
            next_step: look.next_step,
            due_at: look.due_at,
            overdue: overdue.is_some(),
            overdue_reason: overdue.map(|o| o.what),
            next_command,
        })?;
        return Ok(Status::Success);
    }
    output::line(format!("plan      {}", path.display()));
    output::line(format!("user      {} ({})", plan.user, plan.user_arn));
    output::line(format!("account   {}", plan.account));
    output::line(format!("delivery  {}", plan.delivery));
    output::line(format!(
        "policy    adoption_wait {}, quiet_period {}, verify_period {}, require_new_key_use {}",
        plan.policy.adoption_wait,
        plan.policy.quiet_period,
        plan.policy.verify_period,
        plan.policy.require_new_key_use
    ));
    output::line(format!(
        "old key   {} {} created {}{}",
        mask_key(&plan.old_key.id),
        plan.old_key.status,
        time(plan.old_key.created_at),
        plan.old_key
            .deactivated_at
            .map(|t| format!(", inactive since {}", time(t)))
            .unwrap_or_default()
    ));
    match &plan.new_key {
        Some(k) => output::line(format!(
            "new key   {} created {}",
            mask_key(&k.id),
            time(k.created_at)
        )),
        None => output::line("new key   (not created yet)"),
    }
    output::line(format!(
        "phase     {} since {} ({})",
        plan.phase,
        time(plan.phase_since),
        crate::duration::relative(plan.phase_since, now)
    ));
    if let Some(reason) = &plan.blocked_reason {
        output::line(format!(
            "blocked   in {}: {reason}",
            plan.blocked_in.map(|p| p.to_string()).unwrap_or_default()
        ));
    }
    if let Some(error) = &plan.last_error {
        output::line(format!("last error {error}"));
    }
    output::line(format!("next      {}", look.next_step));
    output::line(format!("due at    {}", opt_time(look.due_at)));
    if let Some(command) = &next_command {
        output::line(format!("run next  {command}"));
    }
    if let Some(overdue) = &overdue {
        output::line(format!(
            "OVERDUE   since {}: {}",
            time(overdue.since),
            overdue.what
        ));
    }
    let notices = &plan.notifications;
    if let Some(oldest) = notices.pending.first() {
        output::line(format!(
            "notices   {} not delivered yet, the oldest {} of {} to {}; the next run with \
             those targets (--notify, or the plan's own) sends them again",
            notices.pending.len(),
            oldest.event,
            time(oldest.at),
            oldest.to.join(", ")
        ));
    } else if let Some(sent) = &notices.last_sent {
        output::line(format!(
            "notices   all delivered, the last {} of {}",
            sent.event,
            time(sent.at)
        ));
    }
    if !plan.observations.is_empty() {
        output::line("\nobservations (last use as IAM reported it)");
        let rows = plan
            .observations
            .iter()
            .map(|o| {
                let place = |svc: &Option<String>, region: &Option<String>| match (svc, region) {
                    (Some(s), Some(r)) => format!(" {s} {r}"),
                    (Some(s), None) => format!(" {s}"),
                    _ => String::new(),
                };
                vec![
                    time(o.at),
                    format!(
                        "{}{}",
                        opt_time(o.old_last_used),
                        place(&o.old_service, &o.old_region)
                    ),
                    format!(
                        "{}{}",
                        opt_time(o.new_last_used),
                        place(&o.new_service, &o.new_region)
                    ),
                ]
            })
            .collect();
        output::line(output::table(
            &["AT", "OLD KEY LAST USED", "NEW KEY LAST USED"],
            rows,
        ));
    }
    output::line("\nhistory");
    let rows = plan
        .history
        .iter()
        .map(|h| {
            vec![
                time(h.at),
                if h.from == h.to {
                    h.to.to_string()
                } else {
                    format!("{} -> {}", h.from, h.to)
                },
                h.action.clone(),
                h.actor.clone(),
            ]
        })
        .collect();
    output::line(output::table(&["AT", "PHASE", "ACTION", "BY"], rows));
    Ok(Status::Success)
}
