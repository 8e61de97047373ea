//! The world one seed drives: the simulated account on the true clock,
//! destinations and the applications that read them, and the numbered
//! crash points every side effect passes through.
//!
//! The engine reaches the world only through its own traits: [`SimIam`]
//! (`Iam`), [`SimDeliver`] (`Deliver`) and [`RunnerClock`] (`Clock`); plan
//! saves and lock takes are seen through [`crate::atomic::observer`]. Each
//! side effect is a point, counted within the step that runs; at the point
//! the step names, the process "crashes": the point unwinds (without the
//! panic hook), every runner's memory is dropped, and only what the account,
//! the destinations and the plans folder hold survives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use secrecy::ExposeSecret;

use super::rng::Rng;
use crate::clock::{Clock, ManualClock};
use crate::deliver::{Deliver, DeliverError, Destination, Held};
use crate::iam::{Caller, CreatedKey, Iam, IamError, KeyStatus, LastUse, LiveKey, User};
use crate::plan::{Plan, PlanStore};
use crate::sim::SimAccount;

/// The account every simulation runs in.
pub const ACCOUNT: &str = "123456789012";

/// The payload a crash unwinds with.
pub struct Crashed;

/// Every kind of crash point there is: each IAM call before it reaches the
/// account and after the account applied it, each destination check,
/// write, read-back and read, each plan save before and after its rename,
/// each lock take, and the end of an invocation (locks released).
pub const SITES: &[&str] = &[
    "GetCallerIdentity:before",
    "GetCallerIdentity:after",
    "GetUser:before",
    "GetUser:after",
    "ListAccessKeys:before",
    "ListAccessKeys:after",
    "GetAccessKeyLastUsed:before",
    "GetAccessKeyLastUsed:after",
    "CreateAccessKey:before",
    "CreateAccessKey:after",
    "UpdateAccessKey:before",
    "UpdateAccessKey:after",
    "DeleteAccessKey:before",
    "DeleteAccessKey:after",
    "destination:check",
    "destination:write",
    "destination:written",
    "destination:read-back",
    "destination:read",
    "plan:save",
    "plan:saved",
    "lock:take",
    "lock:release",
];

/// What the invocation a runner carries out may do, for the invariants
/// that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Plan,
    Run,
    Rollback { delete_new: bool },
    SelfRotate { delete_now: bool },
}

/// What a destination holds: a key id and the secret written with it
/// (empty for the key it held before any rotation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    pub key_id: String,
    pub secret: String,
}

/// The mutable side of the world.
#[derive(Default)]
pub struct State {
    /// Points passed in this simulation, and in the current step.
    pub points: u64,
    pub step_points: u32,
    /// Crash at this point of the current step.
    pub crash_at: Option<u32>,
    /// At this point of the current step (an IAM write's `after`), the
    /// account applied the call but its answer is lost.
    pub lose_at: Option<u32>,
    pub crashed: bool,
    /// Random faults: the chance per call in a thousand, and their source.
    pub fault_rate: u64,
    pub faults: Option<Rng>,
    pub faults_injected: u64,
    pub crashes: u64,
    /// Log lines the commands wrote, every one scanned for secrets.
    pub log_lines: u64,
    /// The largest clock skew of any runner, which time invariants allow.
    pub max_skew: Duration,
    /// Interleaving: runner `.0` pauses at its first async point from
    /// point `.1` of the step on, at `gate`.
    pub pause_at: Option<(u8, u32)>,
    pub gate: Option<Arc<Gate>>,
    /// The sites of the current step's points, in order.
    pub step_sites: Vec<String>,
    /// What happened, in order: points, faults, steps.
    pub trace: Vec<String>,
    /// Distinct (site, phase of the plan on disk) pairs reached.
    pub reached: BTreeSet<(String, String)>,
    /// Which user a key belongs to, as far as the runners have seen.
    pub key_owner: BTreeMap<String, String>,
    /// Keys made by iam-rotate's CreateAccessKey (answered or not).
    pub created: BTreeMap<String, String>,
    /// Secrets that came back from CreateAccessKey: key id → secret.
    pub secrets: BTreeMap<String, String>,
    /// What each destination holds, by its spec.
    pub destinations: BTreeMap<String, Holding>,
    /// Each user's plan file as last read, and what loading it gave.
    pub loaded: BTreeMap<String, (String, Result<Plan, String>)>,
    /// Safety violations seen while a call was being made.
    pub violations: Vec<String>,
}

