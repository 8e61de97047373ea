//! Carrying a scenario out, step by step, with the invariants checked
//! after each. Commands go through the same code as the binary's: the
//! planner, `fleet::run_all` (which `run` and `run --all` use), and the
//! engine's rollback, on the real plan store in a temporary folder.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::invariants;
use super::rng::Rng;
use super::scenario::OPERATOR;
use super::scenario::{Act, Scenario, Step};
use super::world::{
    Crashed, Gate, Holding, Purpose, RunnerClock, SimDeliver, SimIam, World, ACCOUNT,
};
use crate::deliver::Destination;
use crate::engine::self_rotation::{
    NewKeySigner, SelfRotateEvents, SelfRotateOptions, SelfRotation, Wait,
};
use crate::engine::{Engine, RunOptions};
use crate::fleet::{self, Fleet, RunResult};
use crate::iam::Iam;
use crate::iam::KeyStatus;
use crate::plan::{Phase, PlanKind, Stamp};
use crate::planner::{self, open_self_rotation, PlanRequest};
use crate::rotation::RollbackOptions;

/// What a command left for the invariants.
#[derive(Default)]
struct Invoked {
    /// Users whose plan the command ended normally on.
    settled: Vec<String>,
    /// Users whose plan a command of the step failed on: in an
    /// interleaving, the other command's success says nothing of them.
    unsettled: Vec<String>,
    /// Every error, report and result it produced.
    texts: Vec<String>,
    /// It failed in a way a person answers by running it again (a
    /// rollback whose IAM call got no clear answer).
    again: bool,
}

/// One simulation in progress.
pub struct Sim {
    pub world: World,
    scenario: Scenario,
    users: Vec<String>,
    /// Each user's destination, as its plan pins it.
    specs: Vec<String>,
    /// Consumers still on an old key: user, key, until when.
    laggards: Vec<(String, String, DateTime<Utc>)>,
    /// The sites of each step's points, in order.
    pub sites: Vec<Vec<String>>,
    /// Every log line the commands wrote, at every level.
    logs: Arc<std::sync::Mutex<Vec<u8>>>,
    _logging: tracing::subscriber::DefaultGuard,
    _dir: tempfile::TempDir,
    _hook: HookGuard,
}

/// Appends log output to the simulation's buffer.
struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut logs = self.0.lock().unwrap_or_else(|e| e.into_inner());
        logs.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Removes the plan-save observer when the simulation ends.
struct HookGuard;

impl Drop for HookGuard {
    fn drop(&mut self) {
        crate::atomic::observer::set(None);
    }
}

/// Where simulations keep their plans: memory when the machine has a
/// tmpfs, so that every fsync of the real store costs nothing.
fn scratch_root() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

