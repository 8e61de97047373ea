//! The pure core, table-driven: each row is a plan in a phase, what IAM
//! shows (keys, last use, the destination), the time and the caller, and
//! the decision expected, with a fact it must state. No simulator, no
//! async: [`decide`], [`decide_rollback`], [`find_orphan`] and the
//! self-rotation rules are called directly.
//!
//! Times are seconds from `T0`; the new key is created at `T0`, the old one
//! 400 days before. The policy is the default one (adoption 7d, quiet 3d,
//! verify 7d, the new key must be used) unless a row changes it.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::self_rotation::{
    check_plan_key, deactivation_baseline, expected_key, self_policy, worth_waiting, KeyMismatch,
    POLL,
};
use super::*;
use crate::iam::{Caller, KeyStatus, LastUse, LiveKey};
use crate::plan::policy::Policy;
use crate::plan::{mask_key, HistoryEntry, NewKey, OldKey, Phase, Plan, PlanKind, PlanVersion};

const ACCOUNT: &str = "111122223333";
const OTHER_ACCOUNT: &str = "999988887777";
const USER: &str = "alice";
const USER_ARN: &str = "arn:aws:iam::111122223333:user/alice";
const OPS_ARN: &str = "arn:aws:iam::111122223333:user/ops";
const DELIVERY: &str = "file:/creds/alice.csv";

const OLD: &str = "AKIAOLDKEY0000000001";
const NEW: &str = "AKIANEWKEY0000000002";
const CANDIDATE: &str = "AKIACANDIDATE0000003";
const OTHER: &str = "AKIAOTHERKEY00000004";

const M: i64 = 60;
const H: i64 = 3600;
const D: i64 = 86_400;
const OLD_CREATED: i64 = -400 * D;

const ACTIVE: KeyStatus = KeyStatus::Active;
const INACTIVE: KeyStatus = KeyStatus::Inactive;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + Duration::seconds(secs)
}