struct Inner {
    account: SimAccount,
    clock: ManualClock,
    store: PlanStore,
    state: Mutex<State>,
}

/// Where an interleaved runner waits for the other: made afresh for each
/// interleaving, so no signal outlives it.
#[derive(Default)]
pub struct Gate {
    pub paused: tokio::sync::Notify,
    pub resume: tokio::sync::Notify,
}

/// The world; cheap to clone, clones share it.
#[derive(Clone)]
pub struct World(Arc<Inner>);

impl World {
    pub fn new(root: &Path, start: DateTime<Utc>) -> Self {
        let clock = ManualClock::new(start);
        let account = SimAccount::new(ACCOUNT, Arc::new(clock.clone()));
        World(Arc::new(Inner {
            account,
            clock,
            store: PlanStore::new(root),
            state: Mutex::new(State::default()),
        }))
    }

    pub fn account(&self) -> &SimAccount {
        &self.0.account
    }

    pub fn clock(&self) -> &ManualClock {
        &self.0.clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.0.clock.now()
    }

    pub fn store(&self) -> &PlanStore {
        &self.0.store
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn plan_path(&self, user: &str) -> std::path::PathBuf {
        self.0.store.path_for(ACCOUNT, user)
    }

    /// The plan on disk for `user`, if there is one that loads.
    pub fn plan_on_disk(&self, user: &str) -> Option<Plan> {
        self.load_plan(user).and_then(Result::ok)
    }

    /// Loads `user`'s plan with the store's own `load` (`None`: no file),
    /// parsing each version of the file once: the invariants read every
    /// plan after every step.
    pub fn load_plan(&self, user: &str) -> Option<Result<Plan, String>> {
        let path = self.plan_path(user);
        let text = std::fs::read_to_string(&path).ok()?;
        if let Some((seen, loaded)) = self.state().loaded.get(user) {
            if *seen == text {
                return Some(loaded.clone());
            }
        }
        let loaded = self.store().load(&path).map_err(|e| e.to_string());
        self.state()
            .loaded
            .insert(user.to_string(), (text, loaded.clone()));
        Some(loaded)
    }

    pub fn note(&self, line: String) {
        self.state().trace.push(line);
    }

    pub fn violation(&self, what: String) {
        let mut state = self.state();
        state.trace.push(format!("VIOLATION {what}"));
        state.violations.push(what);
    }

    /// A numbered crash point. Unwinds when this is the point to crash at,
    /// or when the process already crashed (a dead process does nothing
    /// more, in any of its tasks). Returns the point's number in the step.
    pub fn point(&self, site: &str, user: Option<&str>, detail: &str) -> u32 {
        let phase = user.map(|u| self.phase_of(u)).unwrap_or_else(|| "-".into());
        let mut state = self.state();
        if state.crashed {
            drop(state);
            std::panic::resume_unwind(Box::new(Crashed));
        }
        let n = state.step_points;
        state.step_points += 1;
        state.points += 1;
        state.reached.insert((site.to_string(), phase.clone()));
        state.step_sites.push(site.to_string());
        state
            .trace
            .push(format!("  #{n} {site} {detail} [{phase}]"));
        if state.crash_at == Some(n) {
            state.crashed = true;
            state.crashes += 1;
            state.trace.push(format!("  CRASH at #{n}"));
            drop(state);
            std::panic::resume_unwind(Box::new(Crashed));
        }
        n
    }

    /// The phase of `user`'s plan on disk, for naming points: its
    /// `phase:` line, read without parsing the whole plan.
    fn phase_of(&self, user: &str) -> String {
        let Ok(text) = std::fs::read_to_string(self.plan_path(user)) else {
            return "no plan".into();
        };
        text.lines()
            .find_map(|line| line.strip_prefix("phase: "))
            .unwrap_or("unreadable")
            .to_string()
    }

    /// Whether a random fault strikes now; counted and traced when it does.
    pub fn fault(&self, what: &str) -> bool {
        let mut state = self.state();
        let rate = state.fault_rate;
        let strikes = rate > 0 && state.faults.as_mut().is_some_and(|rng| rng.chance(rate));
        if strikes {
            state.faults_injected += 1;
            state.trace.push(format!("  FAULT {what}"));
        }
        strikes
    }

    /// Pauses runner `runner` at point `n` when the step interleaves it
    /// there: the other runner goes until it ends.
    pub async fn maybe_pause(&self, runner: u8, n: u32) {
        let gate = {
            let mut state = self.state();
            if state.pause_at.is_some_and(|(r, at)| r == runner && n >= at) {
                state.pause_at = None;
                state
                    .trace
                    .push(format!("  runner {runner} paused at #{n}"));
                state.gate.clone()
            } else {
                None
            }
        };
        if let Some(gate) = gate {
            gate.paused.notify_one();
            gate.resume.notified().await;
        }
    }

    /// The user `key_id` belongs to, as the runners have seen.
    pub fn owner_of(&self, key_id: &str) -> Option<String> {
        self.state().key_owner.get(key_id).cloned()
    }

    /// The plan-save and lock-take points, reached through the atomic
    /// write observer.
    pub fn file_point(&self, path: &Path, stage: crate::atomic::observer::Stage) {
        use crate::atomic::observer::Stage;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let user = name
            .trim_start_matches('.')
            .trim_end_matches(".lock")
            .trim_end_matches(".yaml")
            .to_string();
        let site = match stage {
            Stage::Write => "plan:save",
            Stage::Renamed => "plan:saved",
            Stage::Lock => "lock:take",
        };
        self.point(site, Some(&user), &user);
    }
}

/// A runner's clock: the true time, off by the runner's skew. Its waits
/// move the true time.
pub struct RunnerClock {
    pub world: World,
    pub skew: Duration,
}

#[async_trait]
impl Clock for RunnerClock {
    fn now(&self) -> DateTime<Utc> {
        self.world.now() + self.skew
    }