impl Sim {
    pub fn new(scenario: &Scenario) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("iam-rotate-sim")
            .tempdir_in(scratch_root())
            .expect("a scratch folder for the simulation");
        let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
        let world = World::new(&dir.path().join("plans"), start);
        world.state().max_skew = scenario.skew.abs();
        let mut specs = Vec::new();
        for user in &scenario.users {
            let account = world.account();
            account.add_user(&user.name);
            let key = account.add_key(&user.name, start - user.key_age);
            if let Some(ago) = user.last_used {
                world.clock().set(start - ago);
                account.use_key(&key, "s3", "eu-west-1");
                world.clock().set(start);
            }
            let spec = Destination::resolve(&user.delivery, &user.name, ACCOUNT)
                .map(|d| d.to_string())
                .unwrap_or_else(|_| user.delivery.clone());
            world
                .state()
                .key_owner
                .insert(key.clone(), user.name.clone());
            // The application is configured with the current key.
            world.state().destinations.insert(
                spec.clone(),
                Holding {
                    key_id: key,
                    secret: String::new(),
                },
            );
            specs.push(spec);
        }
        let hook_world = world.clone();
        crate::atomic::observer::set(Some(std::rc::Rc::new(move |path, stage| {
            hook_world.file_point(path, stage)
        })));
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .finish();
        let logging = tracing::subscriber::set_default(subscriber);
        Sim {
            logs,
            _logging: logging,
            world,
            users: scenario.users.iter().map(|u| u.name.clone()).collect(),
            scenario: scenario.clone(),
            specs,
            laggards: Vec::new(),
            sites: Vec::new(),
            _dir: dir,
            _hook: HookGuard,
        }
    }

    /// Carries out one step and checks the invariants after it.
    pub fn step(&mut self, index: usize, step: &Step) {
        self.world.note(format!("step {index}: {step}"));
        {
            let mut state = self.world.state();
            state.step_points = 0;
            state.step_sites.clear();
            state.crash_at = step.crash_at;
            state.lose_at = step.lose_at;
            state.fault_rate = step.fault_rate;
            state.faults = Some(Rng::new(step.fault_seed));
            state.crashed = false;
            state.pause_at = None;
        }
        let invoked = match &step.act {
            Act::Tick(by) => {
                self.tick(*by);
                Invoked::default()
            }
            Act::EditPolicy {
                user,
                quiet,
                verify,
            } => {
                self.edit_policy(*user, *quiet, *verify);
                Invoked::default()
            }
            Act::Stranger { user } => {
                let name = &self.users[*user];
                // Five minutes on: outside the window of any create intent
                // saved before. A key made inside it, by someone else, and
                // never used, is indistinguishable from the orphan of an
                // unanswered CreateAccessKey, and is deleted as one: the
                // risk DESIGN.md §2 accepts (found as seed 1762).
                self.world.clock().advance(Duration::minutes(5));
                if self.world.account().keys(name).len() < 2 {
                    let id = self.world.account().add_key(name, self.world.now());
                    self.world.note(format!("  someone made key {id}"));
                }
                Invoked::default()
            }
            Act::Tidy { user } => {
                self.tidy(*user);
                Invoked::default()
            }
            Act::Laggard { user, hours } => {
                let name = self.users[*user].clone();
                if let Some(plan) = self.world.plan_on_disk(&name) {
                    let until = self.world.now() + Duration::hours(*hours);
                    self.laggards.push((name, plan.old_key.id, until));
                }
                Invoked::default()
            }
            command => self.command(command),
        };
        let sites = std::mem::take(&mut self.world.state().step_sites);
        self.sites.push(sites);
        let mut texts = invoked.texts;
        let logged = std::mem::take(&mut *self.logs.lock().unwrap_or_else(|e| e.into_inner()));
        let before = texts.len();
        texts.extend(String::from_utf8_lossy(&logged).lines().map(str::to_string));
        self.world.state().log_lines += (texts.len() - before) as u64;
        invariants::check_always(&self.world, &self.users, &texts);
        for user in &invoked.settled {
            invariants::check_settled(&self.world, user);
        }
    }

    /// A command, and when it crashed, the same command again: what a
    /// person does when a command dies.
    fn command(&mut self, act: &Act) -> Invoked {
        if let Some(mut invoked) = self.invoke(act) {
            if invoked.again {
                self.world
                    .note(format!("  the person runs it again: {act}"));
                if let Some(again) = self.invoke(act) {
                    invoked.settled = again.settled;
                    invoked.texts.extend(again.texts);
                }
            }
            return invoked;
        }
        {
            let mut state = self.world.state();
            state.crashed = false;
            state.crash_at = None;
            state.lose_at = None;
            state.pause_at = None;
        }
        let again = match act {
            Act::Interleave { first, .. } => first.as_ref().clone(),
            other => other.clone(),
        };
        self.world
            .note(format!("  after the crash, again: {again}"));
        self.invoke(&again).unwrap_or_default()
    }

    /// Runs a command on a fresh runtime; `None` when the process crashed.
    fn invoke(&self, act: &Act) -> Option<Invoked> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            runtime.block_on(self.invoke_async(act))
        }));
        drop(runtime);
        match result {
            Ok(_) if self.world.state().crashed => None,
            Ok(invoked) => Some(invoked),
            Err(payload) if payload.is::<Crashed>() => None,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    async fn invoke_async(&self, act: &Act) -> Invoked {
        let Act::Interleave {
            first,
            second,
            pause_at,
        } = act
        else {
            return self.command_async(act).await;
        };
        let gate = Arc::new(Gate::default());
        {
            let mut state = self.world.state();
            state.pause_at = Some((first.runner().unwrap_or(0), *pause_at));
            state.gate = Some(gate.clone());
        }
        let a = async {
            let invoked = self.command_async(first).await;
            gate.paused.notify_one();
            invoked
        };
        let b = async {
            gate.paused.notified().await;
            let invoked = self.command_async(second).await;
            gate.resume.notify_one();
            invoked
        };
        let (mut a, b) = tokio::join!(a, b);
        {
            let mut state = self.world.state();
            state.pause_at = None;
            state.gate = None;
        }
        a.settled.extend(b.settled);
        a.unsettled.extend(b.unsettled);
        a.settled.retain(|user| !a.unsettled.contains(user));
        a.texts.extend(b.texts);
        a
    }

    async fn command_async(&self, act: &Act) -> Invoked {
        let runner = act.runner().unwrap_or(0);
        let skew = if runner == 0 {
            Duration::zero()
        } else {
            self.scenario.skew
        };
        let purpose = match act {
            Act::Plan { .. } => Purpose::Plan,
            Act::Rollback { delete_new, .. } => Purpose::Rollback {
                delete_new: *delete_new,
            },
            Act::SelfRotate { delete_now, .. } => Purpose::SelfRotate {
                delete_now: *delete_now,
            },
            _ => Purpose::Run,
        };
        let world = self.world.clone();
        let iam = SimIam {
            world: world.clone(),
            runner,
            purpose,
            skew,
            signs_with: None,
        };
        let clock = RunnerClock {
            world: world.clone(),
            skew,
        };
        let deliver = SimDeliver {
            world: world.clone(),
            runner,
        };
        let mut out = Invoked::default();
        let caller = match iam.caller_identity().await {
            Ok(caller) => caller,
            Err(e) => {
                out.texts.push(e.to_string());
                return out;
            }
        };
        match act {
            Act::Plan { user, .. } => {
                let spec = &self.scenario.users[*user];
                let stamp = Stamp::new(&clock, &caller);
                let request = PlanRequest {
                    user: &spec.name,
                    policy: &spec.policy,
                    delivery: &spec.delivery,
                    older_than: None,
                    kind: PlanKind::Plan,
                    notify: &[],
                };
                match planner::plan_user(&iam, world.store(), &caller, &stamp, &request).await {
                    Ok(planned) => {
                        out.texts.push(json(&planned));
                        // Only a plan just written says anything of IAM;
                        // a skipped one may wait for a run to settle it.
                        if matches!(planned, planner::Planned::Planned { .. }) {
                            out.settled.push(spec.name.clone());
                        }
                    }
                    Err(e) => out.texts.push(e.to_string()),
                }
            }
            Act::Run {
                user,
                retry_blocked,
                concurrency,
                ..
            } => {
                let paths = match user {
                    Some(u) => {
                        let path = world.plan_path(&self.users[*u]);
                        if path.exists() {
                            vec![path]
                        } else {
                            Vec::new()
                        }
                    }
                    None => {
                        world.store().sweep_temporaries(ACCOUNT);
                        world.store().list(ACCOUNT).unwrap_or_default()
                    }
                };
                let fleet = Fleet {
                    iam: Arc::new(iam),
                    clock: Arc::new(clock),
                    deliver: Arc::new(deliver),
                    caller,
                    notifier: None,
                    store: world.store().clone(),
                };
                let options = RunOptions {
                    dry_run: false,
                    retry_blocked: *retry_blocked,
                };
                let results = fleet::run_all(&fleet, paths, options, *concurrency, &mut ()).await;
                for result in &results {
                    out.texts.push(json(result));
                    match result {
                        RunResult::Report(report) => out.settled.push(report.user.clone()),
                        other => out.unsettled.push(other.user().to_string()),
                    }
                }
            }
            Act::Rollback {
                user,
                abort,
                delete_new,
                ..
            } => {
                let name = &self.users[*user];
                let path = world.plan_path(name);
                if path.exists() {
                    match world.store().lock(&path) {
                        Ok(Some(mut locked)) => {
                            let engine = Engine {
                                iam: &iam,
                                clock: &clock,
                                deliver: &deliver,
                                caller,
                            };
                            let options = RollbackOptions {
                                abort: *abort,
                                delete_new: *delete_new,
                            };
                            match engine.rollback(&mut locked, options).await {
                                Ok((report, _)) => {
                                    out.texts.push(json(&report));
                                    out.settled.push(name.clone());
                                }
                                Err(e) => {
                                    out.again = true;
                                    out.unsettled.push(name.clone());
                                    out.texts.push(e.to_string());
                                }
                            }
                        }
                        Ok(None) => world.note(format!("  {name} is locked; rollback refused")),
                        Err(e) => out.texts.push(e.to_string()),
                    }
                }
            }
            Act::SelfRotate { delete_now, .. } => {
                self.self_rotate(&world, iam, &clock, &deliver, caller, *delete_now, &mut out)
                    .await;
            }
            _ => {}
        }
        world.point("lock:release", None, "command ended");
        // The scratch folder's name differs from run to run; traces must not.
        let root = world.store().root().display().to_string();
        for text in &out.texts {
            world.note(format!("  -> {:.300}", text.replace(&root, "<plans>")));
        }
        out
    }

    /// `self-rotate`: the operator's own key, signed with the key its
    /// profile holds, then with the new key read back from there.
    #[allow(clippy::too_many_arguments)]
    async fn self_rotate(
        &self,
        world: &World,
        iam: SimIam,
        clock: &RunnerClock,
        deliver: &SimDeliver,
        caller: crate::iam::Caller,
        delete_now: bool,
        out: &mut Invoked,
    ) {
        let Some(index) = self.users.iter().position(|u| u == OPERATOR) else {
            return;
        };
        let in_use = world
            .state()
            .destinations
            .get(&self.specs[index])
            .map(|h| h.key_id.clone())
            .unwrap_or_default();
        let old_iam = SimIam {
            signs_with: Some(in_use.clone()),
            ..iam
        };
        let path = world.plan_path(OPERATOR);
        let opened = open_self_rotation(
            &old_iam,
            world.store(),
            clock,
            &caller,
            "profile:default",
            &path,
        )
        .await;
        let mut locked = match opened {
            Ok((locked, _)) => locked,
            Err(e) => {
                out.texts.push(format!("{e:#}"));
                return;
            }
        };
        let signer = SimSigner {
            world: world.clone(),
            spec: self.specs[index].clone(),
            runner: old_iam.runner,
            skew: old_iam.skew,
            delete_now,
        };
        let mut rotation = SelfRotation {
            engine: Engine {
                iam: &old_iam,
                clock,
                deliver,
                caller,
            },
            signer: &signer,
            events: &Unwatched,
            options: SelfRotateOptions {
                delete_now,
                wait: std::time::Duration::from_secs(120),
            },
            profile: "default",
            in_use,
            actions: Vec::new(),
        };
        match rotation.run(&mut locked).await {
            Ok(ended) => {
                out.texts.push(format!("{ended:?} {:?}", rotation.actions));
                out.settled.push(OPERATOR.to_string());
            }
            Err(e) => out.texts.push(e.to_string()),
        }
    }

    /// Time passes; then each application uses the key its destination
    /// holds, and each lagging consumer the old key, while they are Active.
    fn tick(&mut self, by: Duration) {
        self.world.clock().advance(by);
        let now = self.world.now();
        let account = self.world.account();
        for (user, spec) in self.users.iter().zip(&self.specs) {
            let held = self.world.state().destinations.get(spec).cloned();
            if let Some(held) = held {
                if active(&self.world, user, &held.key_id) {
                    account.use_key(&held.key_id, "s3", "eu-west-1");
                    self.world
                        .note(format!("  app of {user} used {}", held.key_id));
                }
            }
        }
        self.laggards.retain(|(_, _, until)| now <= *until);
        for (user, key, _) in &self.laggards {
            if active(&self.world, user, key) {
                account.use_key(key, "lambda", "us-east-1");
                self.world
                    .note(format!("  lagging consumer of {user} used {key}"));
            }
        }
    }

    /// A person changes the waits of an unfinished plan in an editor.
    fn edit_policy(
        &mut self,
        user: usize,
        quiet: crate::duration::HumanDuration,
        verify: crate::duration::HumanDuration,
    ) {
        let path = self.world.plan_path(&self.users[user]);
        let Some(mut plan) = self.world.plan_on_disk(&self.users[user]) else {
            return;
        };
        // Once verification passed (phase delete) a new verify_period has
        // nothing left to govern (found as seed 5393).
        if plan.phase.is_finished() || plan.phase == Phase::Delete {
            return;
        }
        plan.policy.quiet_period = quiet;
        plan.policy.verify_period = verify;
        let text = crate::plan::store::to_yaml(&plan);
        let written = std::panic::catch_unwind(AssertUnwindSafe(|| {
            crate::atomic::write(&path, text.as_bytes(), 0o644)
        }));
        if written.is_err() {
            self.world.state().crashed = false;
            self.world.note("  the editor died".into());
        }
    }

    /// A person deletes the keys of `user` that nobody planned: not made
    /// by iam-rotate, not named by the plan.
    fn tidy(&mut self, user: usize) {
        let name = &self.users[user];
        let plan = self.world.plan_on_disk(name);
        let created = self.world.state().created.clone();
        for (id, _) in self.world.account().keys(name) {
            let named = plan.as_ref().is_some_and(|p| {
                p.old_key.id == id || p.new_key.as_ref().is_some_and(|n| n.id == id)
            });
            if !named && !created.contains_key(&id) {
                self.world.account().remove_key(name, &id);
                self.world.note(format!("  person deleted {id}"));
            }
        }
    }

    /// Runs `run --all` with time passing until every plan is finished or
    /// blocked, with no more faults; a plan that never gets there is a
    /// violation.
    pub fn settle(&mut self) {
        let all_ended = |sim: &Sim| {
            sim.users.iter().all(|u| {
                sim.world.plan_on_disk(u).is_none_or(|p| {
                    matches!(p.phase, Phase::Done | Phase::RolledBack | Phase::Blocked)
                })
            })
        };
        let base = self.scenario.steps.len();
        for round in 0..12 {
            if all_ended(self) {
                return;
            }
            self.step(base + 2 * round, &Step::plain(Act::Tick(Duration::days(8))));
            let run = Act::Run {
                runner: 0,
                user: None,
                retry_blocked: false,
                concurrency: 2,
            };
            self.step(base + 2 * round + 1, &Step::plain(run));
        }
        for user in &self.users {
            if let Some(plan) = self.world.plan_on_disk(user) {
                if !matches!(plan.phase, Phase::Done | Phase::RolledBack | Phase::Blocked) {
                    self.world.violation(format!(
                        "{user}: the plan never finished: still in {} after 96 days of runs \
                         without faults (last error: {})",
                        plan.phase,
                        plan.last_error.as_deref().unwrap_or("none")
                    ));
                }
            }
        }
    }

    /// Each user's plan phase now.
    pub fn phases(&self) -> Vec<Option<Phase>> {
        self.users
            .iter()
            .map(|u| self.world.plan_on_disk(u).map(|p| p.phase))
            .collect()
    }
}

