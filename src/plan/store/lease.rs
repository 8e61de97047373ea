//! Leases: the lock object beside a plan in S3, what it holds, and the
//! protocol's decisions after each S3 answer, kept pure so that every
//! branch (412, 409, 404, a lease of our own) is tested without a network.
//!
//! A lease is created with `If-None-Match: *`, taken over once expired
//! with `If-Match` on the ETag just read, renewed with `If-Match` on the
//! ETag of our own last write, and released with a conditional delete. The
//! body names a unique owner id, so a process whose write reached S3 but
//! whose answer was lost (and retried) recognises the lease as its own.

use std::hash::{BuildHasher, Hasher};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The body of a lock object (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// Unique per process and store: the only field compared.
    pub owner: String,
    pub host: String,
    pub pid: u32,
    pub started: DateTime<Utc>,
    pub expires: DateTime<Utc>,
}

impl Lease {
    /// A new lease for `owner`, from `now` for `length`.
    pub fn new(owner: &Owner, now: DateTime<Utc>, length: chrono::Duration) -> Lease {
        Lease {
            owner: owner.id.clone(),
            host: owner.host.clone(),
            pid: owner.pid,
            started: now,
            expires: now + length,
        }
    }

    /// The same lease, expiring `length` after `now`.
    pub fn renewed(&self, now: DateTime<Utc>, length: chrono::Duration) -> Lease {
        Lease {
            expires: now + length,
            ..self.clone()
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and timestamps: serializing cannot fail.
        serde_json::to_vec(self).expect("a lease always serializes")
    }

    /// `None` for a body that is not a lease (someone else's object).
    pub fn from_json(body: &[u8]) -> Option<Lease> {
        serde_json::from_slice(body).ok()
    }

    /// Who holds it and until when, for the operator.
    pub fn describe(&self) -> String {
        format!(
            "held by {} (host {}, pid {}) since {} until {}",
            self.owner,
            self.host,
            self.pid,
            self.started.format("%Y-%m-%dT%H:%M:%SZ"),
            self.expires.format("%Y-%m-%dT%H:%M:%SZ")
        )
    }
}

/// This process as a lease holder.
#[derive(Clone, Debug)]
pub struct Owner {
    pub id: String,
    pub host: String,
    pub pid: u32,
}

impl Owner {
    /// A fresh owner id: host, pid and 64 random bits (the standard
    /// library's randomly keyed hasher), so two processes, or two stores in
    /// one process, never share one.
    pub fn this_process() -> Owner {
        let host = hostname();
        let pid = std::process::id();
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(pid);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        Owner {
            id: format!("{host}:{pid}:{:016x}", hasher.finish()),
            host,
            pid,
        }
    }
}

impl Owner {
    /// The owner of one attempt to take a lease: this process's id and the
    /// attempt's number, so two takes of one plan in one process exclude
    /// each other as two processes do.
    pub fn claim(&self, number: u64) -> Owner {
        Owner {
            id: format!("{}#{number}", self.id),
            ..self.clone()
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match rc {
        0 if len > 0 => String::from_utf8_lossy(&buf[..len]).into_owned(),
        _ => "unknown-host".into(),
    }
}

/// How S3 answered a conditional request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200/204; the new ETag for a write.
    Done(Option<String>),
    /// 412 PreconditionFailed: the object exists (`If-None-Match: *`) or
    /// is not the version read (`If-Match`).
    PreconditionFailed,
    /// 409 ConditionalRequestConflict: another conditional write on the
    /// same key was in flight; S3 asks to retry.
    Conflict,
    /// 404: no such object.
    Missing,
}

/// How many times a 409 (or a lock object that vanished between two
/// requests) is retried before the attempt gives up with an error.
pub const MAX_ATTEMPTS: u32 = 5;

/// What the lock object says when `If-None-Match: *` found one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Our own id: an earlier attempt of ours was written.
    Ours,
    /// Someone else's lease, still live: skip the plan.
    Live(String),
    /// Someone else's lease, expired: take it over.
    Expired,
}

/// Judges the lock object read after a create was refused. A body that is
/// not a lease is treated as live: it was put there by hand or by another
/// tool, and only `unlock --force` may remove it.
pub fn judge(body: &[u8], me: &str, now: DateTime<Utc>) -> Found {
    match Lease::from_json(body) {
        Some(lease) if lease.owner == me => Found::Ours,
        Some(lease) if lease.expires > now => Found::Live(lease.describe()),
        Some(_) => Found::Expired,
        None => Found::Live(
            "held by a lock object that is not an iam-rotate lease (unreadable body)".into(),
        ),
    }
}

/// The next step of taking a lease, after each answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The lease is ours, at this ETag.
    Held(String),
    /// Read the lock object and judge it.
    Read,
    /// Write over the expired lease at this ETag.
    TakeOver(String),
    /// Start again from the create (after a 409 or a vanished object).
    Retry,
    /// Someone else holds it: skip the plan, naming them.
    Busy(String),
}

/// After `PutObject If-None-Match: *` of our lease.
pub fn after_create(answer: Answer) -> Step {
    match answer {
        Answer::Done(etag) => Step::Held(etag.unwrap_or_default()),
        Answer::PreconditionFailed => Step::Read,
        Answer::Conflict | Answer::Missing => Step::Retry,
    }
}

