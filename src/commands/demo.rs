//! `iam-rotate demo`: four rotations on a simulated account, on simulated
//! time, printed as an operator would see them — one of them rolled back by
//! the guide's step 5 → step 2 and finished, one overdue because nothing
//! adopted its new key. No AWS, no network.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};

use super::run::{print_result, RunResult};
use super::status::StatusRow;
use super::{Context, Status};
use crate::cli::DemoArgs;
use crate::clock::{Clock, ManualClock};
use crate::deliver::Deliverer;
use crate::engine::{Engine, RunOptions};
use crate::fleet::run::run_one_with;
use crate::iam::Iam;
use crate::notify::{Notice, Notifier, Target, Transport};
use crate::output;
use crate::plan::{PlanStore, Stamp};
use crate::planner::{plan_user, PlanRequest};
use crate::rotation::policy::Policy;
use crate::sim::SimAccount;

const ACCOUNT: &str = "111122223333";
const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

pub async fn execute(context: &Context, _args: DemoArgs) -> anyhow::Result<Status> {
    let workdir = tempfile::tempdir()?;
    let start = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .ok_or_else(|| anyhow::anyhow!("invalid demo start time"))?;
    let clock = ManualClock::new(start);
    let sim = SimAccount::new(ACCOUNT, Arc::new(clock.clone()));
    let mut old_keys = Vec::new();
    for user in USERS {
        sim.add_user(user);
        let key = sim.add_key(user, start - Duration::days(200));
        sim.use_key(&key, "s3", "eu-west-1");
        old_keys.push(key);
    }
    let store = PlanStore::new(workdir.path().join("plans"));
    let caller = sim.caller_identity().await?;
    let deliverer = Deliverer::default();
    let engine = Engine {
        iam: &sim,
        clock: &clock,
        deliver: &deliverer,
        caller: caller.clone(),
    };
    let say = |text: String| {
        if !context.json() {
            output::line(text);
        }
    };
    say(format!(
        "Simulated account {ACCOUNT}: users alice, bob, carol and dave each have one 200-day-old \
         key in use.\nPolicy: adoption_wait 7d, quiet_period 3d, verify_period 7d, overdue_after \
         7d. Secrets go to {}.\n",
        workdir.path().join("credentials").display()
    ));
    let stamp = Stamp::new(&clock, &caller);
    let delivery = format!("file:{}/credentials/{{user}}.csv", workdir.path().display());
    let policy = Policy::default();
    say(format!(
        "== day 0 ({}): iam-rotate plan alice bob carol dave",
        start.format("%Y-%m-%d")
    ));
    for user in USERS {
        let request = PlanRequest {
            user,
            policy: &policy,
            delivery: &delivery,
            older_than: None,
            kind: crate::plan::PlanKind::Plan,
            notify: &[],
        };
        let planned = plan_user(&sim, &store, &caller, &stamp, &request).await?;
        if !context.json() {
            super::plan::print_row(user, &planned);
        }
    }

    // Where the team hears of plans that need a person: printed here, as a
    // webhook would receive it.
    let sink = Target::parse(DEMO_SINK).map_err(anyhow::Error::msg)?;
    let notifier = Notifier::new(
        vec![sink],
        Arc::new(PrintedSink {
            json: context.json(),
        }),
    );
    say(format!(
        "Notices go to the team's channel: iam-rotate --notify {DEMO_SINK} run --all\n"
    ));
    let mut results = Vec::new();
    let mut rolled_back = false;
    for day in 0..=23 {
        if day > 0 {
            clock.advance(Duration::days(1));
        }
        applications_on(&sim, day, &old_keys);
        if ![0, 1, 7, 8, 9, 14, 15, 16, 23].contains(&day) {
            continue;
        }
        let now = clock.now();
        say(format!(
            "\n== day {day} ({}): iam-rotate run --all",
            now.format("%Y-%m-%d")
        ));
        results.clear();
        for path in store.list(ACCOUNT)? {
            let result = run_one_with(
                &engine,
                &store,
                Some(&notifier),
                path,
                RunOptions::default(),
            )
            .await;
            if !context.json() {
                print_result(&result, now, &[]);
            }
            results.push(result);
        }
        let carol_blocked = results.iter().any(|r| {
            matches!(r, RunResult::Report(rep) if rep.user == "carol"
                && matches!(rep.outcome, crate::engine::Outcome::Blocked { .. }))
        });
        if carol_blocked && !rolled_back {
            say(
                "\n== the operator reads carol's reason and takes the guide's step 5 back to step \
                 2: iam-rotate rollback carol"
                    .into(),
            );
            let path = store.path_for(ACCOUNT, "carol");
            if let Some(mut locked) = store.lock(&path)? {
                let options = crate::rotation::RollbackOptions::default();
                let (report, _) = engine.rollback(&mut locked, options).await?;
                for action in report.actions {
                    say(format!("carol: {action}"));
                }
            }
            say(
                "carol: her cron job is switched to the new key; the same rotation carries on"
                    .into(),
            );
            rolled_back = true;
        }
    }

    print_status(context, &sim, &store, clock.now())?;
    Ok(Status::Success)
}