fn active(world: &World, user: &str, key: &str) -> bool {
    world
        .account()
        .keys(user)
        .iter()
        .any(|(id, status)| id == key && *status == KeyStatus::Active)
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("(not serializable: {e})"))
}

/// Signs with the new key, which must be where self-rotate delivered it
/// (the profile): the simulated account then sees it used.
struct SimSigner {
    world: World,
    spec: String,
    runner: u8,
    skew: Duration,
    delete_now: bool,
}

impl NewKeySigner for SimSigner {
    fn iam_with(&self, key_id: &str) -> Result<Box<dyn Iam>, String> {
        let held = self.world.state().destinations.get(&self.spec).cloned();
        if held.is_none_or(|h| h.key_id != key_id) {
            return Err(format!(
                "the profile does not hold key {key_id} (simulated)"
            ));
        }
        Ok(Box::new(SimIam {
            world: self.world.clone(),
            runner: self.runner,
            purpose: Purpose::SelfRotate {
                delete_now: self.delete_now,
            },
            skew: self.skew,
            signs_with: Some(key_id.to_string()),
        }))
    }
}

/// Nobody watches a simulated self-rotation.
struct Unwatched;

impl SelfRotateEvents for Unwatched {
    fn report(&self, _report: &crate::engine::RunReport) {}
    fn action(&self, _user: &str, _action: &str) {}
    fn blocked(&self, _user: &str, _reason: &str) {}
    fn waiting(&self, _wait: Wait<'_>) {}
}
