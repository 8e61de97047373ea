//! The rate controller's decisions, on the manual clock: each test moves
//! time by hand and checks when requests may go and what a throttle does.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::clock::{Clock, ManualClock};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
}

fn millis(ms: i64) -> chrono::Duration {
    chrono::Duration::milliseconds(ms)
}

fn adaptive(cap: Option<f64>) -> RateController {
    RateController::new(Settings::default(), cap, true)
}

/// Sends `n` requests one after the other, each waiting for its turn and
/// answered at once as `answer` says; returns the turns.
fn send(
    controller: &mut RateController,
    clock: &ManualClock,
    n: usize,
    throttled: impl Fn(usize) -> bool,
) -> Vec<Turn> {
    let mut turns = Vec::new();
    for i in 0..n {
        let turn = controller.turn(clock.now());
        clock.set(turn.at.max(clock.now()));
        if throttled(i) {
            controller.throttled(&turn, clock.now());
        } else {
            controller.accepted(&turn, clock.now());
        }
        turns.push(turn);
    }
    turns
}

/// Two requests throttled at once: what it takes to slow down.
fn throttle_twice(controller: &mut RateController, clock: &ManualClock) -> Reaction {
    let first = controller.turn(clock.now());
    let second = controller.turn(clock.now());
    assert_eq!(controller.throttled(&first, clock.now()), Reaction::Held);
    controller.throttled(&second, clock.now())
}

#[test]
fn nothing_is_paced_until_iam_throttles() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(None);
    let turns = send(&mut controller, &clock, 100, |_| false);
    assert!(turns.iter().all(|t| t.at == start() && !t.waited));
    assert_eq!(controller.rate(), None);
    assert_eq!(clock.now(), start());
}

#[test]
fn the_cap_spaces_requests_evenly_from_the_first() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(Some(4.0));
    let turns = send(&mut controller, &clock, 9, |_| false);
    let at: Vec<_> = turns.iter().map(|t| t.at - start()).collect();
    let expected: Vec<_> = (0..9).map(|i| millis(250 * i)).collect();
    assert_eq!(at, expected);
    assert!(!turns[0].waited && turns[1..].iter().all(|t| t.waited));
    // Accepted requests never raise the rate above the cap.
    assert_eq!(controller.rate(), Some(4.0));
}

#[test]
fn a_quiet_spell_gives_no_burst_afterwards() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(Some(10.0));
    send(&mut controller, &clock, 3, |_| false);
    clock.advance(chrono::Duration::seconds(60));
    let resumed = clock.now();
    let turns = send(&mut controller, &clock, 3, |_| false);
    let at: Vec<_> = turns.iter().map(|t| t.at - resumed).collect();
    assert_eq!(at, vec![millis(0), millis(100), millis(200)]);
}

#[test]
fn the_first_throttle_paces_just_under_what_iam_accepted_in_the_last_second() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(None);
    // 20 accepted within the last second (a burst), then a throttle.
    for _ in 0..20 {
        clock.advance(millis(10));
        let turn = controller.turn(clock.now());
        controller.accepted(&turn, clock.now());
    }
    clock.advance(millis(700));
    let reaction = throttle_twice(&mut controller, &clock);
    assert_eq!(reaction, Reaction::Decreased(18.0));
    assert_eq!(controller.ceiling(), Some(20.0));
    // The next requests go 1/18 s apart.
    let first = controller.turn(clock.now());
    let second = controller.turn(clock.now());
    assert_eq!(
        second.at - first.at,
        chrono::Duration::nanoseconds(55_555_556)
    );
    assert!(second.waited);
}

#[test]
fn answers_to_requests_sent_before_a_decrease_do_not_decrease_again() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(None);
    send(&mut controller, &clock, 10, |_| false);
    // Eight requests in flight together; all come back throttled.
    let in_flight: Vec<Turn> = (0..8).map(|_| controller.turn(clock.now())).collect();
    clock.advance(millis(5));
    let reactions: Vec<Reaction> = in_flight
        .iter()
        .map(|turn| controller.throttled(turn, clock.now()))
        .collect();
    // The first alone changes nothing; the second slows down; the rest
    // were sent before that.
    assert_eq!(reactions[0], Reaction::Held);
    assert_eq!(reactions[1], Reaction::Decreased(9.0));
    assert!(reactions[2..].iter().all(|r| *r == Reaction::Held));
    assert_eq!(controller.rate(), Some(9.0));
    assert_eq!(controller.counts().throttled, 8);
    // A request sent after the decrease but within the hold: held too.
    let turn = controller.turn(clock.now());
    clock.set(turn.at + millis(500));
    assert_eq!(controller.throttled(&turn, clock.now()), Reaction::Held);
    // After the hold, a throttle below the ceiling lowers it at most 10%.
    let turn = controller.turn(clock.now());
    clock.set(turn.at + millis(600));
    assert_eq!(
        controller.throttled(&turn, clock.now()),
        Reaction::Decreased(8.1)
    );
    assert_eq!(controller.ceiling(), Some(9.0));
}

