//! What a seed chooses: a fleet (users, their key's age and last use, where
//! each new secret goes, the policy), a second runner's clock skew, and a
//! schedule of steps: commands (`plan`, `run`, `run --all`,
//! `run --retry-blocked`, `rollback [--delete-new]`), two commands
//! interleaved, plan edits, time jumps, and what people and applications do
//! meanwhile. Each step carries its own faults, so a schedule can be cut
//! down to the steps that matter and still fail the same way.

use std::fmt;

use chrono::Duration;

use super::rng::Rng;
use crate::duration::HumanDuration;
use crate::rotation::policy::Policy;

/// One user of the simulated fleet.
#[derive(Clone, Debug)]
pub struct UserSpec {
    pub name: String,
    pub delivery: String,
    pub key_age: Duration,
    /// How long ago an application last used the key; `None`: never.
    pub last_used: Option<Duration>,
    pub policy: Policy,
}

/// Something that happens in the world.
#[derive(Clone, Debug)]
pub enum Act {
    /// Time passes; then every application uses the key its destination
    /// holds, and lagging consumers the old key.
    Tick(Duration),
    Plan {
        runner: u8,
        user: usize,
    },
    /// `run USER`, or `run --all` when `user` is `None`.
    Run {
        runner: u8,
        user: Option<usize>,
        retry_blocked: bool,
        concurrency: usize,
    },
    Rollback {
        runner: u8,
        user: usize,
        /// `--abort`: end the rotation; without it, back to step 2.
        abort: bool,
        /// `--delete-new` (only with `--abort`).
        delete_new: bool,
    },
    /// `first` runs until its side effect number `pause_at`, then `second`
    /// runs to its end, then `first` goes on.
    Interleave {
        first: Box<Act>,
        second: Box<Act>,
        pause_at: u32,
    },
    /// A person edits the plan's policy in an editor.
    EditPolicy {
        user: usize,
        quiet: HumanDuration,
        verify: HumanDuration,
    },
    /// Someone creates a key outside iam-rotate.
    Stranger {
        user: usize,
    },
    /// A person deletes keys nobody planned.
    Tidy {
        user: usize,
    },
    /// A consumer keeps using the current old key for a while.
    Laggard {
        user: usize,
        hours: i64,
    },
    /// `self-rotate [--delete-now]` by the operator, on its own key.
    SelfRotate {
        runner: u8,
        delete_now: bool,
    },
}

impl Act {
    /// The runner of a command; `None` for what is not one.
    pub fn runner(&self) -> Option<u8> {
        match self {
            Act::Plan { runner, .. }
            | Act::Run { runner, .. }
            | Act::Rollback { runner, .. }
            | Act::SelfRotate { runner, .. } => Some(*runner),
            Act::Interleave { first, .. } => first.runner(),
            _ => None,
        }
    }
}

impl fmt::Display for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Act::Tick(by) => write!(
                f,
                "time +{}",
                HumanDuration::from_secs(by.num_seconds() as u64)
            ),
            Act::Plan { runner, user } => write!(f, "runner {runner}: plan u{user}"),
            Act::Run {
                runner,
                user,
                retry_blocked,
                concurrency,
            } => {
                let who = user.map_or_else(
                    || format!("--all --concurrency {concurrency}"),
                    |u| format!("u{u}"),
                );
                let retry = if *retry_blocked {
                    " --retry-blocked"
                } else {
                    ""
                };
                write!(f, "runner {runner}: run {who}{retry}")
            }
            Act::Rollback {
                runner,
                user,
                abort,
                delete_new,
            } => {
                let flag = match (abort, delete_new) {
                    (true, true) => " --abort --delete-new",
                    (true, false) => " --abort",
                    (false, _) => "",
                };
                write!(f, "runner {runner}: rollback u{user}{flag}")
            }
            Act::Interleave {
                first,
                second,
                pause_at,
            } => write!(f, "[{first}] paused at #{pause_at} for [{second}]"),
            Act::EditPolicy {
                user,
                quiet,
                verify,
            } => write!(
                f,
                "person edits u{user}'s plan: quiet_period {quiet}, verify_period {verify}"
            ),
            Act::Stranger { user } => write!(f, "someone creates a key for u{user}"),
            Act::Tidy { user } => write!(f, "person deletes u{user}'s unplanned keys"),
            Act::Laggard { user, hours } => {
                write!(f, "a consumer keeps u{user}'s old key for {hours}h")
            }
            Act::SelfRotate { runner, delete_now } => {
                let flag = if *delete_now { " --delete-now" } else { "" };
                write!(f, "runner {runner}: self-rotate{flag} (as operator)")
            }
        }
    }
}

