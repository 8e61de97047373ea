//! The rate controller of one account: when its next IAM request may go,
//! decided from what IAM answered before. It does no I/O and reads no
//! clock: every decision takes the time as an argument, so the unit tests
//! drive it with the manual clock.
//!
//! The policy is additive increase, multiplicative decrease (AIMD) around
//! the rate at which IAM last throttled (the *ceiling*):
//! - Until IAM throttles, requests are not paced at all (or only by the
//!   `--max-rps` cap).
//! - The first slow-down sets the ceiling to the rate IAM's token bucket
//!   refills at, as far as the requests IAM accepted tell
//!   ([`first_ceiling`]): once IAM throttles, that is what it lets through.
//!   Later throttles, when the rate is at or above the ceiling, set it to
//!   the requests accepted in the last second (or the paced rate, if
//!   lower); below the ceiling they lower it by at most
//!   [`Settings::ceiling_cut`], so that a few throttles that are not about
//!   the rate (IAM has bad seconds too) do not spiral the rate down.
//! - A throttle lowers the rate to [`Settings::decrease`] times the ceiling
//!   (or the rate, if lower), never for a request sent before the last
//!   decrease: those answers were already on their way. A lone throttle is
//!   retried but changes nothing: it takes
//!   [`Settings::throttles_to_slow_down`] within a second, of requests sent
//!   since the last decrease. Past a rate limit the throttles come in a run;
//!   a throttle now and then that is not about the rate would otherwise
//!   bring the rate down step by step to the floor.
//! - The first slow-down is an estimate: within a second of it, two
//!   throttles of requests sent at the new rate say it is still too fast,
//!   and lower it again at once. After that, the rate goes down at most
//!   once per [`Settings::hold`], so that a spell in which IAM throttles
//!   everything (another tool spending the account's quota, say) lowers it
//!   once, not step by step.
//! - Each request that had to wait for its turn and succeeded raises the
//!   rate: quickly back to the ceiling ([`Settings::recover`] of the ceiling
//!   per second), then slowly beyond it ([`Settings::probe`] per second,
//!   doubling every [`Settings::probe_doubling`] without a throttle), so a
//!   rate limit that was raised, or a burst of throttling from another tool
//!   that ended, is found again.
//!
//! Requests are spaced evenly at the current rate, with no client-side
//! burst: a server-side token bucket then stays full while the rate is
//! under its limit, and absorbs the overshoot of each probe.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

/// The controller's constants. [`Settings::default`] is what iam-rotate
/// uses; BENCHMARKS.md shows what they give against a token bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// After a throttle, the rate becomes this share of the ceiling.
    pub decrease: f64,
    /// Throttled below the ceiling: the ceiling drops at most to this share.
    pub ceiling_cut: f64,
    /// Below the ceiling, the rate grows by this share of it per second.
    pub recover: f64,
    /// At or above the ceiling, the rate grows by this share of it per
    /// second at first ...
    pub probe: f64,
    /// ... doubling after each such period without a throttle.
    pub probe_doubling: std::time::Duration,
    /// At most one decrease per this long, once the first estimate has
    /// stood for a [`WINDOW`].
    pub hold: std::time::Duration,
    /// Never slower than this many requests per second.
    pub min_rate: f64,
    /// Throttles within one second that it takes to slow down.
    pub throttles_to_slow_down: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            decrease: 0.9,
            ceiling_cut: 0.9,
            recover: 0.2,
            probe: 0.01,
            probe_doubling: std::time::Duration::from_secs(5),
            hold: std::time::Duration::from_secs(1),
            min_rate: 1.0,
            throttles_to_slow_down: 2,
        }
    }
}

/// How far back accepted and throttled requests count.
const WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// A request's turn: when it may be sent, and whether it had to wait for it
/// (only requests that waited show that the rate, not the work, set the
/// pace, so only they may raise it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Turn {
    pub at: DateTime<Utc>,
    pub waited: bool,
}

impl Turn {
    /// How long to wait from `now` for this turn.
    pub fn wait_from(&self, now: DateTime<Utc>) -> std::time::Duration {
        (self.at - now).to_std().unwrap_or_default()
    }
}

/// What a throttle did to the rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reaction {
    /// The rate was lowered to this many requests per second.
    Decreased(f64),
    /// Nothing changed: a lone throttle, or already lowered for this (the
    /// request was sent before the last decrease, or within the hold).
    Held,
}

/// Requests sent and throttled, as the controller saw them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: u64,
    pub throttled: u64,
}

