//! Self-rotation: the engine drives a plan whose one consumer is the
//! caller's own profile. With the old key: create the new key and write it
//! into the profile. Then, signing with the new key (the old one is about
//! to stop working): wait, bounded, until it authenticates, let the engine
//! see it used and set the old key inactive, and with `--delete-now` delete
//! the old key at once. Every wait runs on the engine's [`Clock`], so a
//! manual clock runs the whole thing without waiting.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::iam::{Caller, Iam, IamError};
use crate::plan::{mask_key, LockedPlan, Phase};
use crate::rotation::self_rotation::{check_plan_key, deactivation_baseline, worth_waiting};

use super::{Engine, EngineError, Outcome, Refusal, RunOptions, RunReport};

/// IAM signed with the new key, whose secret is read back from where it
/// was delivered (the profile), not kept from the CreateAccessKey answer.
pub trait NewKeySigner: Send + Sync {
    fn iam_with(&self, key_id: &str) -> Result<Box<dyn Iam>, String>;
}

/// What a person sees while a self-rotation runs; the command prints.
pub trait SelfRotateEvents: Send + Sync {
    /// After each pass of the engine: the actions it took.
    fn report(&self, report: &RunReport);
    /// An action of the self-rotation's own, recorded in the plan.
    fn action(&self, user: &str, action: &str);
    /// The plan was blocked before this run.
    fn blocked(&self, user: &str, reason: &str);
    /// A bounded wait began, went on, or ended.
    fn waiting(&self, wait: Wait<'_>);
}

/// The course of one bounded wait, for a spinner.
#[derive(Clone, Copy, Debug)]
pub enum Wait<'a> {
    /// `announce`: say it even where no spinner can be drawn.
    Start {
        message: &'a str,
        announce: bool,
    },
    Update(&'a str),
    End,
}

#[derive(Clone, Copy, Debug)]
pub struct SelfRotateOptions {
    pub delete_now: bool,
    /// How long to wait, in all, for the new key to authenticate and for
    /// IAM to record its use.
    pub wait: Duration,
}

/// How a self-rotation ended.
#[derive(Debug)]
pub enum SelfRotated {
    Ended(Outcome),
    /// The new key did not authenticate in time; the old key stays active
    /// and the plan where it was (the message is on the plan too).
    TimedOut {
        message: String,
    },
}

/// A self-rotation: the engine signing with the old key, and how to sign
/// with the new one.
pub struct SelfRotation<'a> {
    pub engine: Engine<'a>,
    pub signer: &'a dyn NewKeySigner,
    pub events: &'a dyn SelfRotateEvents,
    pub options: SelfRotateOptions,
    /// The profile, for messages.
    pub profile: &'a str,
    /// The key id the profile signs with now.
    pub in_use: String,
    /// Every action taken, in order, as history has them.
    pub actions: Vec<String>,
}

