//! Pacing IAM requests at the account's rate limit.
//!
//! IAM throttles its API per account and publishes no rate. Every IAM
//! request of this process goes through the [`Pacer`] of its account: it
//! waits for its turn, and its answer tells the account's
//! [`RateController`] whether to slow down (IAM answered `Throttling`) or
//! to speed up again. All the tasks of a `run --all` share that one pacer,
//! so eight concurrent plans slow down together instead of each backing
//! off alone.
//!
//! A throttled request was not carried out, so it is sent again at its next
//! turn until it succeeds or its plan's throttling budget
//! ([`PLAN_THROTTLE_BUDGET`], counted from the start of the plan's run)
//! runs out: throttling alone does not fail a plan. The SDK's own retries
//! are kept for 5xx answers and broken connections, but a throttle is
//! handed back to the pacer at once ([`ThrottlesArePaced`]).
//!
//! [`Pacing`] keeps one pacer per account: a process that works in several
//! accounts (each through its own role) paces each against its own limit.

pub mod controller;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason,
};
use aws_smithy_types::retry::ErrorKind;

use crate::clock::Clock;

pub use controller::{Counts, RateController, Reaction, Settings, Turn};

/// How long one plan's requests may keep being throttled, from the start
/// of its run, before the plan fails with IAM's `Throttling` error. Long
/// enough for a batch at a small rate limit (a plan waits its turn behind
/// the others), short enough that a run whose quota another tool eats up
/// ends the same hour.
pub const PLAN_THROTTLE_BUDGET: Duration = Duration::from_secs(15 * 60);

/// The key of the account whose credentials the process started with, before
/// STS has said which account that is.
pub const CREDENTIALS_ACCOUNT: &str = "(credentials)";

/// Error codes that mean "throttled, not carried out": the SDK's own list
/// (the one its retry classifier files as throttling), and HTTP 429.
pub fn is_throttling(code: Option<&str>, http_status: u16) -> bool {
    http_status == 429
        || code.is_some_and(|code| {
            aws_runtime::retries::classifiers::THROTTLING_ERRORS.contains(&code)
        })
}

/// How the process paces IAM requests: the same for every account.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PacingOptions {
    /// `--max-rps`: a cap per account, requests per second.
    pub max_rps: Option<f64>,
    /// `--retry-mode adaptive`: the SDK's client-side rate limiter adapts
    /// the rate instead of the [`RateController`]; only the cap is kept here.
    pub sdk_adaptive: bool,
}

/// One pacer per account, made on first use; see the module docs.
pub struct Pacing {
    options: PacingOptions,
    clock: Arc<dyn Clock>,
    accounts: Mutex<HashMap<String, Arc<Pacer>>>,
}

impl Pacing {
    pub fn new(options: PacingOptions, clock: Arc<dyn Clock>) -> Self {
        Pacing {
            options,
            clock,
            accounts: Mutex::default(),
        }
    }

    pub fn options(&self) -> PacingOptions {
        self.options
    }

    /// The pacer of `account` (an account id, or [`CREDENTIALS_ACCOUNT`]):
    /// the same one for every client of that account.
    pub fn for_account(&self, account: &str) -> Arc<Pacer> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts
            .entry(account.to_string())
            .or_insert_with(|| {
                Arc::new(Pacer::new(
                    account,
                    RateController::new(
                        Settings::default(),
                        self.options.max_rps,
                        !self.options.sdk_adaptive,
                    ),
                    self.clock.clone(),
                ))
            })
            .clone()
    }
}

/// The account whose pacer a client built with `role_arn` uses: the
/// account in the role's ARN, else the credentials' own.
pub fn account_of_role(role_arn: Option<&str>) -> &str {
    role_arn
        .and_then(|arn| arn.split(':').nth(4))
        .filter(|account| !account.is_empty())
        .unwrap_or(CREDENTIALS_ACCOUNT)
}

