//! The plan file: one YAML document per user, the whole state of that user's
//! rotation. Field names are a contract with tools outside this crate.

use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::policy::Policy;

/// A key's status lives with the [`crate::iam::Iam`] trait that takes it;
/// a plan records it.
pub use crate::iam::KeyStatus;

/// How many last-used samples a plan keeps; older ones are dropped.
pub const MAX_OBSERVATIONS: usize = 20;

/// The only plan format this build reads and writes.
pub const PLAN_VERSION: u64 = 1;

/// The next step of a rotation. `phase:` in a plan always names the step to
/// take next, never the one just taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    CreateSecondKey,
    WaitForAdoption,
    CheckLastUsed,
    SetInactive,
    Verify,
    Delete,
    Done,
    RolledBack,
    Blocked,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::CreateSecondKey => "create_second_key",
            Phase::WaitForAdoption => "wait_for_adoption",
            Phase::CheckLastUsed => "check_last_used",
            Phase::SetInactive => "set_inactive",
            Phase::Verify => "verify",
            Phase::Delete => "delete",
            Phase::Done => "done",
            Phase::RolledBack => "rolled_back",
            Phase::Blocked => "blocked",
        }
    }

    /// A finished plan is never advanced again.
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Done | Phase::RolledBack)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which command made a plan, and so which command may drive it.
/// `self-rotate` resumes only its own plans; a plan written by `plan` is
/// never taken over by it (its policy waits days where self-rotate waits
/// seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Written by `plan`: the guide's rotation, with its waits.
    #[default]
    Plan,
    /// Written by `self-rotate` for the caller's own key.
    SelfRotate,
}

impl PlanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::Plan => "plan",
            PlanKind::SelfRotate => "self_rotate",
        }
    }
}

impl fmt::Display for PlanKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `version: 1`, and nothing else: a plan written by a newer format is
/// refused rather than half-understood.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanVersion;

impl Serialize for PlanVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(PLAN_VERSION)
    }
}

impl<'de> Deserialize<'de> for PlanVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let version = u64::deserialize(deserializer)?;
        if version == PLAN_VERSION {
            Ok(PlanVersion)
        } else {
            Err(serde::de::Error::custom(format!(
                "unsupported plan version {version}: this iam-rotate reads version \
                 {PLAN_VERSION}; use the iam-rotate release that wrote this plan"
            )))
        }
    }
}

impl JsonSchema for PlanVersion {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PlanVersion".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The plan format: 1, the only one this iam-rotate reads and writes.",
            "type": "integer",
            "const": PLAN_VERSION,
        })
    }
}

/// The key being retired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OldKey {
    /// Its access key id (not a secret).
    pub id: String,
    /// When IAM created it.
    pub created_at: DateTime<Utc>,
    /// The status iam-rotate last set or saw; a live key that differs is drift.
    pub status: KeyStatus,
    /// When `set_inactive` made it inactive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Its last use as IAM reported it when verification started; any later
    /// use means something still holds this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at_deactivation: Option<DateTime<Utc>>,
}

/// The key that replaces it, once created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// Its access key id (not a secret).
    pub id: String,
    /// When IAM created it.
    pub created_at: DateTime<Utc>,
    /// When `rollback --abort --delete-new` deleted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One last-used sample of both keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    pub at: DateTime<Utc>,
    pub old_last_used: Option<DateTime<Utc>>,
    pub old_service: Option<String>,
    pub old_region: Option<String>,
    pub new_last_used: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_region: Option<String>,
}

/// One entry of the append-only audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub from: Phase,
    pub to: Phase,
    pub action: String,
    /// What kind of action it was, for programs (absent in entries written
    /// before kinds were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ActionKind>,
    /// The access key the action was about, in full (an access key id is
    /// not a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The ARN of the caller that made the change.
    pub actor: String,
    /// Set when the change was made under `IAM_ROTATE_NOW`, with the real time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
}

/// The kind of a history entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// The plan was written (or replaced a finished one).
    Planned,
    /// CreateAccessKey, and the secret delivered.
    CreatedKey,
    /// A key found at the destination after an interrupted create, kept.
    AdoptedDeliveredKey,
    /// A key provably left by an interrupted create, deleted.
    DeletedOrphan,
    /// Delivery failed; the new key was deleted again (or will be).
    DeliveryFailed,
    /// A phase change that wrote nothing to AWS.
    Advanced,
    /// UpdateAccessKey(old key, Inactive).
    DeactivatedOldKey,
    /// DeleteAccessKey(old key).
    DeletedOldKey,
    /// The plan stopped for a person.
    Blocked,
    /// `run --retry-blocked` sent a blocked plan back.
    Unblocked,
    /// `rollback`: the old key Active again, back to wait_for_adoption.
    Restarted,
    /// `rollback --abort`: the rotation ended.
    RolledBack,
    /// `rollback --abort --delete-new` deleted the new key.
    DeletedNewKey,
    /// Anything else worth recording.
    Note,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Planned => "planned",
            ActionKind::CreatedKey => "created_key",
            ActionKind::AdoptedDeliveredKey => "adopted_delivered_key",
            ActionKind::DeletedOrphan => "deleted_orphan",
            ActionKind::DeliveryFailed => "delivery_failed",
            ActionKind::Advanced => "advanced",
            ActionKind::DeactivatedOldKey => "deactivated_old_key",
            ActionKind::DeletedOldKey => "deleted_old_key",
            ActionKind::Blocked => "blocked",
            ActionKind::Unblocked => "unblocked",
            ActionKind::Restarted => "restarted",
            ActionKind::RolledBack => "rolled_back",
            ActionKind::DeletedNewKey => "deleted_new_key",
            ActionKind::Note => "note",
        }
    }
}