impl SelfRotation<'_> {
    /// Drives the plan as far as it can go now.
    pub async fn run(&mut self, locked: &mut LockedPlan) -> Result<SelfRotated, EngineError> {
        // A plan in this account's folder that names another account was
        // put there by hand: nothing is read or changed for it, as `run`
        // does.
        if locked.plan.account != self.engine.caller.account {
            let reason = other_account(locked, &self.engine.caller, self.profile);
            return Ok(SelfRotated::Ended(Outcome::WrongAccount { reason }));
        }
        check_plan_key(&locked.plan, &self.in_use, self.profile, &locked.path)
            .map_err(|mismatch| EngineError::from(Refusal::KeyMismatch(mismatch.to_string())))?;
        let mut just_blocked = false;
        if locked.plan.phase == Phase::CreateSecondKey {
            let old_iam = self.engine.iam;
            let report = self.pass(old_iam, locked).await?;
            match report.outcome {
                Outcome::WrongAccount { .. } => return Ok(SelfRotated::Ended(report.outcome)),
                Outcome::Blocked { .. } => just_blocked = true,
                _ => {}
            }
        }
        match locked.plan.phase {
            Phase::Blocked => {
                let reason = locked.plan.blocked_reason.clone().unwrap_or_default();
                if !just_blocked {
                    self.events.blocked(&locked.plan.user, &reason);
                }
                return Ok(SelfRotated::Ended(Outcome::Blocked { reason }));
            }
            Phase::CreateSecondKey | Phase::Done | Phase::RolledBack => {
                return Ok(SelfRotated::Ended(Outcome::Finished))
            }
            _ => {}
        }

        // Switch to the new key: the old one is about to stop working.
        let new_key_id = new_key_id(locked)?;
        let new_iam = self
            .signer
            .iam_with(&new_key_id)
            .map_err(Refusal::CannotSign)?;
        let deadline = self.engine.clock.system_now()
            + chrono::Duration::from_std(self.options.wait).unwrap_or(chrono::Duration::MAX);
        // Once the old key is inactive the new one has long been proven.
        if !matches!(locked.plan.phase, Phase::Verify | Phase::Delete) {
            let user_arn = locked.plan.user_arn.clone();
            match self
                .wait_until_authenticates(new_iam.as_ref(), &user_arn, &new_key_id, deadline)
                .await
            {
                Ok(waited) => self.authenticated(locked, waited)?,
                Err(Unproven::Fatal(message)) => return Err(Refusal::OtherIdentity(message).into()),
                Err(Unproven::Timeout(last)) => return self.timed_out(locked, &last),
            }
        }

        // With the new key: the engine sees it used and sets the old key
        // inactive.
        let before = locked.plan.phase;
        let mut outcome = self.advance(new_iam.as_ref(), locked, deadline).await?;
        if locked.plan.phase == Phase::Verify {
            if self.options.delete_now {
                outcome = self.delete_now(new_iam.as_ref(), locked).await?;
            } else if before != Phase::Verify {
                self.baseline_at_deactivation(locked)?;
            }
        }
        Ok(SelfRotated::Ended(outcome))
    }

    /// One run of the engine, signing with `iam`.
    async fn pass(
        &mut self,
        iam: &dyn Iam,
        locked: &mut LockedPlan,
    ) -> Result<RunReport, EngineError> {
        let engine = Engine {
            iam,
            clock: self.engine.clock,
            deliver: self.engine.deliver,
            caller: self.engine.caller.clone(),
        };
        let report = engine.run(locked, RunOptions::default()).await?;
        self.events.report(&report);
        self.actions
            .extend(report.actions.iter().map(|a| a.text.clone()));
        Ok(report)
    }

    /// Records an action that changes no phase, and says it.
    fn record(&mut self, locked: &mut LockedPlan, action: String) -> Result<(), EngineError> {
        let stamp = self.engine.stamp();
        locked.plan.record(action.clone(), &stamp);
        locked.save()?;
        self.events.action(&locked.plan.user, &action);
        self.actions.push(action);
        Ok(())
    }

    fn authenticated(
        &mut self,
        locked: &mut LockedPlan,
        waited: Duration,
    ) -> Result<(), EngineError> {
        if locked.plan.phase != Phase::WaitForAdoption {
            return Ok(());
        }
        let action = format!(
            "new key {} authenticated as {} (STS GetCallerIdentity signed with it, after {}s); \
             IAM calls from here on are signed with it",
            mask_key(&new_key_id(locked)?),
            locked.plan.user_arn,
            waited.as_secs()
        );
        self.record(locked, action)
    }

    /// The new key never authenticated: the old key stays active, and the
    /// plan says so.
    fn timed_out(
        &mut self,
        locked: &mut LockedPlan,
        last: &str,
    ) -> Result<SelfRotated, EngineError> {
        let plan = &locked.plan;
        let message = format!(
            "the new key {} did not authenticate within {} (last answer from STS: {last}). \
             The old key {} stays active and the plan stays in {}; profile [{}] already holds \
             the new key. Run `iam-rotate self-rotate` again in a few minutes: it waits for the \
             new key again",
            mask_key(&new_key_id(locked)?),
            crate::duration::HumanDuration::from_secs(self.options.wait.as_secs()),
            mask_key(&plan.old_key.id),
            plan.phase,
            self.profile
        );
        locked.plan.last_error = Some(message.clone());
        self.record(locked, message.clone())?;
        Ok(SelfRotated::TimedOut { message })
    }

    /// Runs the engine with the new key, waiting within the bound for what
    /// can come soon (IAM recording the new key's use).
    async fn advance(
        &mut self,
        iam: &dyn Iam,
        locked: &mut LockedPlan,
        deadline: DateTime<Utc>,
    ) -> Result<Outcome, EngineError> {
        let mut waiting = false;
        let result = loop {
            let report = match self.pass(iam, locked).await {
                Ok(report) => report,
                Err(e) => break Err(e),
            };
            let clock = self.engine.clock;
            let left = (deadline - clock.system_now()).to_std().unwrap_or_default();
            let until = match &report.outcome {
                Outcome::Waiting { until, .. } => Some(*until),
                _ => None,
            };
            let pause =
                until.and_then(|until| worth_waiting(report.phase, until, clock.now(), left));
            if let Some(pause) = pause {
                if !waiting {
                    self.events.waiting(Wait::Start {
                        message: "waiting for IAM to record the new key's first use",
                        announce: false,
                    });
                    waiting = true;
                }
                clock.sleep(pause).await;
                continue;
            }
            break Ok(report.outcome);
        };
        if waiting {
            self.events.waiting(Wait::End);
        }
        result
    }

    /// The old key's last uses were this command's own calls, seconds
    /// before it went inactive, and IAM may publish them only later (its
    /// last-used data lags and is coarse). So that verify does not take them
    /// for a use after deactivation, its baseline becomes the real moment
    /// the key went inactive.
    fn baseline_at_deactivation(&mut self, locked: &mut LockedPlan) -> Result<(), EngineError> {
        let now = self.engine.clock.system_now();
        let Some(baseline) = deactivation_baseline(&locked.plan, now) else {
            return Ok(());
        };
        let old = &mut locked.plan.old_key;
        old.last_used_at_deactivation = Some(baseline);
        let action = format!(
            "verify baseline for old key {} set to {}, when it went inactive: its last uses were \
             self-rotate's own calls just before, which IAM may record late",
            mask_key(&old.id),
            crate::output::time(now)
        );
        self.record(locked, action)
    }

    /// `--delete-now`: the old key goes once the new one works, without
    /// waiting for verify_period.
    async fn delete_now(
        &mut self,
        iam: &dyn Iam,
        locked: &mut LockedPlan,
    ) -> Result<Outcome, EngineError> {
        let stamp = self.engine.stamp();
        let plan = &mut locked.plan;
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
        locked.save()?;
        self.events.action(&locked.plan.user, &action);
        self.actions.push(action);
        Ok(self.pass(iam, locked).await?.outcome)
    }

    /// Calls STS GetCallerIdentity with the new key until it answers with
    /// the user's ARN, or the deadline passes.
    async fn wait_until_authenticates(
        &self,
        iam: &dyn Iam,
        user_arn: &str,
        key_id: &str,
        deadline: DateTime<Utc>,
    ) -> Result<Duration, Unproven> {
        let clock = self.engine.clock;
        let started = clock.system_now();
        let elapsed = || (clock.system_now() - started).to_std().unwrap_or_default();
        let left = || (deadline - clock.system_now()).to_std().unwrap_or_default();
        let key = mask_key(key_id);
        self.events.waiting(Wait::Start {
            message: &format!("waiting for the new key {key} to authenticate"),
            announce: true,
        });
        let mut pause = Duration::from_millis(500);
        let result = loop {
            let last = match tokio::time::timeout(left(), iam.caller_identity()).await {
                Ok(Ok(caller)) if caller.arn == user_arn => break Ok(elapsed()),
                Ok(Ok(caller)) => {
                    break Err(Unproven::Fatal(format!(
                        "the new key {key} authenticates as {}, not as {user_arn}; nothing more \
                         was changed. Check the profile and the plan",
                        caller.arn
                    )))
                }
                Ok(Err(
                    IamError::Other { message, .. } | IamError::AccessDenied { message, .. },
                )) => message,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer before the time was up".into(),
            };
            if left().is_zero() {
                break Err(Unproven::Timeout(last));
            }
            self.events.waiting(Wait::Update(&format!(
                "waiting for the new key {key} to authenticate ({}s; last answer: {last})",
                elapsed().as_secs()
            )));
            clock.sleep(pause.min(left())).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        self.events.waiting(Wait::End);
        result
    }
}