/// A live key: id, status, created (seconds from `T0`).
#[derive(Clone, Copy)]
struct K(&'static str, KeyStatus, i64);

fn live(keys: &[K]) -> Vec<LiveKey> {
    keys.iter()
        .map(|K(id, status, created)| LiveKey {
            id: id.to_string(),
            status: *status,
            created_at: at(*created),
        })
        .collect()
}

/// A key's GetAccessKeyLastUsed as a row states it.
#[derive(Clone, Copy)]
enum Use {
    NotRead,
    Never,
    At(i64),
}

impl Use {
    fn read(self) -> Option<LastUse> {
        match self {
            Use::NotRead => None,
            Use::Never => Some(LastUse::default()),
            Use::At(secs) => Some(LastUse {
                at: Some(at(secs)),
                service: Some("s3".into()),
                region: Some("eu-west-1".into()),
            }),
        }
    }
}

/// The plan a rotation in `phase` has, as the store would accept it.
fn plan_in(phase: Phase) -> Plan {
    let created = phase != Phase::CreateSecondKey;
    let old_status = match phase {
        Phase::Verify | Phase::Delete | Phase::Done => INACTIVE,
        _ => ACTIVE,
    };
    let phase_since = match phase {
        Phase::CreateSecondKey => -D,
        Phase::WaitForAdoption => 0,
        Phase::CheckLastUsed => 7 * D,
        Phase::SetInactive => 7 * D + H,
        Phase::Verify => 8 * D,
        _ => 15 * D,
    };
    let deactivated = matches!(phase, Phase::Verify | Phase::Delete | Phase::Done);
    Plan {
        version: PlanVersion,
        kind: PlanKind::Plan,
        account: ACCOUNT.into(),
        user: USER.into(),
        user_arn: USER_ARN.into(),
        delivery: DELIVERY.into(),
        credentials_file: None,
        notify: Vec::new(),
        policy: Policy::default(),
        old_key: OldKey {
            id: OLD.into(),
            created_at: at(OLD_CREATED),
            status: old_status,
            deactivated_at: deactivated.then(|| at(8 * D)),
            last_used_at_deactivation: deactivated.then(|| at(5 * D)),
        },
        new_key: created.then(|| NewKey {
            id: NEW.into(),
            created_at: at(0),
            deleted_at: None,
        }),
        phase,
        phase_since: at(phase_since),
        create_intent_at: None,
        restarted_at: None,
        blocked_in: None,
        blocked_reason: None,
        last_error: None,
        notifications: Default::default(),
        observations: Vec::new(),
        history: Vec::new(),
    }
}

/// The keys IAM lists for a plan in `phase` when nothing drifted.
fn keys_of(plan: &Plan) -> Vec<K> {
    let mut keys = vec![K(OLD, plan.old_key.status, OLD_CREATED)];
    if plan.new_key.is_some() {
        keys.push(K(NEW, ACTIVE, 0));
    }
    keys
}

// ---------------------------------------------------------------------------
// decide

enum Expect {
    Finished,
    WrongAccount,
    Block(&'static str),
    Unsure(&'static str),
    Wait {
        until: Option<i64>,
        says: &'static str,
    },
    Act(Step),
    Advance {
        to: Phase,
        says: &'static str,
    },
}

struct Row {
    name: &'static str,
    phase: Phase,
    tweak: fn(&mut Plan),
    keys: Option<Vec<K>>,
    user_gone: bool,
    old_use: Use,
    new_use: Use,
    orphan_use: Use,
    delivered: Option<Held>,
    now: i64,
    caller_account: &'static str,
}

fn row(name: &'static str, phase: Phase) -> Row {
    Row {
        name,
        phase,
        tweak: |_| {},
        keys: None,
        user_gone: false,
        old_use: Use::NotRead,
        new_use: Use::NotRead,
        orphan_use: Use::NotRead,
        delivered: None,
        now: 30 * D,
        caller_account: ACCOUNT,
    }
}

impl Row {
    fn plan(mut self, tweak: fn(&mut Plan)) -> Self {
        self.tweak = tweak;
        self
    }
    fn keys(mut self, keys: &[K]) -> Self {
        self.keys = Some(keys.to_vec());
        self
    }
    fn user_gone(mut self) -> Self {
        self.user_gone = true;
        self
    }
    fn old_key_use(mut self, used: Use) -> Self {
        self.old_use = used;
        self
    }
    fn new_key_use(mut self, used: Use) -> Self {
        self.new_use = used;
        self
    }
    fn orphan(mut self, used: Use) -> Self {
        self.orphan_use = used;
        self
    }
    fn held(mut self, held: Held) -> Self {
        self.delivered = Some(held);
        self
    }
    fn now(mut self, secs: i64) -> Self {
        self.now = secs;
        self
    }
    fn caller(mut self, account: &'static str) -> Self {
        self.caller_account = account;
        self
    }
    fn expect(self, expect: Expect) -> (Row, Expect) {
        (self, expect)
    }

    /// The plan and what the engine would have observed.
    fn world(&self) -> (Plan, Observed) {
        let mut plan = plan_in(self.phase);
        (self.tweak)(&mut plan);
        let keys = self.keys.clone().unwrap_or_else(|| keys_of(&plan));
        let seen = Observed {
            now: at(self.now),
            system_now: at(self.now),
            caller_account: self.caller_account.into(),
            keys: (!self.user_gone).then(|| live(&keys)),
            old_use: self.old_use.read(),
            new_use: self.new_use.read(),
            orphan_use: self.orphan_use.read(),
            delivered: self.delivered.clone(),
        };
        (plan, seen)
    }
}

fn check(row: &Row, expect: &Expect) {
    let (plan, seen) = row.world();
    let decision = decide(&plan, &seen);
    let name = row.name;
    let fail = || panic!("{name}: got {decision:?}");
    match (expect, &decision) {
        (Expect::Finished, Decision::Finished) => {}
        (Expect::WrongAccount, Decision::WrongAccount { reason }) => {
            assert!(reason.contains("Nothing was changed"), "{name}: {reason}");
        }
        (Expect::Block(says), Decision::Block { reason })
        | (Expect::Unsure(says), Decision::Unsure { reason }) => {
            assert!(reason.contains(says), "{name}: {reason:?} lacks {says:?}");
        }
        (
            Expect::Wait { until, says },
            Decision::Wait {
                until: got,
                reason,
                next,
            },
        ) => {
            assert_eq!(*got, until.map(at), "{name}: until");
            // Each ends with a newline, so that a row can say how one ends.
            let text = format!("{reason}\n{next}\n");
            assert!(text.contains(says), "{name}: {text:?} lacks {says:?}");
        }
        (Expect::Act(step), Decision::Act(got)) => assert_eq!(got, step, "{name}"),
        (Expect::Advance { to, says }, Decision::Act(Step::Advance { to: got, action })) => {
            assert_eq!(got, to, "{name}");
            assert!(action.contains(says), "{name}: {action:?} lacks {says:?}");
        }
        _ => fail(),
    }
}

fn deactivate() -> Expect {
    Expect::Act(Step::Deactivate { key_id: OLD.into() })
}

fn delete_old() -> Expect {
    Expect::Act(Step::DeleteOld { key_id: OLD.into() })
}

/// Rows every phase that reads IAM shares: the caller's account, the user,
/// and drift of the old key, the new key and unknown keys.
fn guard_rows(phase: Phase) -> Vec<(Row, Expect)> {
    use Phase::*;
    let created = phase != CreateSecondKey;
    let old_status = plan_in(phase).old_key.status;
    let flipped = match old_status {
        ACTIVE => INACTIVE,
        INACTIVE => ACTIVE,
    };
    let mut rows = vec![
        row("wrong account", phase)
            .caller(OTHER_ACCOUNT)
            .expect(Expect::WrongAccount),
        row("user gone", phase)
            .user_gone()
            .expect(Expect::Block("IAM user alice no longer exists")),
    ];
    let with_new = |old: Option<K>| -> Vec<K> {
        old.into_iter()
            .chain(created.then_some(K(NEW, ACTIVE, 0)))
            .collect()
    };
    // An interrupted delete (the old key gone in `delete`) and an
    // interrupted deactivate (found Inactive in `set_inactive`) are the
    // step itself, not drift.
    rows.push(
        row("old key missing", phase)
            .keys(&with_new(None))
            .expect(match phase {
                Delete => delete_old(),
                _ => Expect::Block("the old key AKIA…0001 no longer exists on user alice"),
            }),
    );
    rows.push(
        row("old key status changed", phase)
            .keys(&with_new(Some(K(OLD, flipped, OLD_CREATED))))
            .expect(match phase {
                SetInactive => deactivate(),
                // Inactive in the plan, Active in IAM: also what a rollback
                // whose answer was lost leaves, and the reason says so.
                _ if old_status == INACTIVE => {
                    Expect::Block("by a `rollback` whose answer was lost")
                }
                _ => Expect::Block("someone changed it outside iam-rotate"),
            }),
    );
    if created {
        let old = K(OLD, old_status, OLD_CREATED);
        rows.push(
            row("new key missing", phase)
                .keys(&[old])
                .expect(Expect::Block("the new key AKIA…0002 no longer exists")),
        );
        rows.push(
            row("new key inactive", phase)
                .keys(&[old, K(NEW, INACTIVE, 0)])
                .expect(Expect::Block("the new key AKIA…0002 is Inactive in IAM")),
        );
    }
    let mut unknown = with_new(Some(K(OLD, old_status, OLD_CREATED)));
    unknown.push(K(OTHER, ACTIVE, 3 * D));
    rows.push(
        row("unknown key", phase)
            .keys(&unknown)
            .expect(Expect::Block("a key iam-rotate does not know: AKIA…0004")),
    );
    rows
}

fn standing_rows() -> Vec<(Row, Expect)> {
    use Phase::*;
    vec![
        row("done", Done).expect(Expect::Finished),
        row("rolled back", RolledBack).expect(Expect::Finished),
        row("done, other account: still finished", Done)
            .caller(OTHER_ACCOUNT)
            .user_gone()
            .expect(Expect::Finished),
        row("blocked keeps its reason", Blocked)
            .plan(|p| {
                p.blocked_in = Some(Phase::Verify);
                p.blocked_reason = Some("found something odd".into());
            })
            .expect(Expect::Block("found something odd")),
        row("blocked without a reason", Blocked).expect(Expect::Block("the plan is blocked")),
        row("blocked, other account: stays blocked", Blocked)
            .caller(OTHER_ACCOUNT)
            .expect(Expect::Block("the plan is blocked")),
    ]
}

fn intent_now(p: &mut Plan) {
    p.create_intent_at = Some(at(0));
}

fn create_rows() -> Vec<(Row, Expect)> {
    use Phase::CreateSecondKey as C;
    let old = K(OLD, ACTIVE, OLD_CREATED);
    let in_window = K(CANDIDATE, ACTIVE, 10);
    vec![
        row("create: due at once", C).expect(Expect::Act(Step::CreateKey)),
        row("create: orphan in window, never used, not delivered", C)
            .plan(intent_now)
            .keys(&[old, in_window])
            .held(Held::Nothing)
            .orphan(Use::Never)
            .expect(Expect::Act(Step::DeleteOrphan {
                key_id: CANDIDATE.into(),
            })),
        row("create: orphan while the destination holds another key", C)
            .plan(intent_now)
            .keys(&[old, in_window])
            .held(Held::Key(OLD.into()))
            .orphan(Use::Never)
            .expect(Expect::Act(Step::DeleteOrphan {
                key_id: CANDIDATE.into(),
            })),
        row("create: the destination holds the candidate", C)
            .plan(intent_now)
            .keys(&[old, in_window])
            .held(Held::Key(CANDIDATE.into()))
            .expect(Expect::Act(Step::AdoptDelivered {
                key_id: CANDIDATE.into(),
            })),
        row("create: delivered candidate made inactive", C)
            .plan(intent_now)
            .keys(&[old, K(CANDIDATE, INACTIVE, 10)])
            .held(Held::Key(CANDIDATE.into()))
            .expect(Expect::Block("but is Inactive in IAM")),
        row("create: destination unreadable", C)
            .plan(intent_now)
            .keys(&[old, in_window])
            .held(Held::Unknown("access denied (test)".into()))
            .orphan(Use::Never)
            .expect(Expect::Unsure("access denied (test)")),
        row("create: destination not read", C)
            .plan(intent_now)
            .keys(&[old, in_window])
            .orphan(Use::Never)
            .expect(Expect::Unsure("it was not read")),
        row("create: candidate before the window", C)
            .plan(intent_now)
            .keys(&[old, K(CANDIDATE, ACTIVE, -10 * M)])
            .held(Held::Nothing)
            .orphan(Use::Never)
            .expect(Expect::Block("before the window")),
        row("create: candidate after the window", C)
            .plan(intent_now)
            .keys(&[old, K(CANDIDATE, ACTIVE, 10 * M)])
            .held(Held::Nothing)
            .orphan(Use::Never)
            .expect(Expect::Block("after the window")),
        row("create: candidate used", C)
            .plan(intent_now)
            .keys(&[old, in_window])
            .held(Held::Nothing)
            .orphan(Use::At(H))
            .expect(Expect::Block("but it has been used")),
        row("create: candidate's use not read", C)
            .plan(intent_now)
            .keys(&[old, in_window])
            .held(Held::Nothing)
            .expect(Expect::Block("its last use could not be read")),
        row("create: unknown key and no intent", C)
            .keys(&[old, in_window])
            .held(Held::Nothing)
            .orphan(Use::Never)
            .expect(Expect::Block(
                "iam-rotate never touches a key its plan does not name",
            )),
        row("create: two unknown keys after an intent", C)
            .plan(intent_now)
            .keys(&[old, in_window, K(OTHER, ACTIVE, 20)])
            .held(Held::Nothing)
            .orphan(Use::Never)
            .expect(Expect::Block(
                "iam-rotate never touches a key its plan does not name",
            )),
    ]
}

fn no_new_key_use(p: &mut Plan) {
    p.policy.require_new_key_use = false;
}

fn wait_for_adoption_rows() -> Vec<(Row, Expect)> {
    use Phase::WaitForAdoption as W;
    vec![
        row("adoption: used and the wait is over", W)
            .old_key_use(Use::At(29 * D))
            .new_key_use(Use::At(2 * D))
            .expect(Expect::Advance {
                to: Phase::CheckLastUsed,
                says: "adoption wait of 7d over; new key AKIA…0002 used",
            }),
        row("adoption: the wait is over, never used", W)
            .old_key_use(Use::At(29 * D))
            .new_key_use(Use::Never)
            .expect(Expect::Wait {
                until: None,
                says: "the new key AKIA…0002 to be used (it never has been)",
            }),
        row("adoption: used, the wait not over", W)
            .new_key_use(Use::At(H))
            .old_key_use(Use::At(2 * H))
            .now(2 * D)
            .expect(Expect::Wait {
                until: Some(7 * D),
                says: "the adoption wait of 7d to pass (new key created 2d ago)",
            }),
        row("adoption: neither used nor over", W)
            .new_key_use(Use::Never)
            .now(D)
            .expect(Expect::Wait {
                until: Some(7 * D),
                says: "(it never has been) and the adoption wait",
            }),
        row("adoption: the old key's use is what to watch", W)
            .new_key_use(Use::Never)
            .old_key_use(Use::At(D - H))
            .now(D)
            .expect(Expect::Wait {
                until: Some(7 * D),
                says: "uses AKIA…0001; old key last used 1h ago",
            }),
        row(
            "adoption: right after the create, the old key is not read",
            W,
        )
        .new_key_use(Use::Never)
        .now(M)
        .expect(Expect::Wait {
            until: Some(7 * D),
            says: "to every application that uses AKIA…0001\n",
        }),
        row("adoption: exactly due", W)
            .new_key_use(Use::At(H))
            .now(7 * D)
            .expect(Expect::Advance {
                to: Phase::CheckLastUsed,
                says: "over",
            }),
        row("adoption: require_new_key_use off, never used, over", W)
            .plan(no_new_key_use)
            .new_key_use(Use::Never)
            .expect(Expect::Advance {
                to: Phase::CheckLastUsed,
                says: "not used (require_new_key_use is off)",
            }),
        row("adoption: require_new_key_use off, not over", W)
            .plan(no_new_key_use)
            .new_key_use(Use::Never)
            .now(D)
            .expect(Expect::Wait {
                until: Some(7 * D),
                says: "waiting for the adoption wait of 7d to pass",
            }),
        row("adoption: plan edited to drop new_key", W)
            .plan(|p| p.new_key = None)
            .keys(&[K(OLD, ACTIVE, OLD_CREATED)])
            .new_key_use(Use::Never)
            .expect(Expect::Block(
                "the plan is in wait_for_adoption but records no new_key",
            )),
    ]
}

fn check_last_used_rows() -> Vec<(Row, Expect)> {
    use Phase::CheckLastUsed as C;
    vec![
        row("quiet: never used", C)
            .old_key_use(Use::Never)
            .expect(Expect::Advance {
                to: Phase::SetInactive,
                says: "old key AKIA…0001 quiet: last used never (quiet_period 3d)",
            }),
        row("quiet: used a day ago", C)
            .old_key_use(Use::At(29 * D))
            .expect(Expect::Wait {
                until: Some(32 * D),
                says: "it must be unused for 3d (quiet_period)",
            }),
        row("quiet: the wait names service and region", C)
            .old_key_use(Use::At(29 * D))
            .expect(Expect::Wait {
                until: Some(32 * D),
                says: "by s3 in eu-west-1",
            }),
        row("quiet: used four days ago", C)
            .old_key_use(Use::At(26 * D))
            .expect(Expect::Advance {
                to: Phase::SetInactive,
                says: "quiet: last used 4d ago",
            }),
        row("quiet: exactly the quiet period", C)
            .old_key_use(Use::At(27 * D))
            .expect(Expect::Advance {
                to: Phase::SetInactive,
                says: "quiet",
            }),
        row("quiet: a shorter policy", C)
            .plan(|p| p.policy.quiet_period = "4h".parse().unwrap())
            .old_key_use(Use::At(30 * D - 5 * H))
            .expect(Expect::Advance {
                to: Phase::SetInactive,
                says: "(quiet_period 4h)",
            }),
    ]
}

fn set_inactive_rows() -> Vec<(Row, Expect)> {
    use Phase::SetInactive as S;
    vec![
        row("deactivate: still quiet", S)
            .old_key_use(Use::At(20 * D))
            .expect(deactivate()),
        row("deactivate: never used", S)
            .old_key_use(Use::Never)
            .expect(deactivate()),
        row("deactivate: used again since the check", S)
            .old_key_use(Use::At(30 * D - H))
            .expect(Expect::Advance {
                to: Phase::CheckLastUsed,
                says: "old key AKIA…0001 was used again 1h ago",
            }),
        row("deactivate: interrupted, found inactive", S)
            .keys(&[K(OLD, INACTIVE, OLD_CREATED), K(NEW, ACTIVE, 0)])
            .old_key_use(Use::At(20 * D))
            .expect(deactivate()),
        row("deactivate: interrupted, but used again", S)
            .keys(&[K(OLD, INACTIVE, OLD_CREATED), K(NEW, ACTIVE, 0)])
            .old_key_use(Use::At(30 * D - M))
            .expect(Expect::Advance {
                to: Phase::CheckLastUsed,
                says: "back to checking its last use",
            }),
    ]
}

fn verify_rows() -> Vec<(Row, Expect)> {
    use Phase::Verify as V;
    vec![
        row("verify: quiet, new key used, period over", V)
            .old_key_use(Use::At(5 * D))
            .new_key_use(Use::At(29 * D))
            .expect(Expect::Advance {
                to: Phase::Delete,
                says: "verified: old key AKIA…0001 unused for 7d while inactive",
            }),
        row("verify: old key never used", V)
            .plan(|p| p.old_key.last_used_at_deactivation = None)
            .old_key_use(Use::Never)
            .new_key_use(Use::At(29 * D))
            .expect(Expect::Advance {
                to: Phase::Delete,
                says: "verified",
            }),
        row("verify: old key used after deactivation", V)
            .old_key_use(Use::At(9 * D))
            .new_key_use(Use::At(29 * D))
            .expect(Expect::Block(
                "the old key AKIA…0001 was used 21d ago (2026-11-10T00:00:00Z) by s3 in eu-west-1 after it was set inactive",
            )),
        row("verify: old key used, no baseline recorded", V)
            .plan(|p| p.old_key.last_used_at_deactivation = None)
            .old_key_use(Use::At(4 * D))
            .new_key_use(Use::At(29 * D))
            .expect(Expect::Block("rollback alice` to reactivate it")),
        row("verify: a use after deactivation blocks before the period", V)
            .old_key_use(Use::At(9 * D))
            .new_key_use(Use::Never)
            .now(10 * D)
            .expect(Expect::Block("run --retry-blocked alice` to restart verification")),
        row("verify: new key never used", V)
            .old_key_use(Use::At(5 * D))
            .new_key_use(Use::Never)
            .expect(Expect::Wait {
                until: None,
                says: "waiting for the new key AKIA…0002 to be used",
            }),
        row("verify: new key never used, not required", V)
            .plan(no_new_key_use)
            .old_key_use(Use::At(5 * D))
            .new_key_use(Use::Never)
            .expect(Expect::Advance {
                to: Phase::Delete,
                says: "new key last used never",
            }),
        row("verify: period not over", V)
            .old_key_use(Use::At(5 * D))
            .new_key_use(Use::At(9 * D))
            .now(10 * D)
            .expect(Expect::Wait {
                until: Some(15 * D),
                says: "verifying: old key AKIA…0001 inactive since 2d ago",
            }),
        row("verify: plan edited to drop new_key", V)
            .plan(|p| p.new_key = None)
            .keys(&[K(OLD, INACTIVE, OLD_CREATED)])
            .old_key_use(Use::At(5 * D))
            .expect(Expect::Block("the plan is in verify but records no new_key")),
    ]
}

fn delete_rows() -> Vec<(Row, Expect)> {
    use Phase::Delete as X;
    vec![
        row("delete: old key inactive", X).expect(delete_old()),
        row("delete: old key active again", X)
            .keys(&[K(OLD, ACTIVE, OLD_CREATED), K(NEW, ACTIVE, 0)])
            .expect(Expect::Block(
                "the old key AKIA…0001 is Active in IAM but the plan recorded it inactive",
            )),
    ]
}

fn decide_table() -> Vec<(Row, Expect)> {
    use Phase::*;
    let mut rows = standing_rows();
    for phase in [
        CreateSecondKey,
        WaitForAdoption,
        CheckLastUsed,
        SetInactive,
        Verify,
        Delete,
    ] {
        rows.extend(guard_rows(phase));
    }
    rows.extend(create_rows());
    rows.extend(wait_for_adoption_rows());
    rows.extend(check_last_used_rows());
    rows.extend(set_inactive_rows());
    rows.extend(verify_rows());
    rows.extend(delete_rows());
    rows
}

#[test]
fn decide_every_phase_and_every_guard() {
    let rows = decide_table();
    for (row, expect) in &rows {
        check(row, expect);
    }
    assert!(rows.len() >= 80, "{} rows", rows.len());
}

#[test]
fn decide_is_the_phase_rule_once_the_guards_pass() {
    for (row, _) in decide_table() {
        let (plan, seen) = row.world();
        let expected = match guards(&plan, &seen) {
            Some(guarded) => guarded,
            None => match plan.phase {
                Phase::CreateSecondKey => decide_create(&plan, &seen),
                Phase::WaitForAdoption => decide_wait_for_adoption(&plan, &seen),
                Phase::CheckLastUsed => decide_check_last_used(&plan, &seen),
                Phase::SetInactive => decide_set_inactive(&plan, &seen),
                Phase::Verify => decide_verify(&plan, &seen),
                Phase::Delete => decide_delete(&plan, &seen),
                other => panic!("{}: no phase rule for {other}", row.name),
            },
        };
        assert_eq!(decide(&plan, &seen), expected, "{}", row.name);
    }
}

// ---------------------------------------------------------------------------
// decide_rollback

#[derive(Clone, Copy)]
enum Signer {
    Ops,
    TheUser,
    OtherAccount,
}

struct RollbackRow {
    name: &'static str,
    phase: Phase,
    tweak: fn(&mut Plan),
    keys: Option<Vec<K>>,
    user_gone: bool,
    signer: Signer,
    abort: bool,
    delete_new: bool,
    orphan_use: Use,
}

fn rb(name: &'static str, phase: Phase) -> RollbackRow {
    RollbackRow {
        name,
        phase,
        tweak: |_| {},
        keys: None,
        user_gone: false,
        signer: Signer::Ops,
        abort: true,
        delete_new: false,
        orphan_use: Use::NotRead,
    }
}

/// Plain `rollback`: back to step 2.
fn back(name: &'static str, phase: Phase) -> RollbackRow {
    RollbackRow {
        abort: false,
        ..rb(name, phase)
    }
}

impl RollbackRow {
    fn plan(mut self, tweak: fn(&mut Plan)) -> Self {
        self.tweak = tweak;
        self
    }
    fn keys(mut self, keys: &[K]) -> Self {
        self.keys = Some(keys.to_vec());
        self
    }
    fn user_gone(mut self) -> Self {
        self.user_gone = true;
        self
    }
    fn signer(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }
    fn delete_new(mut self) -> Self {
        self.delete_new = true;
        self
    }
    fn orphan(mut self, used: Use) -> Self {
        self.orphan_use = used;
        self
    }

    fn run(&self) -> Result<Vec<RollbackStep>, Refusal> {
        let mut plan = plan_in(self.phase);
        (self.tweak)(&mut plan);
        let keys = live(&self.keys.clone().unwrap_or_else(|| keys_of(&plan)));
        let caller = match self.signer {
            Signer::Ops => Caller {
                account: ACCOUNT.into(),
                arn: OPS_ARN.into(),
            },
            Signer::TheUser => Caller {
                account: ACCOUNT.into(),
                arn: USER_ARN.into(),
            },
            Signer::OtherAccount => Caller {
                account: OTHER_ACCOUNT.into(),
                arn: "arn:aws:iam::999988887777:user/ops".into(),
            },
        };
        let options = RollbackOptions {
            abort: self.abort,
            delete_new: self.delete_new,
        };
        let orphan_use = self.orphan_use.read();
        decide_rollback(
            &plan,
            (!self.user_gone).then_some(keys.as_slice()),
            &caller,
            options,
            orphan_use.as_ref(),
            at(30 * D),
        )
    }
}

fn reactivate(id: &str) -> RollbackStep {
    RollbackStep::Reactivate { key_id: id.into() }
}

fn note(text: &str) -> RollbackStep {
    RollbackStep::Note { text: text.into() }
}

fn retire(id: &str, deactivate: bool) -> RollbackStep {
    RollbackStep::RetireNew {
        key_id: id.into(),
        deactivate,
    }
}

fn rolled_back(action: &str) -> RollbackStep {
    RollbackStep::Finish(RollbackEnd::RolledBack {
        action: action.into(),
    })
}

fn recorded(action: &str) -> RollbackStep {
    RollbackStep::Finish(RollbackEnd::Record {
        action: action.into(),
    })
}

fn deleted_at_done(p: &mut Plan) {
    p.history.push(HistoryEntry {
        at: at(16 * D),
        from: Phase::Delete,
        to: Phase::Done,
        action: "deleted old key".into(),
        kind: None,
        key_id: None,
        actor: OPS_ARN.into(),
        clock: None,
    });
}

fn orphaned(p: &mut Plan) {
    p.phase = Phase::CreateSecondKey;
    p.new_key = None;
    p.create_intent_at = Some(at(0));
}

fn refusal_rows() -> Vec<(RollbackRow, &'static str)> {
    use Phase::*;
    let old_inactive = K(OLD, INACTIVE, OLD_CREATED);
    vec![
        (
            rb("after delete, with its time", Done).plan(deleted_at_done),
            "cannot roll back alice: the old key AKIA…0001 was deleted at \
             2026-11-17T00:00:00Z, and a deleted access key can never come back. The new key \
             is the user's key now; to replace it, plan a new rotation.",
        ),
        (
            rb("after delete, no history", Done),
            "cannot roll back alice: the old key AKIA…0001 was deleted, and a deleted access \
             key can never come back. The new key is the user's key now; to replace it, plan a \
             new rotation.",
        ),
        (
            rb("after delete, even from another account", Done)
                .signer(Signer::OtherAccount)
                .user_gone(),
            "cannot roll back alice: the old key AKIA…0001 was deleted, and a deleted access \
             key can never come back. The new key is the user's key now; to replace it, plan a \
             new rotation.",
        ),
        (
            rb("wrong account", Verify).signer(Signer::OtherAccount),
            "the credentials in use belong to account 999988887777, but the plan for alice is \
             for account 111122223333. Nothing was changed. Run again with a profile for \
             account 111122223333 (--profile or AWS_PROFILE).",
        ),
        (
            rb("--delete-new as the plan's own user", Verify)
                .signer(Signer::TheUser)
                .delete_new(),
            "refusing --delete-new: you are signed in as alice itself, most likely with the \
             new key, and the old key's secret was replaced by it. Roll back without \
             --delete-new, or run this with another principal's credentials once the old \
             key's secret is back where the applications read it.",
        ),
        (
            // Found by the simulation (seed 129): rolled back, the plan
            // would forget the intent and leave the key in IAM for good.
            rb("interrupted create, without --delete-new", CreateSecondKey)
                .plan(orphaned)
                .keys(&[K(OLD, ACTIVE, OLD_CREATED), K(CANDIDATE, ACTIVE, 0)]),
            "not rolled back: alice's old key is still active, and an interrupted \
             CreateAccessKey left key AKIA…0003 that the plan has not recorded yet. Run \
             `iam-rotate run alice` first (it keeps the key if it was delivered, deletes it if \
             it provably was not, or blocks naming it), or `iam-rotate rollback --abort \
             --delete-new alice` to end the rotation without it.",
        ),
        (
            rb("user gone", Verify).user_gone(),
            "cannot roll back alice: the user no longer exists in account 111122223333",
        ),
        (
            rb("old key gone", Verify).keys(&[K(NEW, ACTIVE, 0)]),
            "cannot roll back alice: the old key AKIA…0001 no longer exists in IAM (deleted \
             outside iam-rotate). The remaining key is the user's key now.",
        ),
        (
            rb("--delete-new after rollback, old key inactive", RolledBack)
                .keys(&[old_inactive, K(NEW, ACTIVE, 0)])
                .delete_new(),
            "cannot delete alice's new key: the old key AKIA…0001 is not Active any more, and \
             the user would be left without a working key. Reactivate the old key first (`aws \
             iam update-access-key --user-name alice --access-key-id AKIAOLDKEY0000000001 \
             --status Active`), then run this again.",
        ),
        (
            rb("--delete-new after rollback, old key gone", RolledBack)
                .keys(&[K(NEW, ACTIVE, 0)])
                .delete_new(),
            "cannot delete alice's new key: the old key AKIA…0001 is not Active any more",
        ),
    ]
}

#[test]
fn decide_rollback_refusals() {
    for (row, message) in refusal_rows() {
        let refusal = match row.run() {
            Err(refusal) => refusal,
            Ok(steps) => panic!("{}: got {steps:?}", row.name),
        };
        let text = refusal.to_string();
        assert!(text.starts_with(message), "{}: {text}", row.name);
    }
}

fn step_rows() -> Vec<(RollbackRow, Vec<RollbackStep>)> {
    use Phase::*;
    let old_active = K(OLD, ACTIVE, OLD_CREATED);
    let old_inactive = K(OLD, INACTIVE, OLD_CREATED);
    let in_window = K(CANDIDATE, ACTIVE, 10);
    let still_active = "old key AKIA…0001 was still active";
    vec![
        (
            rb("verify: reactivate the old key", Verify),
            vec![
                reactivate(OLD),
                rolled_back("rollback: reactivated old key AKIA…0001"),
            ],
        ),
        (
            rb("adoption: the old key is still active", WaitForAdoption),
            vec![
                note(still_active),
                rolled_back("rollback: old key AKIA…0001 was still active"),
            ],
        ),
        (
            rb("the plan's own user may roll back", Delete).signer(Signer::TheUser),
            vec![
                reactivate(OLD),
                rolled_back("rollback: reactivated old key AKIA…0001"),
            ],
        ),
        (
            rb("blocked in verify", Blocked).plan(|p| {
                p.blocked_in = Some(Phase::Verify);
                p.old_key.status = KeyStatus::Inactive;
            }),
            vec![
                reactivate(OLD),
                rolled_back("rollback: reactivated old key AKIA…0001"),
            ],
        ),
        (
            rb("verify, --delete-new", Verify).delete_new(),
            vec![
                reactivate(OLD),
                retire(NEW, true),
                rolled_back("rollback: reactivated old key AKIA…0001; deleted new key AKIA…0002"),
            ],
        ),
        (
            rb("--delete-new, the new key already inactive", CheckLastUsed)
                .keys(&[old_active, K(NEW, INACTIVE, 0)])
                .delete_new(),
            vec![
                note(still_active),
                retire(NEW, false),
                rolled_back(
                    "rollback: old key AKIA…0001 was still active; deleted new key AKIA…0002",
                ),
            ],
        ),
        (
            rb("--delete-new, the new key already gone", Verify)
                .keys(&[old_inactive])
                .delete_new(),
            vec![
                reactivate(OLD),
                rolled_back("rollback: reactivated old key AKIA…0001"),
            ],
        ),
        (
            rb(
                "--delete-new never takes an unknown key for the new one",
                Verify,
            )
            .keys(&[old_inactive, K(OTHER, ACTIVE, 0)])
            .delete_new(),
            vec![
                reactivate(OLD),
                rolled_back("rollback: reactivated old key AKIA…0001"),
            ],
        ),
        (
            rb("rolled back: nothing to do", RolledBack),
            vec![RollbackStep::Finish(RollbackEnd::Unchanged)],
        ),
        (
            rb("rolled back, then --delete-new", RolledBack).delete_new(),
            vec![retire(NEW, true), recorded("deleted new key AKIA…0002")],
        ),
        (
            rb("rolled back, --delete-new, new key gone", RolledBack)
                .keys(&[old_active])
                .delete_new(),
            vec![RollbackStep::Finish(RollbackEnd::Unchanged)],
        ),
        (
            rb("interrupted create: provably ours", CreateSecondKey)
                .plan(orphaned)
                .keys(&[old_active, in_window])
                .orphan(Use::Never)
                .delete_new(),
            vec![
                note(still_active),
                retire(CANDIDATE, true),
                rolled_back(
                    "rollback: old key AKIA…0001 was still active; deleted new key AKIA…0003",
                ),
            ],
        ),
    ]
}

/// Rows whose candidate is kept: the note's words.
fn kept_rows() -> Vec<(RollbackRow, &'static str)> {
    use Phase::CreateSecondKey as C;
    let old_active = K(OLD, ACTIVE, OLD_CREATED);
    let in_window = K(CANDIDATE, ACTIVE, 10);
    vec![
        (
            rb("interrupted create: the candidate was used", C)
                .plan(orphaned)
                .keys(&[old_active, in_window])
                .orphan(Use::At(29 * D))
                .delete_new(),
            "kept key AKIA…0003 (Active, created 2026-11-01T00:00:10Z, last used 24h ago \
             (2026-11-30T00:00:00Z) by s3 in eu-west-1): it is not provably this plan's (it \
             was created in the window of that call, but it has been used",
        ),
        (
            rb("interrupted create: the candidate's use not read", C)
                .plan(orphaned)
                .keys(&[old_active, in_window])
                .delete_new(),
            "kept key AKIA…0003 (Active, created 2026-11-01T00:00:10Z, last use unknown): it \
             is not provably this plan's (its last use could not be read); delete it yourself \
             if it is not needed",
        ),
        (
            rb("interrupted create: the candidate predates the intent", C)
                .plan(orphaned)
                .keys(&[old_active, K(CANDIDATE, INACTIVE, -D)])
                .orphan(Use::Never)
                .delete_new(),
            "kept key AKIA…0003 (Inactive, created 2026-10-31T00:00:00Z, never used): it is \
             not provably this plan's (it was created 2026-10-31T00:00:00Z, before the window",
        ),
    ]
}

fn restarted(done: &str) -> RollbackStep {
    RollbackStep::Finish(RollbackEnd::Restart {
        action: format!(
            "rollback (step 5 → 2): {done}; new key kept; back to wait_for_adoption, clocks \
             restarted"
        ),
    })
}

/// Plain `rollback` (the guide's step 5 → step 2): which phases go back to
/// `wait_for_adoption`, and which have nothing to undo.
fn back_rows() -> Vec<(RollbackRow, Result<Vec<RollbackStep>, &'static str>)> {
    use Phase::*;
    let old_active = K(OLD, ACTIVE, OLD_CREATED);
    let reactivated = "reactivated old key AKIA…0001";
    let still = "old key AKIA…0001 was still active";
    vec![
        (
            back("verify: reactivate, keep the new key", Verify),
            Ok(vec![reactivate(OLD), restarted(reactivated)]),
        ),
        (
            back("delete not yet done: reactivate", Delete),
            Ok(vec![reactivate(OLD), restarted(reactivated)]),
        ),
        (
            back("set_inactive: the old key was not deactivated yet", SetInactive),
            Ok(vec![note(still), restarted(still)]),
        ),
        (
            back("blocked in verify: reactivate", Blocked).plan(|p| {
                p.blocked_in = Some(Phase::Verify);
                p.old_key.status = KeyStatus::Inactive;
            }),
            Ok(vec![reactivate(OLD), restarted(reactivated)]),
        ),
        (
            back("wait_for_adoption: nothing to undo", WaitForAdoption),
            Err("the old key AKIA…0001 is still active (alice's rotation is in wait_for_adoption)"),
        ),
        (
            back("check_last_used: nothing to undo", CheckLastUsed),
            Err("the old key AKIA…0001 is still active (alice's rotation is in check_last_used)"),
        ),
        (
            back("create_second_key: nothing to undo", CreateSecondKey),
            Err("the rotation of alice has not created its new key yet"),
        ),
        (
            back("wait_for_adoption, old key deactivated by hand", WaitForAdoption)
                .keys(&[K(OLD, INACTIVE, OLD_CREATED), K(NEW, ACTIVE, 0)]),
            Ok(vec![reactivate(OLD), restarted(reactivated)]),
        ),
        (
            back("blocked before any new key", Blocked).plan(|p| {
                p.blocked_in = Some(Phase::CreateSecondKey);
                p.new_key = None;
            }),
            Err("cannot send alice's rotation back to wait for adoption: the plan records no new key"),
        ),
        (
            back("an unanswered create's key is settled by run first", CreateSecondKey)
                .plan(orphaned)
                .keys(&[old_active, K(CANDIDATE, ACTIVE, 0)]),
            Err("not rolled back: alice's old key is still active, and an interrupted \
                 CreateAccessKey left key AKIA…0003"),
        ),
        (
            back("old key gone", Verify).keys(&[K(NEW, ACTIVE, 0)]),
            Err("cannot roll back alice: the old key AKIA…0001 no longer exists"),
        ),
        (
            back("rolled back: unchanged", RolledBack).keys(&[old_active]),
            Ok(vec![RollbackStep::Finish(RollbackEnd::Unchanged)]),
        ),
    ]
}

#[test]
fn rollback_without_abort_goes_back_to_step_2() {
    for (row, expected) in back_rows() {
        let got = row.run();
        match (got, expected) {
            (Ok(steps), Ok(expected)) => assert_eq!(steps, expected, "{}", row.name),
            (Ok(steps), Err(words)) => match steps.as_slice() {
                [RollbackStep::Finish(RollbackEnd::NothingToUndo { why })] => {
                    assert!(why.starts_with(words), "{}: {why}", row.name)
                }
                _ => panic!("{}: got {steps:?}", row.name),
            },
            (Err(refusal), Err(words)) => {
                let text = refusal.to_string();
                assert!(text.starts_with(words), "{}: {text}", row.name);
            }
            (Err(refusal), Ok(_)) => panic!("{}: refused: {refusal}", row.name),
        }
    }
}

#[test]
fn decide_rollback_steps() {
    for (row, expected) in step_rows() {
        match row.run() {
            Ok(steps) => assert_eq!(steps, expected, "{}", row.name),
            Err(refusal) => panic!("{}: refused: {refusal}", row.name),
        }
    }
    for (row, words) in kept_rows() {
        let steps = match row.run() {
            Ok(steps) => steps,
            Err(refusal) => panic!("{}: refused: {refusal}", row.name),
        };
        let [RollbackStep::Note { text: still }, RollbackStep::Note { text: kept }, RollbackStep::Finish(RollbackEnd::RolledBack { action })] =
            steps.as_slice()
        else {
            panic!("{}: got {steps:?}", row.name);
        };
        assert_eq!(still, "old key AKIA…0001 was still active", "{}", row.name);
        assert!(kept.starts_with(words), "{}: {kept}", row.name);
        assert_eq!(
            *action,
            format!("rollback: {still}; {kept}"),
            "{}",
            row.name
        );
    }
}

#[test]
fn rollback_reads_the_last_use_only_of_a_candidate_it_may_delete() {
    let mut plan = plan_in(Phase::CreateSecondKey);
    orphaned(&mut plan);
    let keys = live(&[K(OLD, ACTIVE, OLD_CREATED), K(CANDIDATE, ACTIVE, 10)]);
    let delete_new = RollbackOptions {
        abort: true,
        delete_new: true,
    };
    let keep_new = RollbackOptions {
        abort: true,
        delete_new: false,
    };
    let found = rollback_orphan_candidate(&plan, &keys, delete_new).map(|k| k.id.as_str());
    assert_eq!(found, Some(CANDIDATE));
    assert_eq!(rollback_orphan_candidate(&plan, &keys, keep_new), None);
    let recorded = plan_in(Phase::WaitForAdoption);
    assert_eq!(
        rollback_orphan_candidate(&recorded, &keys, delete_new),
        None
    );
    plan.create_intent_at = None;
    assert_eq!(rollback_orphan_candidate(&plan, &keys, delete_new), None);
}

// ---------------------------------------------------------------------------
// find_orphan

enum Found {
    NoCandidate,
    Ours(&'static str),
    NotOurs(&'static str),
}

#[test]
fn find_orphan_inside_and_outside_the_window() {
    let intent = at(0);
    let (start, end) = orphan_window(intent);
    assert_eq!(start, at(-60));
    assert_eq!(end, at(90));
    let old = K(OLD, ACTIVE, OLD_CREATED);
    let known_old: &'static [&'static str] = &[OLD];
    let known_both: &'static [&'static str] = &[OLD, NEW];
    type OrphanRow = (
        &'static str,
        Option<i64>,
        Vec<K>,
        &'static [&'static str],
        Use,
        Found,
    );
    let rows: Vec<OrphanRow> =
        vec![
        (
            "no intent",
            None,
            vec![old, K(CANDIDATE, ACTIVE, 10)],
            known_old,
            Use::Never,
            Found::NoCandidate,
        ),
        ("only known keys", Some(0), vec![old], known_old, Use::Never, Found::NoCandidate),
        (
            "in the window, never used",
            Some(0),
            vec![old, K(CANDIDATE, ACTIVE, 10)],
            known_old,
            Use::Never,
            Found::Ours(CANDIDATE),
        ),
        (
            "at the window's start",
            Some(0),
            vec![old, K(CANDIDATE, ACTIVE, -60)],
            known_old,
            Use::Never,
            Found::Ours(CANDIDATE),
        ),
        (
            "at the window's end",
            Some(0),
            vec![old, K(CANDIDATE, INACTIVE, 90)],
            known_old,
            Use::Never,
            Found::Ours(CANDIDATE),
        ),
        (
            "a second before the window",
            Some(0),
            vec![old, K(CANDIDATE, ACTIVE, -61)],
            known_old,
            Use::Never,
            Found::NotOurs("2026-10-31T23:58:59Z, before the window"),
        ),
        (
            "a second after the window",
            Some(0),
            vec![old, K(CANDIDATE, ACTIVE, 91)],
            known_old,
            Use::Never,
            Found::NotOurs(
                "after the window in which this plan's interrupted CreateAccessKey can have made \
                 its key: 2026-10-31T23:59:00Z to 2026-11-01T00:01:30Z (the intent saved \
                 2026-11-01T00:00:00Z, the call's 30s timeout, and 60s of clock skew either side)",
            ),
        ),
        (
            "in the window, used",
            Some(0),
            vec![old, K(CANDIDATE, ACTIVE, 10)],
            known_old,
            Use::At(20),
            Found::NotOurs("but it has been used (last 2026-11-01T00:00:20Z)"),
        ),
        (
            "in the window, use not read",
            Some(0),
            vec![old, K(CANDIDATE, ACTIVE, 10)],
            known_old,
            Use::NotRead,
            Found::NotOurs("its last use could not be read"),
        ),
        (
            "outside the window, use not read",
            Some(0),
            vec![old, K(CANDIDATE, ACTIVE, 2 * D)],
            known_old,
            Use::NotRead,
            Found::NotOurs("after the window"),
        ),
        (
            "more than one candidate",
            Some(0),
            vec![old, K(CANDIDATE, ACTIVE, 10), K(OTHER, ACTIVE, 20)],
            known_old,
            Use::Never,
            Found::NoCandidate,
        ),
        (
            "every key it knows is left out",
            Some(0),
            vec![old, K(NEW, ACTIVE, -D), K(CANDIDATE, ACTIVE, 10)],
            known_both,
            Use::Never,
            Found::Ours(CANDIDATE),
        ),
    ];
    for (name, intent, keys, known, used, found) in rows {
        let keys = live(&keys);
        let used = used.read();
        let orphan = find_orphan(intent.map(at), &keys, known, used.as_ref());
        match (&found, &orphan) {
            (Found::NoCandidate, Orphan::NoCandidate) => {}
            (Found::Ours(id), Orphan::Ours(key)) => assert_eq!(key.id, *id, "{name}"),
            (Found::NotOurs(words), Orphan::NotProvablyOurs { key, why }) => {
                assert_eq!(key.id, CANDIDATE, "{name}");
                assert!(why.contains(words), "{name}: {why}");
            }
            _ => panic!("{name}: got {orphan:?}"),
        }
        // The plan-based lookup finds the same candidate.
        let mut plan = plan_in(Phase::CreateSecondKey);
        plan.create_intent_at = intent.map(at);
        if known.len() == 1 {
            let candidate = orphan_candidate(&plan, &keys).map(|k| k.id.as_str());
            let expected = match &orphan {
                Orphan::NoCandidate => None,
                Orphan::Ours(key) | Orphan::NotProvablyOurs { key, .. } => Some(key.id.as_str()),
            };
            assert_eq!(candidate, expected, "{name}");
        }
    }
}

// ---------------------------------------------------------------------------
// run --retry-blocked

#[test]
fn retry_blocked_unblocks_only_for_the_plan_s_account() {
    let ops = Caller {
        account: ACCOUNT.into(),
        arn: OPS_ARN.into(),
    };
    let other = Caller {
        account: OTHER_ACCOUNT.into(),
        arn: "arn:aws:iam::999988887777:user/ops".into(),
    };
    let blocked_in = |phase: Phase| {
        let mut plan = plan_in(phase);
        plan.phase = Phase::Blocked;
        plan.blocked_in = Some(phase);
        plan.blocked_reason = Some("drift".into());
        plan
    };
    let unblock = |restart_verification| Retry::Unblock {
        restart_verification,
    };
    let rows: Vec<(&str, Plan, &Caller, bool, Retry)> = vec![
        (
            "not asked",
            blocked_in(Phase::Verify),
            &ops,
            false,
            Retry::AsItIs,
        ),
        (
            "not blocked",
            plan_in(Phase::Verify),
            &ops,
            true,
            Retry::AsItIs,
        ),
        (
            "blocked in verify",
            blocked_in(Phase::Verify),
            &ops,
            true,
            unblock(true),
        ),
        (
            "blocked in adoption",
            blocked_in(Phase::WaitForAdoption),
            &ops,
            true,
            unblock(false),
        ),
        (
            "blocked in create",
            blocked_in(Phase::CreateSecondKey),
            &ops,
            true,
            unblock(false),
        ),
        (
            "another account",
            blocked_in(Phase::Verify),
            &other,
            true,
            Retry::WrongAccount {
                reason: "the credentials in use belong to account 999988887777, but the plan \
                         for alice is for account 111122223333. Nothing was changed. Run again \
                         with a profile for account 111122223333 (--profile or AWS_PROFILE)."
                    .into(),
            },
        ),
        (
            "another account, not asked",
            blocked_in(Phase::Verify),
            &other,
            false,
            Retry::AsItIs,
        ),
    ];
    for (name, plan, caller, asked, expected) in rows {
        assert_eq!(decide_retry(&plan, caller, asked), expected, "{name}");
    }
}

#[test]
fn a_restarted_verification_takes_the_last_use_as_its_baseline() {
    let (plan, mut seen) = row("restart", Phase::Verify)
        .old_key_use(Use::At(9 * D))
        .world();
    assert_eq!(plan.phase, Phase::Verify);
    let (baseline, action) = verification_restart(&seen);
    assert_eq!(baseline, Some(at(9 * D)));
    assert_eq!(
        action,
        "verification restarted; old key's last use 2026-11-10T00:00:00Z taken as the new baseline"
    );
    seen.old_use = Use::Never.read();
    let (baseline, action) = verification_restart(&seen);
    assert_eq!(baseline, None);
    assert!(action.contains("last use (never) taken"), "{action}");
}

// ---------------------------------------------------------------------------
// self-rotation

#[test]
fn self_rotation_policy_is_the_documented_one() {
    let policy = self_policy();
    assert_eq!(policy.adoption_wait.to_string(), "0s");
    assert_eq!(policy.quiet_period.to_string(), "0s");
    assert_eq!(policy.verify_period.to_string(), "1d");
    assert!(policy.require_new_key_use);
    assert!(policy.allow_short_quiet_period);
}

#[test]
fn self_rotation_waits_only_for_what_the_bound_reaches() {
    use std::time::Duration as Wait;
    let now = at(0);
    let two_minutes = Wait::from_secs(120);
    type WaitRow = (&'static str, Phase, Option<i64>, Wait, Option<Wait>);
    let rows: Vec<WaitRow> = vec![
        (
            "first use not recorded yet",
            Phase::WaitForAdoption,
            None,
            two_minutes,
            Some(POLL),
        ),
        (
            "due within the bound",
            Phase::CheckLastUsed,
            Some(30),
            two_minutes,
            Some(POLL),
        ),
        (
            "due exactly at the bound",
            Phase::CheckLastUsed,
            Some(120),
            two_minutes,
            Some(POLL),
        ),
        (
            "due past the bound",
            Phase::CheckLastUsed,
            Some(121),
            two_minutes,
            None,
        ),
        (
            "a seven-day adoption wait",
            Phase::WaitForAdoption,
            Some(7 * D),
            two_minutes,
            None,
        ),
        (
            "verify is never waited out",
            Phase::Verify,
            None,
            two_minutes,
            None,
        ),
        (
            "set_inactive is not a wait",
            Phase::SetInactive,
            None,
            two_minutes,
            None,
        ),
        (
            "the bound is over",
            Phase::WaitForAdoption,
            None,
            Wait::ZERO,
            None,
        ),
        (
            "less than a poll left",
            Phase::WaitForAdoption,
            None,
            Wait::from_secs(1),
            Some(Wait::from_secs(1)),
        ),
        (
            "already due",
            Phase::CheckLastUsed,
            Some(-30),
            two_minutes,
            Some(POLL),
        ),
    ];
    for (name, phase, until, left, expected) in rows {
        let got = worth_waiting(phase, until.map(at), now, left);
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn self_rotation_signs_with_the_key_the_plan_expects() {
    use std::path::Path;
    let path = Path::new("/plans/111122223333/alice.yaml");
    let blocked_in_adoption = |p: &mut Plan| {
        p.phase = Phase::Blocked;
        p.blocked_in = Some(Phase::WaitForAdoption);
    };
    let no_new_key = |p: &mut Plan| p.new_key = None;
    type KeyRow = (
        &'static str,
        Phase,
        fn(&mut Plan),
        &'static str,
        Option<&'static str>,
    );
    let rows: Vec<KeyRow> = vec![
        (
            "create: the old key",
            Phase::CreateSecondKey,
            |_| {},
            OLD,
            None,
        ),
        (
            "create: another key",
            Phase::CreateSecondKey,
            |_| {},
            OTHER,
            Some(
                "profile [ci] signs with the key AKIA…0004, but the plan \
                 /plans/111122223333/alice.yaml expects AKIA…0001. Check the profile, or move \
                 the plan away if it is stale",
            ),
        ),
        (
            "adoption: the new key",
            Phase::WaitForAdoption,
            |_| {},
            NEW,
            None,
        ),
        (
            "adoption: the old key again",
            Phase::WaitForAdoption,
            |_| {},
            OLD,
            Some(
                "profile [ci] holds the old key AKIA…0001 again, but this self-rotation already \
                 created the new key AKIA…0002 and wrote it there; its secret is no longer in \
                 the profile. Undo the rotation with `iam-rotate rollback alice --delete-new`, \
                 then self-rotate anew",
            ),
        ),
        (
            "verify: another key",
            Phase::Verify,
            |_| {},
            OTHER,
            Some("expects AKIA…0002"),
        ),
        (
            "blocked in adoption: the new key",
            Phase::WaitForAdoption,
            blocked_in_adoption,
            NEW,
            None,
        ),
        (
            "blocked in adoption: the old key",
            Phase::WaitForAdoption,
            blocked_in_adoption,
            OLD,
            Some("holds the old key AKIA…0001 again"),
        ),
        ("done: any key", Phase::Done, |_| {}, OTHER, None),
        ("rolled back: any key", Phase::RolledBack, |_| {}, OLD, None),
        (
            "no new key recorded: nothing to expect",
            Phase::CheckLastUsed,
            no_new_key,
            OTHER,
            None,
        ),
    ];
    for (name, phase, tweak, in_use, refused) in rows {
        let mut plan = plan_in(phase);
        tweak(&mut plan);
        let result = check_plan_key(&plan, in_use, "ci", path);
        match (refused, result) {
            (None, Ok(())) => {}
            (Some(words), Err(refusal)) => {
                let text = refusal.to_string();
                assert!(text.contains(words), "{name}: {text}");
                let again = matches!(refusal, KeyMismatch::OldKeyAgain { .. });
                assert_eq!(again, in_use == OLD, "{name}");
            }
            (_, got) => panic!("{name}: got {got:?}"),
        }
        if refused.is_none() && !phase.is_finished() {
            assert!(expected_key(&plan).is_none_or(|id| id == in_use), "{name}");
        }
    }
}

#[test]
fn self_rotation_baseline_is_the_moment_of_deactivation() {
    let mut plan = plan_in(Phase::Verify);
    let deactivated = at(8 * D);
    plan.old_key.last_used_at_deactivation = None;
    assert_eq!(deactivation_baseline(&plan, deactivated), Some(deactivated));
    plan.old_key.last_used_at_deactivation = Some(deactivated - Duration::seconds(5));
    assert_eq!(deactivation_baseline(&plan, deactivated), Some(deactivated));
    plan.old_key.last_used_at_deactivation = Some(deactivated);
    assert_eq!(deactivation_baseline(&plan, deactivated), None);
    plan.old_key.last_used_at_deactivation = Some(deactivated + Duration::seconds(5));
    assert_eq!(deactivation_baseline(&plan, deactivated), None);
}

#[test]
fn masked_ids_in_the_tables_are_the_keys_masks() {
    assert_eq!(mask_key(OLD), "AKIA…0001");
    assert_eq!(mask_key(NEW), "AKIA…0002");
    assert_eq!(mask_key(CANDIDATE), "AKIA…0003");
    assert_eq!(mask_key(OTHER), "AKIA…0004");
}