/// After reading the lock object that refused the create: `None` when it
/// was deleted in between.
pub fn after_read(found: Option<(&[u8], String)>, me: &str, now: DateTime<Utc>) -> Step {
    let Some((body, etag)) = found else {
        return Step::Retry;
    };
    match judge(body, me, now) {
        Found::Ours => Step::Held(etag),
        Found::Live(holder) => Step::Busy(holder),
        Found::Expired => Step::TakeOver(etag),
    }
}

/// After `PutObject If-Match: <expired lease's ETag>`. A 412 means another
/// runner renewed or took it first: read again and judge what is there now.
pub fn after_takeover(answer: Answer) -> Step {
    match answer {
        Answer::Done(etag) => Step::Held(etag.unwrap_or_default()),
        Answer::PreconditionFailed => Step::Read,
        Answer::Conflict | Answer::Missing => Step::Retry,
    }
}

/// What a conditional save of a plan (or a renewal of a lease) decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Written; the new ETag.
    Written(String),
    /// The object is not the version we read (412), or is gone (404):
    /// another runner changed it. Never retried.
    Lost,
    /// 409: retry the same conditional write.
    Retry,
}

pub fn after_save(answer: Answer) -> Saved {
    match answer {
        Answer::Done(etag) => Saved::Written(etag.unwrap_or_default()),
        Answer::PreconditionFailed | Answer::Missing => Saved::Lost,
        Answer::Conflict => Saved::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-01T10:00:00Z".parse().unwrap()
    }

    fn owner(id: &str) -> Owner {
        Owner {
            id: id.into(),
            host: "runner-1".into(),
            pid: 42,
        }
    }

    fn lease_of(id: &str, expires_in_secs: i64) -> Vec<u8> {
        let mut lease = Lease::new(&owner(id), now(), chrono::Duration::minutes(15));
        lease.expires = now() + chrono::Duration::seconds(expires_in_secs);
        lease.to_json()
    }

    #[test]
    fn creating_a_lease_decides_on_every_answer() {
        assert_eq!(
            after_create(Answer::Done(Some("\"e1\"".into()))),
            Step::Held("\"e1\"".into())
        );
        assert_eq!(after_create(Answer::PreconditionFailed), Step::Read);
        assert_eq!(after_create(Answer::Conflict), Step::Retry);
        assert_eq!(after_create(Answer::Missing), Step::Retry);
    }

    #[test]
    fn a_lease_found_is_ours_live_expired_or_gone() {
        let e = || "\"e2\"".to_string();
        let ours = lease_of("me", -600);
        assert_eq!(
            after_read(Some((&ours, e())), "me", now()),
            Step::Held(e()),
            "our own id wins even when expired: our retried write landed"
        );
        let live = lease_of("other", 60);
        match after_read(Some((&live, e())), "me", now()) {
            Step::Busy(holder) => {
                assert!(holder.contains("other"), "{holder}");
                assert!(
                    holder.contains("runner-1") && holder.contains("pid 42"),
                    "{holder}"
                );
                assert!(holder.contains("until 2026-12-01T10:01:00Z"), "{holder}");
            }
            other => panic!("{other:?}"),
        }
        let expired = lease_of("other", -1);
        assert_eq!(
            after_read(Some((&expired, e())), "me", now()),
            Step::TakeOver(e())
        );
        let at_the_second = lease_of("other", 0);
        assert_eq!(
            after_read(Some((&at_the_second, e())), "me", now()),
            Step::TakeOver(e()),
            "a lease is live strictly before its expiry"
        );
        assert_eq!(after_read(None, "me", now()), Step::Retry);
        let foreign = b"{\"who\":\"terraform\"}".to_vec();
        assert!(matches!(
            after_read(Some((&foreign, e())), "me", now()),
            Step::Busy(reason) if reason.contains("not an iam-rotate lease")
        ));
    }

    #[test]
    fn a_takeover_that_loses_reads_again() {
        assert_eq!(
            after_takeover(Answer::Done(Some("\"e3\"".into()))),
            Step::Held("\"e3\"".into())
        );
        assert_eq!(after_takeover(Answer::PreconditionFailed), Step::Read);
        assert_eq!(after_takeover(Answer::Conflict), Step::Retry);
        assert_eq!(after_takeover(Answer::Missing), Step::Retry);
    }

    #[test]
    fn a_save_that_loses_its_condition_is_never_retried() {
        assert_eq!(
            after_save(Answer::Done(Some("\"e4\"".into()))),
            Saved::Written("\"e4\"".into())
        );
        assert_eq!(after_save(Answer::PreconditionFailed), Saved::Lost);
        assert_eq!(after_save(Answer::Missing), Saved::Lost);
        assert_eq!(after_save(Answer::Conflict), Saved::Retry);
    }

    #[test]
    fn owners_are_unique_and_leases_round_trip() {
        let a = Owner::this_process();
        let b = Owner::this_process();
        assert_ne!(a.id, b.id);
        assert_eq!(a.pid, std::process::id());
        assert_ne!(a.claim(1).id, a.claim(2).id);
        assert!(a.claim(1).id.starts_with(&a.id));
        let lease = Lease::new(&a, now(), chrono::Duration::seconds(5));
        assert_eq!(Lease::from_json(&lease.to_json()), Some(lease.clone()));
        let renewed = lease.renewed(
            now() + chrono::Duration::seconds(3),
            chrono::Duration::seconds(5),
        );
        assert_eq!(renewed.started, lease.started);
        assert_eq!(renewed.expires, now() + chrono::Duration::seconds(8));
        assert_ne!(renewed.to_json(), lease.to_json());
    }
}