/// What a history entry records: its words, its kind and its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub key_id: Option<String>,
    pub text: String,
}

impl Action {
    pub fn new(kind: ActionKind, key_id: Option<&str>, text: impl Into<String>) -> Action {
        Action {
            kind,
            key_id: key_id.map(str::to_string),
            text: text.into(),
        }
    }
}

/// Plain words are a [`ActionKind::Note`].
impl From<String> for Action {
    fn from(text: String) -> Action {
        Action::new(ActionKind::Note, None, text)
    }
}

impl From<&str> for Action {
    fn from(text: &str) -> Action {
        Action::new(ActionKind::Note, None, text)
    }
}

/// Something about a plan a person should hear of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeEvent {
    /// The plan became blocked: a person must act.
    Blocked,
    /// The plan has waited longer than its policy allows (at most one
    /// notice a day).
    Overdue,
    /// A run failed on the plan with a new error.
    Failed,
    /// `rollback` reactivated the old key or ended the rotation.
    RolledBack,
    /// The rotation finished: the old key is deleted.
    Done,
}

impl NoticeEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeEvent::Blocked => "blocked",
            NoticeEvent::Overdue => "overdue",
            NoticeEvent::Failed => "failed",
            NoticeEvent::RolledBack => "rolled_back",
            NoticeEvent::Done => "done",
        }
    }
}

impl fmt::Display for NoticeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notice that some target has not accepted yet; the next run sends it
/// again, as it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingNotice {
    pub event: NoticeEvent,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The plan's phase then.
    pub phase: Phase,
    /// What happened and what to do.
    pub reason: String,
    /// The command to run next, as it was then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_command: Option<String>,
    /// The targets still to reach: an SNS topic's `sns:ARN`, or a webhook's
    /// scheme, host and fingerprint (never its full URL).
    pub to: Vec<String>,
}

/// The last notice every target accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SentNotice {
    pub event: NoticeEvent,
    pub at: DateTime<Utc>,
}

/// What people were told about a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// When an `overdue` notice was last made; the next waits a day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overdue_sent_at: Option<DateTime<Utc>>,
    /// The last notice every target accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent: Option<SentNotice>,
    /// Notices not yet accepted everywhere, oldest first, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingNotice>,
}

impl Notifications {
    pub fn is_empty(&self) -> bool {
        *self == Notifications::default()
    }
}

