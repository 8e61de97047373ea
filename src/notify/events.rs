//! Which events a run caused: decided from the plan before and after the
//! run and how the run ended. Pure: no I/O, no clock.

use chrono::{DateTime, Duration, Utc};

use crate::plan::model::NoticeEvent;
use crate::plan::{Phase, Plan};

/// The least time between two `overdue` notices of one plan.
pub fn overdue_interval() -> Duration {
    Duration::days(1)
}

/// What a plan was before a command worked on it.
#[derive(Clone, Debug)]
pub struct Before {
    pub history_len: usize,
    pub last_error: Option<String>,
}

impl Before {
    pub fn of(plan: &Plan) -> Before {
        Before {
            history_len: plan.history.len(),
            last_error: plan.last_error.clone(),
        }
    }
}

/// How a run on a plan ended.
#[derive(Clone, Copy, Debug)]
pub enum RunEnd<'a> {
    /// It took every step it could, or waits, or is blocked.
    Ran,
    /// An error stopped it.
    Failed { error: &'a str },
}

/// The events of one run, each with its reason, in the order they happened.
/// `overdue` is why the plan is overdue now, when it is.
pub fn events(
    before: &Before,
    plan: &Plan,
    end: RunEnd<'_>,
    overdue: Option<&str>,
    now: DateTime<Utc>,
) -> Vec<(NoticeEvent, String)> {
    let mut events = Vec::new();
    let new_history = plan.history.get(before.history_len..).unwrap_or_default();
    let entered = |phase: Phase| {
        new_history
            .iter()
            .rfind(|entry| entry.to == phase && entry.from != phase)
    };
    // A plan unblocked by --retry-blocked and blocked again is news again:
    // the person fixed something, and it was not enough.
    if let (Some(entry), Phase::Blocked) = (entered(Phase::Blocked), plan.phase) {
        let reason = plan.blocked_reason.as_ref().unwrap_or(&entry.action);
        events.push((NoticeEvent::Blocked, reason.clone()));
    }
    if let Some(entry) = entered(Phase::Done) {
        events.push((NoticeEvent::Done, entry.action.clone()));
    }
    if let RunEnd::Failed { error } = end {
        // The same error run after run is told once; a new one is news.
        if before.last_error.as_deref() != Some(error) {
            events.push((NoticeEvent::Failed, error.to_string()));
        }
    }
    if let Some(reason) = overdue {
        let due = plan
            .notifications
            .overdue_sent_at
            .is_none_or(|sent| now - sent >= overdue_interval());
        if due {
            events.push((NoticeEvent::Overdue, reason.to_string()));
        }
    }
    events
}