/// One account's rate controller, shared by every task and client of that
/// account; the controller itself decides, this waits and logs.
pub struct Pacer {
    account: String,
    controller: Mutex<RateController>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("account", &self.account)
            .field("rate", &self.rate())
            .finish()
    }
}

impl Pacer {
    pub fn new(account: &str, controller: RateController, clock: Arc<dyn Clock>) -> Self {
        Pacer {
            account: account.to_string(),
            controller: Mutex::new(controller),
            clock,
        }
    }

    /// A pacer of its own, for a client no [`Pacing`] hands one to.
    pub fn unshared(clock: Arc<dyn Clock>) -> Self {
        Pacer::new(
            CREDENTIALS_ACCOUNT,
            RateController::new(Settings::default(), None, true),
            clock,
        )
    }

    fn controller(&self) -> std::sync::MutexGuard<'_, RateController> {
        self.controller.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the next request's turn.
    pub async fn turn(&self) -> Turn {
        let now = self.clock.precise_now();
        let turn = self.controller().turn(now);
        let wait = turn.wait_from(now);
        if !wait.is_zero() {
            self.clock.sleep(wait).await;
        }
        turn
    }

    /// IAM answered the request of `turn` without throttling it.
    pub fn accepted(&self, turn: &Turn) {
        let now = self.clock.precise_now();
        self.controller().accepted(turn, now);
    }

    /// IAM throttled the request of `turn`.
    pub fn throttled(&self, turn: &Turn, operation: &str) {
        let now = self.clock.precise_now();
        let reaction = self.controller().throttled(turn, now);
        if let Reaction::Decreased(rate) = reaction {
            tracing::info!(
                account = %self.account,
                operation,
                rate,
                "IAM throttled {operation}: pacing this account's IAM requests at {rate:.1}/s"
            );
        }
    }

    /// The requests per second paced at now; `None`: not paced.
    pub fn rate(&self) -> Option<f64> {
        self.controller().rate()
    }

    pub fn counts(&self) -> Counts {
        self.controller().counts()
    }

    /// Whether this pacer adapts to throttling (else the SDK does).
    pub fn adapts(&self) -> bool {
        self.controller().adapts()
    }
}

tokio::task_local! {
    /// When the throttling budget of the plan this task works on runs out.
    static PLAN_DEADLINE: Instant;
}

/// Runs one plan's work with its own throttling budget: requests inside it
/// that IAM keeps throttling give up [`PLAN_THROTTLE_BUDGET`] after this
/// call started, however many requests that took.
pub async fn within_plan_budget<F: Future>(work: F) -> F::Output {
    PLAN_DEADLINE
        .scope(Instant::now() + PLAN_THROTTLE_BUDGET, work)
        .await
}

/// When a request first sent at `first_sent` stops being retried for
/// throttling: its plan's deadline, or (outside any plan) the budget
/// counted from its own first attempt.
pub fn throttle_deadline(first_sent: Instant) -> Instant {
    PLAN_DEADLINE
        .try_with(|deadline| *deadline)
        .unwrap_or(first_sent + PLAN_THROTTLE_BUDGET)
}

/// An SDK retry classifier that runs after the SDK's own and takes
/// throttling back from them: the SDK does not retry a throttled request
/// itself, the [`Pacer`] does, at the account's pace.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThrottlesArePaced;

impl ClassifyRetry for ThrottlesArePaced {
    fn classify_retry(&self, _ctx: &InterceptorContext) -> RetryAction {
        RetryAction::NoActionIndicated
    }

    fn classify_retry_v2(&self, _ctx: &InterceptorContext, previous: &RetryAction) -> RetryAction {
        match previous {
            RetryAction::RetryIndicated(RetryReason::RetryableError {
                kind: ErrorKind::ThrottlingError,
                ..
            }) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "iam-rotate: throttling is retried by the account's pacer"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

#[cfg(test)]
mod tests;