/// One step: an act, and what goes wrong while it happens.
#[derive(Clone, Debug)]
pub struct Step {
    pub act: Act,
    /// The process crashes at this side effect of the step.
    pub crash_at: Option<u32>,
    /// This side effect (an IAM write) is applied, but its answer lost.
    pub lose_at: Option<u32>,
    /// Random faults, per thousand calls, and their seed.
    pub fault_rate: u64,
    pub fault_seed: u64,
}

impl Step {
    pub fn plain(act: Act) -> Self {
        Step {
            act,
            crash_at: None,
            lose_at: None,
            fault_rate: 0,
            fault_seed: 0,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.act)?;
        if let Some(n) = self.crash_at {
            write!(f, "; crash at #{n}")?;
        }
        if let Some(n) = self.lose_at {
            write!(f, "; answer lost at #{n}")?;
        }
        if self.fault_rate > 0 {
            write!(
                f,
                "; faults {}‰ (seed {})",
                self.fault_rate, self.fault_seed
            )?;
        }
        Ok(())
    }
}

/// A whole simulation.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub users: Vec<UserSpec>,
    /// Runner 1's clock skew (runner 0's clock is true).
    pub skew: Duration,
    pub steps: Vec<Step>,
}

const DELIVERIES: &[&str] = &[
    "secretsmanager:sim/{user}",
    "ssm:/sim/{user}",
    "file:/sim/{user}.csv",
    "exec:/bin/true {user}",
];

fn hours(h: u64) -> HumanDuration {
    HumanDuration::from_hours(h)
}

/// The user whose own key `self-rotate` rotates: the caller of every
/// command (the simulated account's caller is `user/operator`).
pub const OPERATOR: &str = "operator";