#[test]
fn accepted_requests_that_waited_recover_fast_to_the_ceiling_then_probe_slowly() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(None);
    send(&mut controller, &clock, 20, |_| false);
    throttle_twice(&mut controller, &clock);
    assert_eq!(
        (controller.rate(), controller.ceiling()),
        (Some(18.0), Some(20.0))
    );
    // Recovery: 20% of the ceiling (4/s) per second: 2/4 s to get back.
    let before = clock.now();
    while controller.rate().unwrap() < 20.0 {
        send(&mut controller, &clock, 1, |_| false);
    }
    let recovered = (clock.now() - before).num_milliseconds();
    assert!((450..=550).contains(&recovered), "{recovered} ms");
    // Beyond the ceiling: 1% of it (0.2/s) per second at first.
    let at_ceiling = (clock.now(), controller.rate().unwrap());
    send(&mut controller, &clock, 20, |_| false);
    let (seconds, gained) = (
        (clock.now() - at_ceiling.0).num_milliseconds() as f64 / 1000.0,
        controller.rate().unwrap() - at_ceiling.1,
    );
    let per_second = gained / seconds;
    assert!((0.2..0.35).contains(&per_second), "{per_second}/s");
}

#[test]
fn the_probe_speeds_up_the_longer_iam_does_not_throttle() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(None);
    send(&mut controller, &clock, 10, |_| false);
    throttle_twice(&mut controller, &clock);
    // Ten quiet seconds (the probe doubles every five).
    let began = clock.now();
    while clock.now() - began < chrono::Duration::seconds(10) {
        send(&mut controller, &clock, 1, |_| false);
    }
    let rate_at_10s = controller.rate().unwrap();
    while clock.now() - began < chrono::Duration::seconds(30) {
        send(&mut controller, &clock, 1, |_| false);
    }
    let rate_at_30s = controller.rate().unwrap();
    // From 10 s to 30 s the step grows from 4× to 64× 0.1/s.
    assert!(
        rate_at_30s - rate_at_10s > 20.0,
        "{rate_at_10s} -> {rate_at_30s}"
    );
}

#[test]
fn requests_that_did_not_wait_do_not_raise_the_rate() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(None);
    send(&mut controller, &clock, 10, |_| false);
    throttle_twice(&mut controller, &clock);
    let rate = controller.rate();
    // One request every two seconds: the work, not the pace, is slow.
    for _ in 0..20 {
        clock.advance(chrono::Duration::seconds(2));
        let turn = controller.turn(clock.now());
        assert!(!turn.waited);
        controller.accepted(&turn, clock.now());
    }
    assert_eq!(controller.rate(), rate);
}

#[test]
fn the_rate_never_falls_below_the_floor_nor_rises_above_the_cap() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(Some(3.0));
    // Throttled every time, for a minute.
    let began = clock.now();
    while clock.now() - began < chrono::Duration::seconds(60) {
        let turn = controller.turn(clock.now());
        clock.set(turn.at.max(clock.now()) + millis(100));
        controller.throttled(&turn, clock.now());
    }
    assert_eq!(controller.rate(), Some(Settings::default().min_rate));
    // Then never throttled, for ten minutes.
    while clock.now() - began < chrono::Duration::seconds(660) {
        send(&mut controller, &clock, 1, |_| false);
    }
    assert_eq!(controller.rate(), Some(3.0));
}

#[test]
fn a_lone_throttle_now_and_then_is_retried_but_changes_nothing() {
    let clock = ManualClock::new(start());
    let mut controller = adaptive(None);
    // One request in ten throttled, at 5 a second: never two in a second.
    let began = clock.now();
    let mut i = 0;
    while clock.now() - began < chrono::Duration::seconds(30) {
        clock.advance(millis(200));
        let turn = controller.turn(clock.now());
        if i % 10 == 9 {
            assert_eq!(controller.throttled(&turn, clock.now()), Reaction::Held);
        } else {
            controller.accepted(&turn, clock.now());
        }
        i += 1;
    }
    assert_eq!(controller.rate(), None);
    assert_eq!(controller.counts().throttled, 15);
}