    async fn sleep(&self, for_: std::time::Duration) {
        if let Ok(by) = Duration::from_std(for_) {
            self.world.clock().advance(by);
        }
    }
}

/// IAM as one runner reaches it: every call a pair of crash points around
/// the account, with faults before (throttling, 5xx) and after (the answer
/// lost), and the call-time invariants checked before a write applies.
pub struct SimIam {
    pub world: World,
    pub runner: u8,
    pub purpose: Purpose,
    /// The runner's clock skew, which the time invariants allow for.
    pub skew: Duration,
    /// The access key the calls are signed with, when it is a key of the
    /// simulated account (self-rotate): each call is a use of it, and
    /// fails when it is not Active.
    pub signs_with: Option<String>,
}

impl SimIam {
    async fn before(&self, op: &str, user: Option<&str>, detail: &str) -> Result<(), IamError> {
        let n = self
            .world
            .point(&format!("{op}:before"), user, &format!("{op} {detail}"));
        self.world.maybe_pause(self.runner, n).await;
        if let Some(key) = &self.signs_with {
            let active = self
                .world
                .account()
                .key_states(&self.world.owner_of(key).unwrap_or_default())
                .iter()
                .any(|(k, _)| k.id == *key && k.status == KeyStatus::Active);
            if !active {
                return Err(IamError::AccessDenied {
                    operation: op.to_string(),
                    message: format!("InvalidClientTokenId: key {key} is not active (simulated)"),
                });
            }
            self.world.account().use_key(key, "iam", "us-east-1");
        }
        if self.world.fault(&format!("{op} throttled")) {
            return Err(IamError::Other {
                operation: op.to_string(),
                message: "Throttling: Rate exceeded (simulated)".into(),
            });
        }
        if self.world.fault(&format!("{op} 503, not applied")) {
            return Err(IamError::Unanswered {
                operation: op.to_string(),
                message: "HTTP 503 (simulated)".into(),
            });
        }
        Ok(())
    }