/// One account's rate controller; see the module docs.
#[derive(Clone, Debug)]
pub struct RateController {
    settings: Settings,
    /// `--max-rps`: never faster, whatever IAM accepts.
    cap: Option<f64>,
    /// False: only the cap paces (`--retry-mode adaptive` hands adaptation
    /// to the SDK).
    adaptive: bool,
    /// The paced rate; `None` until the first throttle.
    rate: Option<f64>,
    ceiling: Option<f64>,
    next_turn: Option<DateTime<Utc>>,
    /// The first turn asked for after a second without any: how long IAM's
    /// burst has been drawn on (a second without requests refills a bucket
    /// of one second's requests).
    first_turn: Option<DateTime<Utc>>,
    /// When the last turn was asked for.
    last_asked: Option<DateTime<Utc>>,
    /// The first decrease: the estimate that throttles may correct at once.
    first_decrease: Option<DateTime<Utc>>,
    last_decrease: Option<DateTime<Utc>>,
    /// When each request accepted within [`WINDOW`] was answered.
    accepted: VecDeque<DateTime<Utc>>,
    /// Each request throttled within [`WINDOW`]: when it was answered, and
    /// its turn (when it was sent).
    throttles: VecDeque<(DateTime<Utc>, DateTime<Utc>)>,
    /// The turns handed out within [`WINDOW`] and not answered yet, with
    /// how many requests each: IAM answers a throttle at once, an accepted
    /// request only after carrying it out, so at the first throttles some
    /// requests IAM accepted are still on their way back.
    in_flight: BTreeMap<DateTime<Utc>, u32>,
    counts: Counts,
}

fn seconds(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

impl RateController {
    pub fn new(settings: Settings, cap: Option<f64>, adaptive: bool) -> Self {
        RateController {
            settings,
            cap: cap.filter(|c| c.is_finite() && *c > 0.0),
            adaptive,
            rate: None,
            ceiling: None,
            next_turn: None,
            first_turn: None,
            last_asked: None,
            first_decrease: None,
            last_decrease: None,
            accepted: VecDeque::new(),
            throttles: VecDeque::new(),
            in_flight: BTreeMap::new(),
            counts: Counts::default(),
        }
    }

    /// The requests per second paced at now; `None`: not paced.
    pub fn rate(&self) -> Option<f64> {
        match (self.rate, self.cap) {
            (Some(rate), Some(cap)) => Some(rate.min(cap)),
            (rate, cap) => rate.or(cap),
        }
    }

    /// The rate at which IAM last throttled, once it has.
    pub fn ceiling(&self) -> Option<f64> {
        self.ceiling
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Whether throttles change the rate (else only the cap paces).
    pub fn adapts(&self) -> bool {
        self.adaptive
    }

    /// The next request's turn: now when not paced, else one interval after
    /// the turn before it (and never before now).
    pub fn turn(&mut self, now: DateTime<Utc>) -> Turn {
        let turn = self.next(now);
        *self.in_flight.entry(turn.at).or_default() += 1;
        turn
    }

    fn next(&mut self, now: DateTime<Utc>) -> Turn {
        self.counts.sent += 1;
        if self
            .last_asked
            .is_none_or(|last| now - last >= seconds(WINDOW))
        {
            self.first_turn = Some(now);
        }
        self.last_asked = Some(now);
        let Some(rate) = self.rate() else {
            return Turn {
                at: now,
                waited: false,
            };
        };
        let at = self.next_turn.map_or(now, |next| next.max(now));
        let interval = Duration::nanoseconds((1e9 / rate).round() as i64);
        self.next_turn = Some(at + interval);
        Turn {
            at,
            waited: at > now,
        }
    }

    /// The request of `turn` was answered.
    fn settle(&mut self, turn: &Turn) {
        if let Some(count) = self.in_flight.get_mut(&turn.at) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(&turn.at);
            }
        }
    }

    /// IAM answered the request of `turn` (anything but a throttle).
    pub fn accepted(&mut self, turn: &Turn, now: DateTime<Utc>) {
        self.settle(turn);
        self.accepted.push_back(now);
        self.forget_before(now);
        if !self.adaptive || !turn.waited {
            return;
        }
        let (Some(rate), Some(ceiling)) = (self.rate, self.ceiling) else {
            return;
        };
        let per_second = if rate < ceiling {
            self.settings.recover * ceiling
        } else {
            let quiet = self.last_decrease.map_or(0.0, |t| {
                (now - t).to_std().unwrap_or_default().as_secs_f64()
            });
            let doublings = quiet / self.settings.probe_doubling.as_secs_f64().max(0.001);
            self.settings.probe * ceiling * 2f64.powf(doublings.min(16.0))
        };
        // One accepted request at `rate` per second: `per_second` a second.
        let raised = rate + per_second / rate;
        self.rate = Some(self.cap.map_or(raised, |cap| raised.min(cap)));
    }

    /// IAM throttled the request of `turn`.
    pub fn throttled(&mut self, turn: &Turn, now: DateTime<Utc>) -> Reaction {
        self.settle(turn);
        self.counts.throttled += 1;
        if !self.adaptive {
            return Reaction::Held;
        }
        self.throttles.push_back((now, turn.at));
        self.forget_before(now);
        let last = self.last_decrease;
        if last.is_some_and(|last| turn.at < last) {
            return Reaction::Held;
        }
        let since_last: Vec<DateTime<Utc>> = self
            .throttles
            .iter()
            .map(|(_, sent)| *sent)
            .filter(|sent| last.is_none_or(|last| *sent >= last))
            .collect();
        if since_last.len() < self.settings.throttles_to_slow_down {
            return Reaction::Held;
        }
        let correcting = self
            .first_decrease
            .is_some_and(|first| now - first < seconds(WINDOW));
        if last.is_some_and(|last| !correcting && now - last < seconds(self.settings.hold)) {
            return Reaction::Held;
        }
        let accepted = self.accepted.len() as f64;
        let min = self.settings.min_rate;
        let (from, ceiling) = match (self.rate, self.ceiling) {
            // The first throttle: what IAM let through is the measure.
            (None, _) | (_, None) => {
                let drawn = self.first_turn.map_or(0.0, |first| {
                    (now - first).to_std().unwrap_or_default().as_secs_f64()
                });
                // Requests sent before the first of these throttled ones
                // and not answered yet were let through: a throttle would
                // have come back already.
                let first_throttled = since_last.iter().min().copied().unwrap_or(turn.at);
                let let_through = self
                    .in_flight
                    .range(..first_throttled)
                    .flat_map(|(at, n)| std::iter::repeat_n(*at, *n as usize));
                let mut times: Vec<DateTime<Utc>> =
                    self.accepted.iter().copied().chain(let_through).collect();
                times.sort();
                let ages: Vec<f64> = times
                    .iter()
                    .map(|t| (now - *t).to_std().unwrap_or_default().as_secs_f64())
                    .collect();
                let refill = first_ceiling(&ages, drawn);
                let ceiling = self.cap.map_or(refill, |cap| refill.min(cap)).max(min);
                (ceiling, ceiling)
            }
            // Probing beyond the ceiling: what IAM accepted is the new one.
            (Some(rate), Some(ceiling)) if rate >= ceiling => (rate, rate.min(accepted).max(min)),
            (Some(rate), Some(ceiling)) => (rate, rate.max(ceiling * self.settings.ceiling_cut)),
        };
        let rate = (self.settings.decrease * from.min(ceiling)).max(min);
        self.ceiling = Some(ceiling);
        self.rate = Some(rate);
        self.last_decrease = Some(now);
        self.first_decrease.get_or_insert(now);
        Reaction::Decreased(self.rate().unwrap_or(rate))
    }

    fn forget_before(&mut self, now: DateTime<Utc>) {
        let horizon = now - seconds(WINDOW);
        while self.accepted.front().is_some_and(|t| *t <= horizon) {
            self.accepted.pop_front();
        }
        while self.throttles.front().is_some_and(|(t, _)| *t <= horizon) {
            self.throttles.pop_front();
        }
        // A request whose answer never came (its task was cancelled) is
        // forgotten with the rest.
        while let Some(oldest) = self.in_flight.first_entry() {
            if *oldest.key() > horizon {
                break;
            }
            oldest.remove();
        }
    }
}