/// The fleet and schedule seed `seed` chooses.
pub fn generate(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    // Self-rotation draws from its own generator, so that adding it left
    // every other seed's fleet and schedule as they were.
    let mut selfish = Rng::new(seed ^ 0x5e1f_5e1f_5e1f_5e1f);
    let count = 1 + rng.below(3) as usize;
    let users: Vec<UserSpec> = (0..count)
        .map(|i| UserSpec {
            name: format!("u{i}"),
            delivery: rng.pick(DELIVERIES).to_string(),
            key_age: Duration::days(30 + rng.below(400) as i64),
            last_used: (!rng.chance(100)).then(|| Duration::hours(rng.below(72) as i64)),
            policy: Policy {
                adoption_wait: *rng.pick(&[hours(0), hours(1), hours(24), hours(168)]),
                quiet_period: *rng.pick(&[hours(4), hours(24), hours(72)]),
                verify_period: *rng.pick(&[hours(0), hours(24), hours(168)]),
                require_new_key_use: !rng.chance(100),
                allow_short_quiet_period: false,
                overdue_after: crate::plan::policy::DEFAULT_OVERDUE_AFTER,
            },
        })
        .collect();
    // Within the skew an interrupted create allows for (ORPHAN_SKEW, one
    // minute): beyond it a runner cannot prove a key its own, and blocks
    // or keeps it, as designed.
    let skew = Duration::seconds(*rng.pick(&[0, 0, 20, -20, 55, -55]));
    let fault_rate = *rng.pick(&[0, 0, 20, 60, 150]);
    let mut steps: Vec<Step> = (0..count)
        .map(|user| Step::plain(Act::Plan { runner: 0, user }))
        .collect();
    let length = 8 + rng.below(25);
    let self_rotates = selfish.chance(300);
    for _ in 0..length {
        let act = random_act(&mut rng, count);
        let mut step = Step::plain(act);
        if rng.chance(120) {
            step.crash_at = Some(rng.below(30) as u32);
        }
        if rng.chance(80) {
            step.lose_at = Some(rng.below(30) as u32);
        }
        step.fault_rate = fault_rate;
        step.fault_seed = rng.next_u64();
        steps.push(step);
        if self_rotates && selfish.chance(200) {
            let mut step = Step::plain(Act::SelfRotate {
                runner: u8::from(selfish.chance(250)),
                delete_now: selfish.chance(500),
            });
            if selfish.chance(150) {
                step.crash_at = Some(selfish.below(40) as u32);
            }
            step.fault_rate = fault_rate;
            step.fault_seed = selfish.next_u64();
            steps.push(step);
        }
    }
    choose_aborts(&mut steps, seed);
    let mut users = users;
    if self_rotates {
        users.push(UserSpec {
            name: OPERATOR.into(),
            delivery: "profile:default".into(),
            key_age: Duration::days(100),
            last_used: Some(Duration::hours(1)),
            policy: crate::rotation::self_rotation::self_policy(),
        });
    }
    Scenario {
        seed,
        users,
        skew,
        steps,
    }
}

/// Half the rollbacks without `--delete-new` are plain (the guide's step 5
/// → step 2), half `--abort`, drawn from a generator of their own.
fn choose_aborts(steps: &mut [Step], seed: u64) {
    let mut aborts = Rng::new(seed ^ 0xab07_ab07_ab07_ab07);
    fn visit(act: &mut Act, aborts: &mut Rng) {
        match act {
            Act::Rollback {
                abort, delete_new, ..
            } => *abort = *delete_new || aborts.chance(500),
            Act::Interleave { first, second, .. } => {
                visit(first, aborts);
                visit(second, aborts);
            }
            _ => {}
        }
    }
    for step in steps {
        visit(&mut step.act, &mut aborts);
    }
}

fn random_command(rng: &mut Rng, users: usize) -> Act {
    let runner = u8::from(rng.chance(250));
    let user = rng.below(users as u64) as usize;
    match rng.below(10) {
        // `abort` is chosen afterwards from a stream of its own
        // ([`choose_aborts`]), so that schedules stay as they were before
        // plain rollback went back to step 2.
        0 => Act::Rollback {
            runner,
            user,
            abort: true,
            delete_new: rng.chance(500),
        },
        1 => Act::Plan { runner, user },
        _ => Act::Run {
            runner,
            user: (!rng.chance(500)).then_some(user),
            retry_blocked: rng.chance(100),
            concurrency: 1 + rng.below(3) as usize,
        },
    }
}

fn random_act(rng: &mut Rng, users: usize) -> Act {
    let user = rng.below(users as u64) as usize;
    match rng.below(100) {
        0..30 => Act::Tick(*rng.pick(&[
            Duration::minutes(1),
            Duration::minutes(20),
            Duration::hours(1),
            Duration::hours(5),
            Duration::days(1),
            Duration::days(3),
            Duration::days(8),
        ])),
        30..68 => random_command(rng, users),
        68..80 => {
            let first = random_command(rng, users);
            let mut second = random_command(rng, users);
            if let (
                Some(a),
                Act::Run { runner, .. } | Act::Rollback { runner, .. } | Act::Plan { runner, .. },
            ) = (first.runner(), &mut second)
            {
                *runner = 1 - a;
            }
            Act::Interleave {
                first: Box::new(first),
                second: Box::new(second),
                pause_at: rng.below(25) as u32,
            }
        }
        80..84 => Act::EditPolicy {
            user,
            quiet: *rng.pick(&[hours(4), hours(24), hours(72)]),
            verify: *rng.pick(&[hours(0), hours(24), hours(168)]),
        },
        84..87 => Act::Stranger { user },
        87..92 => Act::Tidy { user },
        _ => Act::Laggard {
            user,
            hours: *rng.pick(&[1, 12, 48, 100]),
        },
    }
}