    /// After the account applied a write: the crash point, and a lost
    /// answer when the step or chance says so.
    fn after(
        &self,
        op: &str,
        user: Option<&str>,
        detail: &str,
        write: bool,
    ) -> Result<(), IamError> {
        let n = self
            .world
            .point(&format!("{op}:after"), user, &format!("{op} {detail}"));
        let forced = write && self.world.state().lose_at == Some(n);
        let weight = if op == "CreateAccessKey" { 3 } else { 1 };
        let chance = write && (0..weight).any(|_| self.world.fault(&format!("{op} answer lost")));
        if forced {
            self.world
                .note(format!("  LOST the answer of {op} at #{n}"));
            self.world.state().faults_injected += 1;
        }
        if forced || chance {
            return Err(IamError::Unanswered {
                operation: op.to_string(),
                message: "connection reset after the request was sent (simulated)".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Iam for SimIam {
    async fn caller_identity(&self) -> Result<Caller, IamError> {
        self.before("GetCallerIdentity", None, "").await?;
        let caller = self.world.account().caller_identity().await;
        self.after("GetCallerIdentity", None, "", false)?;
        caller
    }

    async fn get_user(&self, user: &str) -> Result<User, IamError> {
        self.before("GetUser", Some(user), user).await?;
        let answer = self.world.account().get_user(user).await;
        self.after("GetUser", Some(user), user, false)?;
        answer
    }

    async fn list_users(&self, path_prefix: Option<&str>) -> Result<Vec<User>, IamError> {
        self.before("ListUsers", None, "").await?;
        let answer = self.world.account().list_users(path_prefix).await;
        self.after("ListUsers", None, "", false)?;
        answer
    }

    async fn list_access_keys(&self, user: &str) -> Result<Vec<LiveKey>, IamError> {
        self.before("ListAccessKeys", Some(user), user).await?;
        let answer = self.world.account().list_access_keys(user).await;
        if let Ok(keys) = &answer {
            let mut state = self.world.state();
            for key in keys {
                state.key_owner.insert(key.id.clone(), user.to_string());
            }
        }
        self.after("ListAccessKeys", Some(user), user, false)?;
        answer
    }

    async fn create_access_key(&self, user: &str) -> Result<CreatedKey, IamError> {
        self.before("CreateAccessKey", Some(user), user).await?;
        let before: BTreeSet<String> = self
            .world
            .account()
            .keys(user)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let answer = self.world.account().create_access_key(user).await;
        // The key exists now, answered or not.
        let made = self
            .world
            .account()
            .keys(user)
            .into_iter()
            .find(|(id, _)| !before.contains(id));
        if let Some((id, _)) = &made {
            let mut state = self.world.state();
            state.created.insert(id.clone(), user.to_string());
            state.key_owner.insert(id.clone(), user.to_string());
        }
        let detail = format!("{user} {}", made.map(|(id, _)| id).unwrap_or_default());
        self.after("CreateAccessKey", Some(user), &detail, true)?;
        if let Ok(created) = &answer {
            self.world.state().secrets.insert(
                created.id.clone(),
                created.secret.expose_secret().to_string(),
            );
        }
        answer
    }

    async fn update_access_key(
        &self,
        user: &str,
        key_id: &str,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        let detail = format!("{user} {key_id} {status}");
        self.before("UpdateAccessKey", Some(user), &detail).await?;
        if status == KeyStatus::Inactive {
            super::invariants::check_deactivation(self, user, key_id);
        }
        let answer = self
            .world
            .account()
            .update_access_key(user, key_id, status)
            .await;
        self.after("UpdateAccessKey", Some(user), &detail, true)?;
        answer
    }

    async fn delete_access_key(&self, user: &str, key_id: &str) -> Result<(), IamError> {
        let detail = format!("{user} {key_id}");
        self.before("DeleteAccessKey", Some(user), &detail).await?;
        super::invariants::check_deletion(self, user, key_id);
        let answer = self.world.account().delete_access_key(user, key_id).await;
        self.after("DeleteAccessKey", Some(user), &detail, true)?;
        answer
    }

    async fn access_key_last_used(&self, key_id: &str) -> Result<LastUse, IamError> {
        let user = self.world.owner_of(key_id);
        self.before("GetAccessKeyLastUsed", user.as_deref(), key_id)
            .await?;
        let answer = self.world.account().access_key_last_used(key_id).await;
        self.after("GetAccessKeyLastUsed", user.as_deref(), key_id, false)?;
        answer
    }
}

/// Destinations as one runner reaches them. Every kind (file, profile,
/// Secrets Manager, SSM, exec) is modelled alike: a write that lands whole
/// or not at all, a read-back that restores what was there when it fails,
/// and a read that may be unable to tell.
pub struct SimDeliver {
    pub world: World,
    pub runner: u8,
}

impl SimDeliver {
    fn user_of(destination: &Destination) -> String {
        let text = destination.to_string();
        if text.starts_with("profile:") {
            return super::scenario::OPERATOR.to_string();
        }
        text.rsplit(['/', ' '])
            .next()
            .unwrap_or_default()
            .trim_end_matches(".csv")
            .to_string()
    }
}

#[async_trait]
impl Deliver for SimDeliver {
    async fn check(&self, destination: &Destination) -> Result<(), DeliverError> {
        let user = Self::user_of(destination);
        let spec = destination.to_string();
        let n = self.world.point("destination:check", Some(&user), &spec);
        self.world.maybe_pause(self.runner, n).await;
        if self.world.fault("destination not writable") {
            return Err(DeliverError::failed(
                destination,
                "not writable (simulated)",
            ));
        }
        Ok(())
    }

    async fn deliver(
        &self,
        destination: &Destination,
        key: &CreatedKey,
    ) -> Result<(), DeliverError> {
        let user = Self::user_of(destination);
        let spec = destination.to_string();
        let n = self.world.point(
            "destination:write",
            Some(&user),
            &format!("{spec} {}", key.id),
        );
        self.world.maybe_pause(self.runner, n).await;
        if self.world.fault("destination write failed") {
            return Err(DeliverError::failed(
                destination,
                "write failed (simulated)",
            ));
        }
        let previous = self.world.state().destinations.insert(
            spec.clone(),
            Holding {
                key_id: key.id.clone(),
                secret: key.secret.expose_secret().to_string(),
            },
        );
        self.world.point(
            "destination:written",
            Some(&user),
            &format!("{spec} {}", key.id),
        );
        if self.world.fault("destination read-back failed") {
            let mut state = self.world.state();
            match previous {
                Some(previous) => state.destinations.insert(spec, previous),
                None => state.destinations.remove(&spec),
            };
            return Err(DeliverError::failed(
                destination,
                "read back after writing did not name the new key (simulated); the previous \
                 contents were put back",
            ));
        }
        self.world.point(
            "destination:read-back",
            Some(&user),
            &format!("{spec} {}", key.id),
        );
        Ok(())
    }

    async fn held(&self, destination: &Destination) -> Held {
        let user = Self::user_of(destination);
        let spec = destination.to_string();
        let n = self.world.point("destination:read", Some(&user), &spec);
        self.world.maybe_pause(self.runner, n).await;
        if self.world.fault("destination read failed") {
            return Held::Unknown("it could not be read (simulated)".into());
        }
        match self.world.state().destinations.get(&spec) {
            Some(held) => Held::Key(held.key_id.clone()),
            None => Held::Nothing,
        }
    }
}