/// The notification target of the demo: nothing listens there; the
/// [`PrintedSink`] prints what it would receive.
const DEMO_SINK: &str = "webhook:http://127.0.0.1/team-channel";

/// Prints each notice as the webhook would get it.
struct PrintedSink {
    json: bool,
}

#[async_trait::async_trait]
impl Transport for PrintedSink {
    async fn send(&self, target: &Target, notice: &Notice) -> Result<(), String> {
        if !self.json {
            let body = serde_json::to_string(notice).map_err(|e| e.to_string())?;
            output::line(format!("  notice to {}: {body}", target.label()));
        }
        Ok(())
    }
}

/// What the applications do on `day`: alice's switch at once, bob's batch
/// job on day 6, a forgotten cron job of carol's runs on day 9 (and is
/// switched after the rollback), and nothing of dave's ever adopts.
fn applications_on(sim: &SimAccount, day: u32, old_keys: &[String]) {
    for (i, user) in USERS.iter().enumerate() {
        let keys = sim.keys(user);
        let new_key = keys
            .iter()
            .find(|(id, _)| id != &old_keys[i])
            .map(|(id, _)| id.clone());
        let still_on_old = match *user {
            "bob" => day < 6,    // bob's batch job is updated on day 6
            "carol" => day == 9, // a forgotten cron job of carol's runs on day 9
            "dave" => true,      // dave's application is never updated
            _ => false,
        };
        if *user == "dave" {
            sim.use_key(&old_keys[i], "s3", "eu-west-1");
            continue;
        }
        if still_on_old || (day < 1 && new_key.is_none()) {
            sim.use_key(&old_keys[i], "s3", "eu-west-1");
        }
        if let Some(new_key) = new_key {
            if day >= 1 {
                sim.use_key(&new_key, "sqs", "eu-west-1");
            }
        }
    }
}

/// The closing `status` table (or JSON document).
fn print_status(
    context: &Context,
    sim: &SimAccount,
    store: &PlanStore,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let say = |text: String| {
        if !context.json() {
            output::line(text);
        }
    };
    let rows: Vec<StatusRow> = store
        .list(ACCOUNT)?
        .into_iter()
        .map(|path| {
            store
                .load(&path)
                .map(|plan| StatusRow::new(&plan, path, now, None))
        })
        .collect::<Result<_, _>>()?;
    if context.json() {
        output::json(&rows)?;
    } else {
        say("\n== iam-rotate status".into());
        output::line(output::table(
            &["USER", "PHASE", "SINCE", "NEXT STEP"],
            rows.iter()
                .map(|r| {
                    vec![
                        r.user.clone(),
                        if r.overdue {
                            format!("{} (OVERDUE)", r.phase)
                        } else {
                            r.phase.to_string()
                        },
                        output::time(r.phase_since),
                        r.next_step.clone(),
                    ]
                })
                .collect(),
        ));
        say(format!(
            "\nIAM calls made: {} ({} of them writes). Nothing outside this simulation was touched.",
            sim.calls().len(),
            sim.writes().len()
        ));
    }
    Ok(())
}