/// Whole rotations with no faults, whose every side effect the harness
/// crashes at in turn (and whose every IAM write it loses the answer of):
/// a plain rotation, two users under `run --all`, a rollback after
/// deactivation, `rollback --delete-new` after creation, and self-rotation
/// with and without `--delete-now`.
pub fn references() -> Vec<Scenario> {
    let policy = Policy {
        adoption_wait: hours(1),
        quiet_period: hours(4),
        verify_period: hours(24),
        require_new_key_use: true,
        allow_short_quiet_period: false,
        overdue_after: crate::plan::policy::DEFAULT_OVERDUE_AFTER,
    };
    let user = |i: usize, delivery: &str| UserSpec {
        name: format!("u{i}"),
        delivery: delivery.to_string(),
        key_age: Duration::days(200),
        last_used: Some(Duration::hours(2)),
        policy: policy.clone(),
    };
    let run = |user: Option<usize>| {
        Step::plain(Act::Run {
            runner: 0,
            user,
            retry_blocked: false,
            concurrency: 2,
        })
    };
    let tick = |h: i64| Step::plain(Act::Tick(Duration::hours(h)));
    let plan = |user: usize| Step::plain(Act::Plan { runner: 0, user });
    let rollback = |delete_new: bool| {
        Step::plain(Act::Rollback {
            runner: 0,
            user: 0,
            abort: true,
            delete_new,
        })
    };
    let rotation = |all: Option<usize>| {
        vec![
            run(all),
            tick(2),
            run(all),
            tick(5),
            run(all),
            tick(25),
            run(all),
            tick(1),
            run(all),
        ]
    };
    let single = |steps: Vec<Step>| Scenario {
        seed: 0,
        users: vec![user(0, "secretsmanager:sim/{user}")],
        skew: Duration::zero(),
        steps: [vec![plan(0)], steps].concat(),
    };
    vec![
        single(rotation(Some(0))),
        Scenario {
            seed: 0,
            users: vec![user(0, "ssm:/sim/{user}"), user(1, "file:/sim/{user}.csv")],
            skew: Duration::zero(),
            steps: [vec![plan(0), plan(1)], rotation(None)].concat(),
        },
        single(vec![
            run(Some(0)),
            tick(2),
            run(Some(0)),
            tick(5),
            run(Some(0)),
            rollback(false),
            tick(1),
            run(Some(0)),
        ]),
        single(vec![run(Some(0)), rollback(true), tick(1), run(Some(0))]),
        self_rotation(false),
        self_rotation(true),
    ]
}

/// The operator rotates its own key; without `--delete-now` a later
/// `run --all` deletes the old key after verify_period.
fn self_rotation(delete_now: bool) -> Scenario {
    let step = |act| Step::plain(act);
    Scenario {
        seed: 0,
        users: vec![UserSpec {
            name: OPERATOR.into(),
            delivery: "profile:default".into(),
            key_age: Duration::days(100),
            last_used: Some(Duration::hours(1)),
            policy: crate::rotation::self_rotation::self_policy(),
        }],
        skew: Duration::zero(),
        steps: vec![
            step(Act::SelfRotate {
                runner: 0,
                delete_now,
            }),
            step(Act::Tick(Duration::hours(25))),
            step(Act::Run {
                runner: 0,
                user: None,
                retry_blocked: false,
                concurrency: 1,
            }),
        ],
    }
}