/// Why the new key was not proven to work.
enum Unproven {
    /// Still not accepted when the time was up; the last answer.
    Timeout(String),
    /// Accepted as someone else: never go on.
    Fatal(String),
}

/// A plan in the caller's account folder that names another account.
fn other_account(locked: &LockedPlan, caller: &Caller, profile: &str) -> String {
    let plan = &locked.plan;
    let belongs = locked
        .path
        .parent()
        .and_then(|dir| dir.parent())
        .map(|root| root.join(&plan.account).join(format!("{}.yaml", plan.user)));
    format!(
        "{} is a plan for account {}, but profile [{profile}] signs as {} in account {}. \
         Nothing was changed. If the plan belongs to account {}, move it to {}; if it is a \
         stale copy, move it away; then run `iam-rotate self-rotate` again",
        locked.path.display(),
        plan.account,
        caller.arn,
        caller.account,
        plan.account,
        belongs
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| format!("the folder {}", plan.account))
    )
}

fn new_key_id(locked: &LockedPlan) -> Result<String, EngineError> {
    locked
        .plan
        .new_key
        .as_ref()
        .map(|k| k.id.clone())
        .ok_or(EngineError::Refused(Refusal::NoNewKey))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use async_trait::async_trait;

    use crate::clock::{Clock, ManualClock};
    use crate::deliver::fake::FakeDeliver;
    use crate::iam::{CreatedKey, LastUse, LiveKey, User};
    use crate::plan::{KeyStatus, PlanStore};
    use crate::sim::SimAccount;

    /// The simulated account signed with the new key: IAM records the
    /// key's use only `lag` after the signer was made, as it does, late.
    struct SignedWithNewKey {
        sim: SimAccount,
        key: String,
        since: DateTime<Utc>,
        lag: chrono::Duration,
        clock: ManualClock,
    }

    impl SignedWithNewKey {
        fn signed(&self) {
            if self.clock.now() - self.since >= self.lag {
                self.sim.use_key(&self.key, "sts", "us-east-1");
            }
        }
    }

    #[async_trait]
    impl Iam for SignedWithNewKey {
        async fn caller_identity(&self) -> Result<Caller, IamError> {
            self.signed();
            self.sim.caller_identity().await
        }
        async fn get_user(&self, user: &str) -> Result<User, IamError> {
            self.signed();
            self.sim.get_user(user).await
        }
        async fn list_users(&self, prefix: Option<&str>) -> Result<Vec<User>, IamError> {
            self.signed();
            self.sim.list_users(prefix).await
        }
        async fn list_access_keys(&self, user: &str) -> Result<Vec<LiveKey>, IamError> {
            self.signed();
            self.sim.list_access_keys(user).await
        }
        async fn create_access_key(&self, user: &str) -> Result<CreatedKey, IamError> {
            self.signed();
            self.sim.create_access_key(user).await
        }
        async fn update_access_key(
            &self,
            user: &str,
            key_id: &str,
            status: KeyStatus,
        ) -> Result<(), IamError> {
            self.signed();
            self.sim.update_access_key(user, key_id, status).await
        }
        async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), IamError> {
            self.signed();
            self.sim.delete_access_key(user, key_id).await
        }
        async fn access_key_last_used(&self, key_id: &str) -> Result<LastUse, IamError> {
            self.signed();
            self.sim.access_key_last_used(key_id).await
        }
    }

    struct Signer {
        sim: SimAccount,
        clock: ManualClock,
        lag: chrono::Duration,
    }

    impl NewKeySigner for Signer {
        fn iam_with(&self, key_id: &str) -> Result<Box<dyn Iam>, String> {
            Ok(Box::new(SignedWithNewKey {
                sim: self.sim.clone(),
                key: key_id.to_string(),
                since: self.clock.now(),
                lag: self.lag,
                clock: self.clock.clone(),
            }))
        }
    }

    #[derive(Default)]
    struct Quiet;

    impl SelfRotateEvents for Quiet {
        fn report(&self, _: &RunReport) {}
        fn action(&self, _: &str, _: &str) {}
        fn blocked(&self, _: &str, _: &str) {}
        fn waiting(&self, _: Wait<'_>) {}
    }

    /// A whole self-rotation on the simulated account and a manual clock:
    /// the waits for IAM to record the new key's use are slept on that
    /// clock, so nine simulated seconds pass and no real ones.
    async fn self_rotate(delete_now: bool) -> (SimAccount, LockedPlan, chrono::Duration) {
        const ACCOUNT: &str = "111122223333";
        let start = Utc::now();
        let clock = ManualClock::new(start);
        let sim = SimAccount::new(ACCOUNT, Arc::new(clock.clone()));
        // The simulated caller is `operator`: the user who self-rotates.
        sim.add_user("operator");
        let old = sim.add_key("operator", start - chrono::Duration::days(90));
        let caller = sim.caller_identity().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = PlanStore::new(dir.path().join("plans"));
        let path = store.path_for(ACCOUNT, "operator");
        let (mut locked, resumed) = crate::planner::open_self_rotation(
            &sim,
            &store,
            &clock,
            &caller,
            "profile:default",
            &path,
        )
        .await
        .unwrap();
        assert!(!resumed);
        let deliver = FakeDeliver::default();
        let signer = Signer {
            sim: sim.clone(),
            clock: clock.clone(),
            lag: chrono::Duration::seconds(7),
        };
        let mut rotation = SelfRotation {
            engine: Engine {
                iam: &sim,
                clock: &clock,
                deliver: &deliver,
                caller,
            },
            signer: &signer,
            events: &Quiet,
            options: SelfRotateOptions {
                delete_now,
                wait: Duration::from_secs(120),
            },
            profile: "default",
            in_use: old,
            actions: Vec::new(),
        };
        let real = std::time::Instant::now();
        let ended = rotation.run(&mut locked).await.unwrap();
        assert!(matches!(ended, SelfRotated::Ended(_)), "{ended:?}");
        assert!(
            real.elapsed() < Duration::from_secs(5),
            "slept in real time"
        );
        (sim, locked, clock.now() - start)
    }

    #[tokio::test]
    async fn the_waits_run_on_the_engine_s_clock() {
        let (sim, locked, waited) = self_rotate(false).await;
        assert_eq!(locked.plan.phase, Phase::Verify);
        assert!(waited >= chrono::Duration::seconds(7), "{waited}");
        assert!(waited < chrono::Duration::seconds(60), "{waited}");
        let keys = sim.keys("operator");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].1, KeyStatus::Inactive);
        assert_eq!(keys[1].1, KeyStatus::Active);
        assert!(locked.plan.old_key.last_used_at_deactivation.is_some());
    }

    #[tokio::test]
    async fn delete_now_leaves_only_the_new_key() {
        let (sim, locked, _) = self_rotate(true).await;
        assert_eq!(locked.plan.phase, Phase::Done);
        let keys = sim.keys("operator");
        assert_eq!(keys.len(), 1);
        assert_eq!(
            Some(keys[0].0.as_str()),
            locked.plan.new_key.as_ref().map(|k| k.id.as_str())
        );
    }
}