#[test]
fn without_adaptation_only_the_cap_paces() {
    let clock = ManualClock::new(start());
    let mut controller = RateController::new(Settings::default(), Some(5.0), false);
    send(&mut controller, &clock, 10, |i| i % 2 == 0);
    assert_eq!(controller.rate(), Some(5.0));
    assert_eq!(
        controller.counts(),
        Counts {
            sent: 10,
            throttled: 5
        }
    );
    let mut uncapped = RateController::new(Settings::default(), None, false);
    send(&mut uncapped, &clock, 10, |_| true);
    assert_eq!(uncapped.rate(), None);
}

/// A server-side token bucket: `rate` tokens a second, holding `rate`.
struct TokenBucket {
    rate: f64,
    tokens: f64,
    at: DateTime<Utc>,
}

impl TokenBucket {
    fn admits(&mut self, now: DateTime<Utc>) -> bool {
        let elapsed = (now - self.at).num_nanoseconds().unwrap_or(0) as f64 / 1e9;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One requester against a token bucket of `limit`/s for two simulated
/// minutes: it settles near the limit with few throttles. (At a small
/// limit, the two throttles it takes to slow down are a larger share.)
#[test]
fn against_a_token_bucket_the_rate_settles_near_the_limit() {
    for (limit, most_throttled) in [(5.0, 0.12), (20.0, 0.05), (50.0, 0.05)] {
        let clock = ManualClock::new(start());
        let mut controller = adaptive(None);
        let mut bucket = TokenBucket {
            rate: limit,
            tokens: limit,
            at: start(),
        };
        let (mut accepted, mut throttled) = (0u32, 0u32);
        while clock.now() - start() < chrono::Duration::seconds(120) {
            let turn = controller.turn(clock.now());
            // Each answer takes 5 ms.
            clock.set(turn.at.max(clock.now()) + millis(5));
            if bucket.admits(turn.at) {
                accepted += 1;
                controller.accepted(&turn, clock.now());
            } else {
                throttled += 1;
                controller.throttled(&turn, clock.now());
            }
        }
        let throughput = f64::from(accepted) / 120.0;
        let share = f64::from(throttled) / f64::from(accepted + throttled);
        assert!(
            throughput > 0.9 * limit && throughput <= limit * 1.01 + 1.0,
            "limit {limit}: {throughput}/s accepted"
        );
        assert!(
            share < most_throttled,
            "limit {limit}: {:.1}% throttled",
            share * 100.0
        );
    }
}

#[tokio::test]
async fn one_pacer_per_account_shared_by_every_client_of_it() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(start()));
    let pacing = Pacing::new(
        PacingOptions {
            max_rps: Some(2.0),
            sdk_adaptive: false,
        },
        clock.clone(),
    );
    let a = pacing.for_account("111111111111");
    assert!(Arc::ptr_eq(&a, &pacing.for_account("111111111111")));
    let b = pacing.for_account("222222222222");
    assert!(!Arc::ptr_eq(&a, &b));
    // Turns of one account wait for each other, on the manual clock; the
    // other account's first turn is due at once.
    let t0 = clock.now();
    a.turn().await;
    a.turn().await;
    a.turn().await;
    assert_eq!(clock.now() - t0, millis(1000));
    let before = clock.now();
    b.turn().await;
    assert_eq!(clock.now(), before);
    assert_eq!(a.counts().sent, 3);
    assert_eq!(b.counts().sent, 1);
}

#[test]
fn a_role_arn_names_the_account_to_pace() {
    assert_eq!(
        account_of_role(Some("arn:aws:iam::210987654321:role/rotator")),
        "210987654321"
    );
    assert_eq!(account_of_role(None), CREDENTIALS_ACCOUNT);
    assert_eq!(account_of_role(Some("not-an-arn")), CREDENTIALS_ACCOUNT);
}

#[test]
fn throttling_codes_are_the_sdks() {
    for code in ["Throttling", "ThrottlingException", "RequestLimitExceeded"] {
        assert!(is_throttling(Some(code), 400), "{code}");
    }
    assert!(is_throttling(None, 429));
    // IAM's quota of two keys per user is not throttling.
    assert!(!is_throttling(Some("LimitExceeded"), 409));
    assert!(!is_throttling(Some("AccessDenied"), 403));
}