/// The whole state of one user's rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "iam-rotate plan",
    description = "One IAM user's access key rotation: <plans-dir>/<account>/<user>.yaml. \
                   Written by iam-rotate; see plans/README.md for each field."
)]
pub struct Plan {
    /// The plan format; only 1 exists.
    pub version: PlanVersion,
    /// The command that made the plan; absent in plans written before it
    /// was recorded, which were all made by `plan`.
    #[serde(default)]
    pub kind: PlanKind,
    /// The 12-digit AWS account the user is in; also the plan's folder name.
    #[schemars(pattern(r"^[0-9]{12}$"))]
    pub account: String,
    /// The IAM user name; also the plan's file name (without `.yaml`).
    #[schemars(pattern(r"^[A-Za-z0-9+=,.@_-]{1,64}$"))]
    pub user: String,
    /// The user's ARN: arn:aws:iam::<account>:user/<path><user>.
    #[schemars(pattern(r"^arn:aws[a-z-]*:iam::[0-9]{12}:user/"))]
    pub user_arn: String,
    /// Where the new secret goes, for example `file:/path.csv`.
    pub delivery: String,
    /// For a `profile:` delivery: the shared credentials file it names,
    /// pinned when planned so that a run in another environment writes
    /// where the plan says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<std::path::PathBuf>,
    /// `plan --notify`: where this plan's notices go (`sns:TOPIC_ARN`,
    /// `webhook:URL`), for the user's owners, besides the runner's own
    /// `--notify` targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// The waits this rotation keeps.
    pub policy: Policy,
    /// The key being retired.
    pub old_key: OldKey,
    /// The replacement, once created; absent before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key: Option<NewKey>,
    /// The next step to take.
    pub phase: Phase,
    /// Since when the plan has been in `phase`.
    pub phase_since: DateTime<Utc>,
    /// Set (atomically, on disk) just before CreateAccessKey is called, and
    /// cleared once the new key is recorded: a plan found with an intent and
    /// no new key may have an orphan key in IAM.
    #[serde(default)]
    pub create_intent_at: Option<DateTime<Utc>>,
    /// When `rollback` last sent the rotation back to `wait_for_adoption`
    /// (the guide's step 5 → step 2): the adoption wait and the quiet period
    /// count from it, since the old key was in use again until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<DateTime<Utc>>,
    /// With `phase: blocked`: the phase the plan stopped in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_in: Option<Phase>,
    /// With `phase: blocked`: what was found and what a person must do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    /// The last error a run met on this plan, kept until a run succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// What people were told about this plan, and what is still to be told.
    #[serde(default, skip_serializing_if = "Notifications::is_empty")]
    pub notifications: Notifications,
    /// Last-used samples taken by each run, newest last, at most 20.
    #[serde(default)]
    pub observations: Vec<Observation>,
    /// Every change made to the plan, oldest first: the audit trail.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// Who made a change and on which clock: stamped on every history entry.
#[derive(Clone, Debug)]
pub struct Stamp {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub clock: Option<String>,
}

impl Stamp {
    /// Now on `clock`, by `caller`.
    pub fn new(clock: &dyn crate::clock::Clock, caller: &crate::iam::Caller) -> Stamp {
        Stamp {
            at: clock.now(),
            actor: caller.arn.clone(),
            clock: clock.note(),
        }
    }
}

impl Plan {
    /// Moves to `to`, recording what was done.
    pub fn transition(&mut self, to: Phase, action: impl Into<Action>, stamp: &Stamp) {
        let from = self.phase;
        self.push_history(from, to, action.into(), stamp);
        self.phase = to;
        self.phase_since = stamp.at;
    }

    /// Records an action that does not change the phase.
    pub fn record(&mut self, action: impl Into<Action>, stamp: &Stamp) {
        self.push_history(self.phase, self.phase, action.into(), stamp);
    }

    fn push_history(&mut self, from: Phase, to: Phase, action: Action, stamp: &Stamp) {
        self.history.push(HistoryEntry {
            at: stamp.at,
            from,
            to,
            action: action.text,
            kind: Some(action.kind),
            key_id: action.key_id,
            actor: stamp.actor.clone(),
            clock: stamp.clock.clone(),
        });
    }

    /// Moves to `blocked`, keeping the phase it was in and why.
    pub fn block(&mut self, reason: impl Into<String>, stamp: &Stamp) {
        let reason = reason.into();
        let from = self.phase;
        self.transition(
            Phase::Blocked,
            Action::new(ActionKind::Blocked, None, format!("blocked: {reason}")),
            stamp,
        );
        self.blocked_in = Some(from);
        self.blocked_reason = Some(reason);
    }

    /// Leaves `blocked` for the phase it was in.
    pub fn unblock(&mut self, stamp: &Stamp) {
        let back_to = self.blocked_in.take().unwrap_or(Phase::CreateSecondKey);
        self.blocked_reason = None;
        self.transition(
            back_to,
            Action::new(
                ActionKind::Unblocked,
                None,
                "operator asked to retry (--retry-blocked); guards re-checked",
            ),
            stamp,
        );
    }

    pub fn observe(&mut self, observation: Observation) {
        self.observations.push(observation);
        if self.observations.len() > MAX_OBSERVATIONS {
            let excess = self.observations.len() - MAX_OBSERVATIONS;
            self.observations.drain(..excess);
        }
    }

    pub fn last_observation(&self) -> Option<&Observation> {
        self.observations.last()
    }

    /// The phase the rotation is really in: for a blocked plan, where it stopped.
    pub fn effective_phase(&self) -> Phase {
        match (self.phase, self.blocked_in) {
            (Phase::Blocked, Some(inner)) => inner,
            (phase, _) => phase,
        }
    }

    /// True once DeleteAccessKey removed the old key: it can never come back.
    pub fn old_key_deleted(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// The JSON Schema (draft 2020-12) of a plan file, as `iam-rotate schema`
/// prints it: what a plan may hold, field by field. Whether a plan is
/// consistent (its phase, keys and file place agree) is checked on load by
/// [`crate::plan::store::validate`], which a schema cannot express.
pub fn json_schema() -> schemars::Schema {
    schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<Plan>()
}

/// `AKIA…WXYZ`: enough to tell keys apart in prose, never the full id.
pub fn mask_key(id: &str) -> String {
    if id.len() <= 8 || !id.is_ascii() {
        return id.to_string();
    }
    format!("{}…{}", &id[..4], &id[id.len() - 4..])
}
