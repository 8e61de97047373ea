//! Stopping a batch before its end: a deadline (`--deadline`) or a signal
//! (SIGTERM from a scheduler, SIGINT from a person).
//!
//! A stopped batch takes no new plan. Plans in flight get [`GRACE`] to
//! finish their run; whatever is still running then is cancelled, which
//! drops its lock (an OS lock ends, an S3 lease is deleted). Plans never
//! started are reported as not run. A second signal cuts the grace short.

use std::time::Duration;

use tokio::sync::watch;

/// How long plans in flight may go on after a stop before they are
/// cancelled: under the 30 s that Kubernetes, ECS and systemd give a
/// process between SIGTERM and SIGKILL, so that every lease is released
/// before the hard kill.
pub const GRACE: Duration = Duration::from_secs(20);

/// Why a batch stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `--deadline` passed.
    Deadline(String),
    /// SIGTERM or SIGINT.
    Signal(&'static str),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Deadline(after) => write!(f, "the deadline (--deadline {after}) passed"),
            Reason::Signal(name) => write!(f, "iam-rotate received {name}"),
        }
    }
}

/// What a batch watches to know it must stop. Cheap to clone; every clone
/// sees the same state.
#[derive(Clone, Debug)]
pub struct Stop {
    state: watch::Sender<State>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    reason: Option<Reason>,
    /// A second signal: cancel what runs now, without the grace.
    hurry: bool,
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    /// A stop nobody has asked for yet.
    pub fn new() -> Stop {
        Stop {
            state: watch::Sender::new(State::default()),
        }
    }

    /// Asks the batch to stop; the first reason is kept. Asking again
    /// (a second signal) cancels the plans in flight without the grace.
    pub fn request(&self, reason: Reason) {
        self.state.send_modify(|state| match state.reason {
            None => state.reason = Some(reason),
            Some(_) => state.hurry = true,
        });
    }

    /// Why the batch must stop, once it must.
    pub fn reason(&self) -> Option<Reason> {
        self.state.borrow().reason.clone()
    }

    /// Returns once a stop is asked for.
    pub async fn requested(&self) {
        let mut watching = self.state.subscribe();
        // The sender lives in `self`, so the channel never closes here.
        let _ = watching.wait_for(|state| state.reason.is_some()).await;
    }

    /// Returns once plans in flight must be cancelled: `grace` after the
    /// stop, or at a second request.
    pub async fn cancel_in_flight(&self, grace: Duration) {
        self.requested().await;
        let mut watching = self.state.subscribe();
        let hurried = watching.wait_for(|state| state.hurry);
        let _ = tokio::time::timeout(grace, hurried).await;
    }

    /// Stops the batch after `deadline` (if any) and at SIGTERM or SIGINT,
    /// from a task of the current runtime. Call it inside the runtime.
    pub fn watch(&self, deadline: Option<(Duration, String)>) {
        let stop = self.clone();
        tokio::spawn(async move {
            let after = async {
                match deadline {
                    Some((after, text)) => {
                        tokio::time::sleep(after).await;
                        text
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                text = after => stop.request(Reason::Deadline(text)),
                name = signal() => {
                    stop.request(Reason::Signal(name));
                    // A second signal: no grace.
                    let name = signal().await;
                    stop.request(Reason::Signal(name));
                }
            }
        });
    }
}

/// The next SIGTERM or SIGINT, by name. Where signals cannot be watched
/// (no handler could be installed), never.
async fn signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch SIGTERM/SIGINT; a signal ends iam-rotate at once");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_stop_keeps_its_first_reason_and_a_second_one_cuts_the_grace() {
        let stop = Stop::new();
        assert_eq!(stop.reason(), None);
        stop.request(Reason::Signal("SIGTERM"));
        stop.request(Reason::Deadline("1m".into()));
        assert_eq!(stop.reason(), Some(Reason::Signal("SIGTERM")));
        // Hurried already: cancelling does not wait for the hour of grace.
        let cancelled = tokio::time::timeout(
            Duration::from_secs(5),
            stop.cancel_in_flight(Duration::from_secs(3600)),
        );
        assert!(cancelled.await.is_ok());
    }

    #[tokio::test]
    async fn plans_in_flight_get_the_grace_after_one_stop() {
        let stop = Stop::new();
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.cancel_in_flight(Duration::from_millis(300)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "nothing was asked to stop yet");
        let stopped = Instant::now();
        stop.request(Reason::Deadline("1s".into()));
        waiter.await.unwrap();
        assert!(stopped.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_deadline_stops_the_batch_when_it_passes() {
        let stop = Stop::new();
        let started = Instant::now();
        stop.watch(Some((Duration::from_millis(200), "200ms".into())));
        assert_eq!(stop.reason(), None);
        stop.requested().await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(stop.reason(), Some(Reason::Deadline("200ms".into())));
    }
}