/// The rate IAM's token bucket refills at, judged at the first throttle
/// from the requests IAM accepted in the last second (`ages`: how long ago
/// each was answered, oldest first), `drawn` seconds after the first
/// request that followed a second without any (the bucket was full then).
///
/// Until that throttle, the requests drew on the bucket's burst as well as
/// on its refill, so what IAM accepted overstates the rate it can keep up:
/// at the start of a run, by a full bucket. IAM does not publish its
/// bucket; this assumes it holds one second of requests, as token buckets
/// commonly do. The bucket is empty now (it throttled), so the requests
/// accepted since any moment t within the first second cannot exceed one
/// second's worth plus what it refilled since t: R ≥ n(t) / (1 + (now − t)),
/// and the largest such bound is the estimate. That holds however the
/// requests were spread within that second (a run's first request, say,
/// then a short pause while it reads its plans, then the batch; a pause of
/// a second or more starts `drawn` again). A run first throttled after many
/// seconds is judged as sending at a steady pace since its first request:
/// a bucket that held one second of requests then, and is empty `drawn`
/// seconds later, let through R(1 + 1/drawn) in the last second. Where the
/// assumption is wrong, the throttles that follow (too fast) or the
/// recovery (too slow) correct the rate within seconds.
pub fn first_ceiling(ages: &[f64], drawn: f64) -> f64 {
    let accepted = ages.len() as f64;
    if drawn > 1.0 {
        return accepted / (1.0 + 1.0 / drawn);
    }
    ages.iter()
        .enumerate()
        .map(|(i, age)| (accepted - i as f64) / (1.0 + age.max(0.0)))
        .fold(0.0, f64::max)
}
