//! The plan store: where plans live (`<plans-dir>/<account>/<user>.yaml`,
//! in a local folder or in S3), how they are parsed (with file, line and
//! column on any error), locked (one process per plan) and saved
//! (atomically on disk; compare-and-swap in S3).
//!
//! Two stores behind one type: [`PlanStore`] dispatches on its backend, an
//! enum of the local folder and [`S3Plans`]. Both are known here and
//! nowhere else, so an enum keeps `&PlanStore` and [`LockedPlan`] concrete
//! at every call site, with no boxed futures or trait objects for a choice
//! made once per process.

mod lease;
mod s3;

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::model::Plan;
use crate::atomic;

/// Everything that can go wrong reading or writing plans.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error("{path}, line {line}, column {column}: {message}. Fix the plan file (or restore it from version control) and run again.")]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{path}: {message}. Fix the plan file (or restore it from version control) and run again."
    )]
    Invalid { path: String, message: String },
    #[error("no plan at {path}.{did_you_mean} {next}")]
    NotFound {
        path: String,
        user: String,
        /// ` Did you mean alice?`, naming the closest plans in the same
        /// folder, or empty.
        did_you_mean: String,
        next: String,
    },
    #[error("cannot use {path} as the plans folder: {reason}. Check --plans-dir (env IAM_ROTATE_PLANS_DIR); `iam-rotate plan` creates the folder with the first plan.")]
    PlansDir { path: String, reason: String },
    #[error("cannot keep plans in {url}: {reason}. Check --plans-dir (env IAM_ROTATE_PLANS_DIR) and the credentials (--profile, AWS_PROFILE).")]
    Bucket { url: String, reason: String },
    #[error("cannot {action} {path}: {source}. Check that the path exists and that you may read and write it.")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path} was changed by another runner since this one read it, so this runner stopped working on it (no retry) and made no AWS change after that. See where it is now with `iam-rotate status` or `iam-rotate show`, then run again if it still needs a step.")]
    Changed { path: String },
    #[error("{path}: {reason}, so this runner stopped working on it and made no AWS change after that. Give --lease a length longer than one step takes, check `iam-rotate status`, then run again.")]
    LeaseLost { path: String, reason: String },
    #[error("cannot {action} {url}: {message}.")]
    S3 {
        action: &'static str,
        url: String,
        message: String,
    },
}

impl PlanError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        PlanError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}

/// The folder of plans: a local folder, or a bucket and prefix in S3.
#[derive(Clone, Debug)]
pub struct PlanStore {
    /// A folder, or `s3://BUCKET/PREFIX`: plan paths are below it either way.
    root: PathBuf,
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    /// Files, OS locks, atomic renames.
    Local,
    /// Objects, leases, conditional writes.
    S3(Arc<S3Plans>),
}

pub use s3::S3Plans;

/// Whether `--plans-dir` names S3 (`s3://BUCKET/PREFIX`).
pub fn is_s3(plans_dir: &Path) -> bool {
    plans_dir.to_string_lossy().starts_with(s3::SCHEME)
}

/// Why a plan was not locked: another process or runner holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Busy(pub String);

/// What `unlock --force` removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unlocked {
    /// There was no lock or lease.
    Nothing,
    /// It removed this (a lock file, or a lease and its holder).
    Removed(String),
}

/// IAM user names are made of letters, digits and `+=,.@_-`; anything else
/// (a slash above all) is refused before it can become part of a path.
pub fn is_valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        && name != "."
        && name != ".."
}

impl PlanStore {
    /// A local plans folder.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PlanStore {
            root: root.into(),
            backend: Backend::Local,
        }
    }

    /// Plans in S3 (the bucket already checked by [`S3Plans::open`]).
    pub fn s3(plans: S3Plans) -> Self {
        PlanStore {
            root: plans.root(),
            backend: Backend::S3(Arc::new(plans)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the plans folder exists (an S3 bucket was checked on open).
    pub fn root_exists(&self) -> bool {
        match self.backend {
            Backend::Local => self.root.exists(),
            Backend::S3(_) => true,
        }
    }

    /// The S3 store a plan path belongs to; `None` for a local path, which
    /// is read from disk whatever the store (a plan file named by path).
    fn remote(&self, path: &Path) -> Result<Option<&Arc<S3Plans>>, PlanError> {
        if !is_s3(path) {
            return Ok(None);
        }
        match &self.backend {
            Backend::S3(plans) => Ok(Some(plans)),
            Backend::Local => Err(PlanError::PlansDir {
                path: path.display().to_string(),
                reason: "a plan in S3 is read through --plans-dir s3://BUCKET/PREFIX \
                         (env IAM_ROTATE_PLANS_DIR), not as a file"
                    .into(),
            }),
        }
    }

    pub fn account_dir(&self, account: &str) -> PathBuf {
        self.root.join(account)
    }

    pub fn path_for(&self, account: &str, user: &str) -> PathBuf {
        self.account_dir(account).join(format!("{user}.yaml"))
    }

    /// Fails when the plans folder itself is missing or not a folder: a
    /// mistyped `--plans-dir` must not look like "no plans".
    fn check_root(&self) -> Result<(), PlanError> {
        let reason = match fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => "it is not a folder".to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => "it does not exist".to_string(),
            Err(e) => e.to_string(),
        };
        Err(PlanError::PlansDir {
            path: self.root.display().to_string(),
            reason,
        })
    }

    /// The account folders under the root, sorted.
    pub fn accounts(&self) -> Result<Vec<String>, PlanError> {
        if let Backend::S3(plans) = &self.backend {
            return plans.accounts();
        }
        self.check_root()?;
        let entries = fs::read_dir(&self.root)
            .map_err(|e| PlanError::io("read the plans folder", &self.root, e))?;
        let mut accounts = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PlanError::io("read the plans folder", &self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') {
                accounts.push(name);
            }
        }
        accounts.sort();
        Ok(accounts)
    }

    /// The plan files of one account, sorted by user name. Temporary and
    /// lock files (leading dot) are never listed.
    pub fn list(&self, account: &str) -> Result<Vec<PathBuf>, PlanError> {
        if let Backend::S3(plans) = &self.backend {
            return plans.list(&self.root, account);
        }
        self.check_root()?;
        let dir = self.account_dir(account);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(PlanError::io("read the plans folder", &dir, e)),
        };
        let mut plans = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PlanError::io("read the plans folder", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Lock files end in `.lock` and temporary files in `.tmp`, so a
            // user whose name starts with a dot (IAM allows it) is listed.
            if name.ends_with(".yaml") {
                plans.push(entry.path());
            }
        }
        plans.sort();
        Ok(plans)
    }

    /// Reads, parses and validates one plan. A file (or object) over
    /// [`MAX_PLAN_BYTES`] is refused unread.
    pub fn load(&self, path: &Path) -> Result<Plan, PlanError> {
        self.load_versioned(path).map(|(plan, _)| plan)
    }

    /// The plan, or `None` when there is none at `path`.
    pub fn find(&self, path: &Path) -> Result<Option<Plan>, PlanError> {
        match self.remote(path)? {
            Some(plans) => match plans.read(path)? {
                Some((text, _)) => parse(&text, path).map(Some),
                None => Ok(None),
            },
            None if path.exists() => Self::load_file(path).map(Some),
            None => Ok(None),
        }
    }

    /// The plan and, in S3, the ETag it was read at.
    fn load_versioned(&self, path: &Path) -> Result<(Plan, Option<String>), PlanError> {
        let Some(plans) = self.remote(path)? else {
            return Self::load_file(path).map(|plan| (plan, None));
        };
        if let Some((text, etag)) = plans.read(path)? {
            return Ok((parse(&text, path)?, Some(etag)));
        }
        // The account's other plans, for a did-you-mean (a courtesy: a
        // listing that fails leaves it out).
        let account = path
            .parent()
            .and_then(Path::file_name)
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let others: Vec<String> = plans
            .list(&self.root, &account)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        Err(not_found_among(path, &others, !others.is_empty()))
    }

    /// Reads, parses and validates one plan file.
    fn load_file(path: &Path) -> Result<Plan, PlanError> {
        let file = File::open(path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                not_found(path)
            } else {
                PlanError::io("read", path, e)
            }
        })?;
        let meta = file
            .metadata()
            .map_err(|e| PlanError::io("read", path, e))?;
        if !meta.is_file() {
            return Err(PlanError::Invalid {
                path: path.display().to_string(),
                message: "it is not a regular file, so it is not a plan".into(),
            });
        }
        if meta.len() > MAX_PLAN_BYTES {
            return Err(too_big(path));
        }
        let mut text = String::new();
        io::Read::read_to_string(&mut io::Read::take(file, MAX_PLAN_BYTES + 1), &mut text)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidData {
                    PlanError::Invalid {
                        path: path.display().to_string(),
                        message: "it is not UTF-8 text, so it is not a plan".into(),
                    }
                } else {
                    PlanError::io("read", path, e)
                }
            })?;
        if text.len() as u64 > MAX_PLAN_BYTES {
            return Err(too_big(path));
        }
        parse(&text, path)
    }

    /// Loads the plan, then takes its lock and loads it again under the
    /// lock. `Ok(None)`: another process holds the lock.
    pub fn lock(&self, path: &Path) -> Result<Option<LockedPlan>, PlanError> {
        self.try_lock(path).map(Result::ok)
    }

    /// [`PlanStore::lock`], saying who holds the plan when it is busy.
    /// Nothing is locked, and no lock file (or lease) is made, for a plan
    /// that is not valid; a lock file is never opened through a symbolic
    /// link. In S3 the lease is taken and the plan read again under it; its
    /// ETag then guards every save.
    pub fn try_lock(&self, path: &Path) -> Result<Result<LockedPlan, Busy>, PlanError> {
        self.load(path)?;
        let guard = match self.remote(path)? {
            Some(plans) => match plans.acquire(path)? {
                Ok(held) => Guard::Lease(held),
                Err(holder) => return Ok(Err(Busy(format!("leased: {holder}")))),
            },
            None => match take_lock(path)? {
                Some(lock) => Guard::File { _lock: lock },
                None => return Ok(Err(Busy(LOCAL_BUSY.into()))),
            },
        };
        let (plan, etag) = self.load_versioned(path)?;
        if let Guard::Lease(held) = &guard {
            held.read_at(etag);
        }
        Ok(Ok(LockedPlan {
            path: path.to_path_buf(),
            plan,
            guard,
        }))
    }

    /// Writes a brand-new plan, holding its lock. `Ok(None)`: another process
    /// holds the lock. In S3 the write is `If-None-Match: *` (or `If-Match`
    /// on a finished plan it replaces).
    pub fn create(&self, path: &Path, plan: Plan) -> Result<Option<LockedPlan>, PlanError> {
        if let Some(plans) = self.remote(path)? {
            let Ok(held) = plans.acquire(path)? else {
                return Ok(None);
            };
            if let Some((text, etag)) = plans.read(path)? {
                refuse_unfinished(&parse(&text, path)?, path)?;
                held.read_at(Some(etag));
            }
            let locked = LockedPlan {
                path: path.to_path_buf(),
                plan,
                guard: Guard::Lease(held),
            };
            locked.save()?;
            return Ok(Some(locked));
        }
        if let Some(dir) = path.parent() {
            atomic::create_private_dir(dir)
                .map_err(|e| PlanError::io("create the plans folder", dir, e))?;
        }
        let Some(lock) = take_lock(path)? else {
            return Ok(None);
        };
        // Checked again under the lock: another `plan` may have written a
        // plan (and a `run` taken it on) since the caller looked.
        if path.exists() {
            refuse_unfinished(&Self::load_file(path)?, path)?;
        }
        let locked = LockedPlan {
            path: path.to_path_buf(),
            plan,
            guard: Guard::File { _lock: lock },
        };
        locked.save()?;
        Ok(Some(locked))
    }

    /// `unlock --force`: removes the lock beside the plan at `path`. In S3
    /// that is the lease, whoever holds it (the operator says its runner is
    /// dead). A local lock file is removed only when no process holds its
    /// OS lock: such a lock ends with its process, so a held one has a live
    /// holder, and removing the file would let a second process in.
    pub fn unlock(&self, path: &Path) -> Result<Unlocked, PlanError> {
        if let Some(plans) = self.remote(path)? {
            return Ok(plans
                .unlock(path)?
                .map_or(Unlocked::Nothing, Unlocked::Removed));
        }
        let lock_path = lock_path(path);
        if fs::symlink_metadata(&lock_path).is_err() {
            return Ok(Unlocked::Nothing);
        }
        let Some(_held) = take_lock(path)? else {
            return Err(PlanError::Invalid {
                path: lock_path.display().to_string(),
                message: "a running iam-rotate process holds this lock (an OS lock ends with \
                          its process, so its holder is alive); stop that process instead. \
                          Nothing was removed"
                    .into(),
            });
        };
        fs::remove_file(&lock_path).map_err(|e| PlanError::io("remove", &lock_path, e))?;
        Ok(Unlocked::Removed(format!(
            "the lock file {}, which no process held",
            lock_path.display()
        )))
    }

    /// Removes temporary files left by a process that was killed mid-write,
    /// once they are an hour old: a live writer renames its file within
    /// milliseconds, so an hour-old one has no owner.
    /// They are never read as plans either way; this only tidies the folder.
    pub fn sweep_temporaries(&self, account: &str) -> usize {
        if let Backend::S3(_) = self.backend {
            // S3 writes whole objects: there are no temporaries.
            return 0;
        }
        let dir = self.account_dir(account);
        let Ok(entries) = fs::read_dir(&dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age.as_secs() > STALE_TEMP_SECS);
            if name.starts_with('.')
                && name.ends_with(atomic::TEMP_SUFFIX)
                && stale
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

const STALE_TEMP_SECS: u64 = 3600;

/// Why a local plan is skipped: its OS lock is held.
const LOCAL_BUSY: &str = "locked: another iam-rotate process is working on this plan right now";

/// A new plan never replaces an unfinished one another process wrote
/// while this one was planning.
fn refuse_unfinished(existing: &Plan, path: &Path) -> Result<(), PlanError> {
    if existing.phase.is_finished() {
        return Ok(());
    }
    Err(PlanError::Invalid {
        path: path.display().to_string(),
        message: format!(
            "another iam-rotate process wrote an unfinished plan here (phase {}) \
             while this one was planning; it is never replaced",
            existing.phase
        ),
    })
}

/// No plan comes near this (observations are capped); a bigger file is
/// something else, and is refused without being read.
pub const MAX_PLAN_BYTES: u64 = 1024 * 1024;

fn too_big(path: &Path) -> PlanError {
    PlanError::Invalid {
        path: path.display().to_string(),
        message: format!(
            "it is larger than {} KiB, which no plan is; it was not read",
            MAX_PLAN_BYTES / 1024
        ),
    }
}

/// Takes the OS lock beside the plan at `path`: `None` when another
/// process holds it. Held until the file is dropped.
fn take_lock(path: &Path) -> Result<Option<File>, PlanError> {
    let lock_path = lock_path(path);
    let lock = atomic::open_lock_file(&lock_path).map_err(|e| lock_error(&lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(PlanError::io("lock", &lock_path, e)),
    }
}

/// A lock file that is a symbolic link is refused (O_NOFOLLOW): the lock
/// is never a way to create or touch a file elsewhere.
fn lock_error(lock_path: &Path, e: io::Error) -> PlanError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return PlanError::Invalid {
            path: lock_path.display().to_string(),
            message: "the lock file is a symbolic link; iam-rotate never follows one there. \
                      Remove it (it holds nothing)"
                .into(),
        };
    }
    PlanError::io("open the lock file", lock_path, e)
}

/// `plans/123/alice.yaml` → `plans/123/.alice.yaml.lock`.
pub fn lock_path(plan_path: &Path) -> PathBuf {
    let name = plan_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    plan_path.with_file_name(format!(".{name}.lock"))
}

/// Parses plan text, naming the file, line and column of any problem, then
/// validates it ([`validate`]). Error messages never quote the file's
/// values: the file may not be a plan at all, and may hold secrets.
pub fn parse(text: &str, path: &Path) -> Result<Plan, PlanError> {
    let invalid = |message: String| PlanError::Invalid {
        path: path.display().to_string(),
        message,
    };
    if text.trim().is_empty() {
        return Err(invalid(
            "the file is empty; a plan is a YAML mapping starting with `version: 1`".into(),
        ));
    }
    if let Some((line, column, what)) = anchor_or_alias(text) {
        return Err(PlanError::Parse {
            path: path.display().to_string(),
            line,
            column,
            message: format!(
                "a YAML {what}; plans never use anchors or aliases (`&name`, `*name`), which \
                 can make one small file expand without bound. Write the values out"
            ),
        });
    }
    let plan: Plan = serde_yaml::from_str(text).map_err(|e| {
        let (line, column, message) = located(&e);
        PlanError::Parse {
            path: path.display().to_string(),
            line,
            column,
            message,
        }
    })?;
    validate(&plan, path).map_err(invalid)?;
    Ok(plan)
}

/// The first YAML anchor or alias in `text`, as (line, column, what), from
/// the YAML parser's own events. Text without `&` or `*` has none, and is
/// not parsed twice.
fn anchor_or_alias(text: &str) -> Option<(usize, usize, &'static str)> {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::Marker;

    if !text.contains(['&', '*']) {
        return None;
    }
    #[derive(Default)]
    struct Finder(Option<(usize, usize, &'static str)>);
    impl MarkedEventReceiver for Finder {
        fn on_event(&mut self, event: Event, mark: Marker) {
            if self.0.is_some() {
                return;
            }
            let what = match event {
                Event::Alias(_) => "alias",
                Event::Scalar(_, _, anchor, _)
                | Event::SequenceStart(anchor, _)
                | Event::MappingStart(anchor, _)
                    if anchor != 0 =>
                {
                    "anchor"
                }
                _ => return,
            };
            self.0 = Some((mark.line(), mark.col() + 1, what));
        }
    }
    let mut finder = Finder::default();
    // A syntax error is left to serde_yaml, which reports it with its place.
    let _ = Parser::new_from_str(text).load(&mut finder, true);
    finder.0
}

/// The checks a plan must pass before anything acts on it: a plan that
/// contradicts itself (edited by hand, or damaged) is refused before any
/// request, with the field and the fix.
pub fn validate(plan: &Plan, path: &Path) -> Result<(), String> {
    validate_place(plan, path)?;
    validate_policy(plan)?;
    validate_notify(plan)?;
    validate_phase(plan)
}

/// Every `notify:` entry is a target iam-rotate can send to.
fn validate_notify(plan: &Plan) -> Result<(), String> {
    for (index, spec) in plan.notify.iter().enumerate() {
        crate::notify::Target::parse(spec).map_err(|e| {
            format!(
                "`notify:` entry {}: {e}. Correct it, or remove it to notify only the \
                 --notify targets",
                index + 1
            )
        })?;
    }
    Ok(())
}

/// What a failed check tells the operator to do, when nothing better fits.
const FIX: &str = "restore the plan from version control";

/// Where the plan is and who it names: a valid user and account, the file
/// and folder they belong in, and the ARN of that user.
fn validate_place(plan: &Plan, path: &Path) -> Result<(), String> {
    if !is_valid_user_name(&plan.user) {
        return Err(format!(
            "`user: {}` is not a valid IAM user name",
            plan.user
        ));
    }
    if plan.account.len() != 12 || !plan.account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`account: {}` is not a 12-digit AWS account id",
            plan.account
        ));
    }
    let file_user = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    if file_user.as_deref() != Some(plan.user.as_str()) {
        return Err(format!(
            "`user: {}` does not match the file name: the plan for {} lives in {}.yaml. \
             Rename the file, or {FIX}",
            plan.user, plan.user, plan.user
        ));
    }
    let folder = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned());
    if folder.as_deref() != Some(plan.account.as_str()) {
        return Err(format!(
            "`account: {}` does not match the folder the plan is in ({}): plans live in \
             <plans-dir>/<account>/<user>.yaml. Move the file into the folder {}, or {FIX}",
            plan.account,
            folder.as_deref().unwrap_or("none"),
            plan.account
        ));
    }
    if !arn_names(&plan.user_arn, &plan.account, &plan.user) {
        return Err(format!(
            "`user_arn: {}` is not the ARN of user {} in account {} \
             (arn:aws:iam::{}:user/…/{}); {FIX}",
            plan.user_arn, plan.user, plan.account, plan.account, plan.user
        ));
    }
    Ok(())
}

/// Every duration within bounds, and the quiet period's floor.
fn validate_policy(plan: &Plan) -> Result<(), String> {
    let policy = &plan.policy;
    for (field, value) in [
        ("adoption_wait", policy.adoption_wait),
        ("quiet_period", policy.quiet_period),
        ("verify_period", policy.verify_period),
    ] {
        if value > crate::duration::MAX_DURATION {
            return Err(format!(
                "`policy.{field}: {value}` is longer than {}, the longest a plan may wait; \
                 set it to a real duration such as 7d",
                crate::duration::MAX_DURATION
            ));
        }
    }
    let floor = super::policy::MIN_QUIET_PERIOD;
    if policy.quiet_period < floor && !policy.allow_short_quiet_period {
        return Err(format!(
            "`policy.quiet_period: {}` is under the {floor} floor (AWS records last use with \
             a lag of up to four hours). Set it to {floor} or more, or add \
             `allow_short_quiet_period: true` to the policy if you accept that risk",
            policy.quiet_period
        ));
    }
    Ok(())
}

/// The phase against what it implies: a blocked plan's inner phase, the
/// new key (recorded once created, never the old one), the old key's status.
fn validate_phase(plan: &Plan) -> Result<(), String> {
    use super::model::KeyStatus;
    use super::Phase;

    if plan.phase == Phase::Blocked {
        match plan.blocked_in {
            None => {
                return Err("the plan is `blocked` but names no `blocked_in` phase".into());
            }
            Some(Phase::Blocked | Phase::Done | Phase::RolledBack) => {
                return Err(format!(
                    "`blocked_in: {}` is not a phase a plan can be blocked in; {FIX}",
                    plan.effective_phase()
                ));
            }
            Some(_) => {}
        }
    }
    let phase = plan.effective_phase();
    let needs_new_key = matches!(
        phase,
        Phase::WaitForAdoption
            | Phase::CheckLastUsed
            | Phase::SetInactive
            | Phase::Verify
            | Phase::Delete
            | Phase::Done
    );
    match (&plan.new_key, needs_new_key) {
        (None, true) => {
            return Err(format!(
                "the plan is in {phase} but records no `new_key`: that phase comes after the \
                 new key was created, and going on would retire the user's only key. {FIX}, \
                 or set `phase: create_second_key`"
            ));
        }
        (Some(_), false) if phase == Phase::CreateSecondKey => {
            return Err(format!(
                "the plan is in {phase} but already records a `new_key`; {FIX}"
            ));
        }
        (Some(new_key), _) if new_key.id == plan.old_key.id => {
            return Err(format!("`new_key.id` is the old key's id; {FIX}"));
        }
        _ => {}
    }
    let expected = match phase {
        Phase::Verify | Phase::Delete | Phase::Done => KeyStatus::Inactive,
        _ => KeyStatus::Active,
    };
    if plan.old_key.status != expected {
        return Err(format!(
            "`old_key.status: {}` does not fit phase {phase}, where the old key is {expected}; \
             {FIX}",
            plan.old_key.status
        ));
    }
    Ok(())
}

/// `arn:PARTITION:iam::ACCOUNT:user/PATH/USER`.
fn arn_names(arn: &str, account: &str, user: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, arn_account, resource] = parts[..] else {
        return false;
    };
    prefix == "arn"
        && partition.starts_with("aws")
        && service == "iam"
        && region.is_empty()
        && arn_account == account
        && resource.starts_with("user/")
        && resource.rsplit('/').next() == Some(user)
}

/// A YAML error's line, column (1-based) and message without the position
/// and without any value quoted from the file (see [`without_values`]).
pub fn located(error: &serde_yaml::Error) -> (usize, usize, String) {
    let (line, column) = error
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let mut message = error.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    (line, column, without_values(&message))
}

/// A parser message with the file's own values cut out: serde quotes the
/// offending value (`unknown variant \`x\``, `invalid type: string "x"`),
/// and the file may be anything, even a secret. What it expected (our own
/// field and phase names) and the field's path stay.
pub fn without_values(message: &str) -> String {
    const HIDDEN: &str = "(value not shown)";
    let (before, after) = match message.find("expected") {
        Some(at) if !message.starts_with("did not find expected") => message.split_at(at),
        _ => (message, ""),
    };
    // A field's name is what the operator must fix; unknown fields are
    // named too (a typo of a known one, most often).
    let keep_names = ["missing field", "duplicate field", "unknown field"]
        .iter()
        .any(|m| before.contains(m));
    let mut out = String::with_capacity(message.len());
    let mut chars = before.chars();
    while let Some(c) = chars.next() {
        match c {
            '`' | '"' if !keep_names => {
                let mut closed = false;
                for inner in chars.by_ref() {
                    if inner == c {
                        closed = true;
                        break;
                    }
                }
                out.push_str(HIDDEN);
                if !closed {
                    break;
                }
            }
            _ => out.push(c),
        }
    }
    out.push_str(after);
    crate::deliver::scrub_secret_shaped(&out)
}

/// No plan at `path`: the error names the closest plans in its folder, if
/// any, and what to do next.
fn not_found(path: &Path) -> PlanError {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
    let others = folder.map(plan_names).unwrap_or_default();
    let folder_exists = folder.is_some_and(Path::is_dir);
    not_found_among(path, &others, folder_exists)
}

/// No plan at `path`, among the plans `others` of its folder (which may
/// not exist).
fn not_found_among(path: &Path, others: &[String], folder_exists: bool) -> PlanError {
    let user = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let closest = crate::suggest::closest(&user, others.iter().map(String::as_str));
    let did_you_mean = crate::suggest::did_you_mean(&closest);
    let next = match (closest.is_empty(), folder_exists) {
        (false, _) => format!(
            "If not, create a plan with `iam-rotate plan {user}`, or check --plans-dir \
             (env IAM_ROTATE_PLANS_DIR)."
        ),
        (true, true) => format!(
            "Create one with `iam-rotate plan {user}` (`iam-rotate status` lists the plans \
             there), or check --plans-dir (env IAM_ROTATE_PLANS_DIR)."
        ),
        (true, false) => format!(
            "There are no plans for this account yet: create one with `iam-rotate plan \
             {user}`, or check --plans-dir (env IAM_ROTATE_PLANS_DIR) and the account of \
             the credentials."
        ),
    };
    PlanError::NotFound {
        path: path.display().to_string(),
        user,
        did_you_mean,
        next,
    }
}

/// The user names of the plan files in `folder` (nothing when it cannot
/// be read: a suggestion is a courtesy, never a second error).
fn plan_names(folder: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(folder) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".yaml").map(str::to_string)
        })
        .collect()
}

/// A plan whose lock (or lease) this process holds. Dropping it releases
/// the lock.
#[derive(Debug)]
pub struct LockedPlan {
    pub path: PathBuf,
    pub plan: Plan,
    guard: Guard,
}

/// What keeps other processes off a plan while it is held.
#[derive(Debug)]
enum Guard {
    /// The OS lock on the lock file beside the plan, held until dropped.
    File { _lock: File },
    /// The S3 lease beside the plan, and the plan's ETag.
    Lease(s3::Held),
}

impl LockedPlan {
    /// Writes the plan atomically: readers see the old plan or the new one.
    /// In S3 the write is conditional on the version this process read or
    /// wrote last; if another runner changed the plan since, it fails with
    /// [`PlanError::Changed`], and so does every later save of this plan.
    pub fn save(&self) -> Result<(), PlanError> {
        let yaml = to_yaml(&self.plan);
        match &self.guard {
            Guard::File { .. } => atomic::write(&self.path, yaml.as_bytes(), 0o644)
                .map_err(|e| PlanError::io("write", &self.path, e)),
            Guard::Lease(held) => held.save(&self.path, &yaml),
        }
    }
}

/// The plan as it is written to disk.
pub fn to_yaml(plan: &Plan) -> String {
    // Serializing these plain structs cannot fail: no maps with non-string
    // keys, no non-finite floats.
    serde_yaml::to_string(plan).expect("a plan always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = "version: 1
account: '123456789012'
user: alice
user_arn: arn:aws:iam::123456789012:user/alice
delivery: file:/tmp/alice.csv
policy:
  adoption_wait: 7d
  quiet_period: 3d
  verify_period: 7d
  require_new_key_use: true
old_key:
  id: AKIAIOSFODNN7EXAMPLE
  created_at: 2025-06-02T08:14:51Z
  status: Active
new_key:
  id: AKIAI44QH8DHBEXAMPLE
  created_at: 2026-11-26T09:00:03Z
phase: wait_for_adoption
phase_since: 2026-11-26T09:00:04Z
create_intent_at: null
observations: []
history: []
";

    fn path() -> &'static Path {
        Path::new("plans/123456789012/alice.yaml")
    }

    #[test]
    fn the_example_parses_and_round_trips() {
        let plan = parse(EXAMPLE, path()).unwrap();
        assert_eq!(plan.user, "alice");
        let again = parse(&to_yaml(&plan), path()).unwrap();
        assert_eq!(to_yaml(&again), to_yaml(&plan));
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let bad = EXAMPLE.replace("phase: wait_for_adoption", "phase: sideways");
        let err = parse(&bad, path()).unwrap_err().to_string();
        assert!(err.contains("alice.yaml, line 18, column 8"), "{err}");
        assert!(err.contains("phase"), "{err}");
        assert!(
            !err.contains("sideways"),
            "the value is never echoed: {err}"
        );
    }

    #[test]
    fn errors_never_quote_the_file_s_values() {
        for (from, to, hidden) in [
            (
                "quiet_period: 3d",
                "quiet_period: wJalrXUtnFEMI/K7MDENG",
                "wJalrXUtnFEMI",
            ),
            (
                "require_new_key_use: true",
                "require_new_key_use: hunter2",
                "hunter2",
            ),
            ("version: 1", "version: 'x-secret-x'", "x-secret-x"),
            ("id: AKIAIOSFODNN7EXAMPLE", "id: [s3cr3t]", "s3cr3t"),
        ] {
            let bad = EXAMPLE.replace(from, to);
            let err = parse(&bad, path()).unwrap_err().to_string();
            assert!(!err.contains(hidden), "{err}");
            assert!(err.contains("line "), "{err}");
        }
        let netrc = "machine example.com login alice password hunter2\n";
        let err = parse(netrc, path()).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let typo = EXAMPLE.replace("phase_since:", "phase_snice:");
        let err = parse(&typo, path()).unwrap_err().to_string();
        assert!(
            err.contains("phase_snice"),
            "a mistyped field is named: {err}"
        );
    }

    #[test]
    fn anchors_and_aliases_are_refused_with_their_place() {
        let anchored = EXAMPLE.replace("require_new_key_use: true", "require_new_key_use: &t true");
        let err = parse(&anchored, path()).unwrap_err().to_string();
        assert!(err.contains("line 10,") && err.contains("anchor"), "{err}");
        let aliased = EXAMPLE.replace("policy:\n", "policy: &p\n") + "again: *p\n";
        let err = parse(&aliased, path()).unwrap_err().to_string();
        assert!(err.contains("anchor"), "{err}");
        // `&` and `*` inside values are not anchors.
        let plain = EXAMPLE.replace("file:/tmp/alice.csv", "'file:/tmp/a&b*c.csv'");
        parse(&plain, path()).unwrap();
    }

    #[test]
    fn a_plan_that_contradicts_itself_is_refused() {
        let without_new_key = EXAMPLE.replace(
            "new_key:\n  id: AKIAI44QH8DHBEXAMPLE\n  created_at: 2026-11-26T09:00:03Z\n",
            "",
        );
        for (bad, field) in [
            (without_new_key.clone(), "new_key"),
            (
                without_new_key.replace("phase: wait_for_adoption", "phase: delete"),
                "new_key",
            ),
            (
                EXAMPLE.replace("status: Active", "status: Inactive"),
                "old_key.status",
            ),
            (
                // verify with the old key still Active
                EXAMPLE.replace("phase: wait_for_adoption", "phase: verify"),
                "old_key.status",
            ),
            (EXAMPLE.replace("user: alice", "user: bob"), "file name"),
            (EXAMPLE.replace(":user/alice", ":user/bob"), "user_arn"),
            (
                EXAMPLE.replace("iam::123456789012", "iam::999988887777"),
                "user_arn",
            ),
            (
                EXAMPLE.replace("quiet_period: 3d", "quiet_period: 1h"),
                "allow_short_quiet_period",
            ),
        ] {
            let err = parse(&bad, path()).unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        let allowed = EXAMPLE.replace(
            "quiet_period: 3d",
            "quiet_period: 1h\n  allow_short_quiet_period: true",
        );
        parse(&allowed, path()).unwrap();
        let elsewhere = Path::new("plans/999988887777/alice.yaml");
        let err = parse(EXAMPLE, elsewhere).unwrap_err().to_string();
        assert!(err.contains("folder"), "{err}");
    }

    #[test]
    fn files_over_a_mebibyte_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("123456789012").join("alice.yaml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let big = format!("{EXAMPLE}# {}\n", "x".repeat(MAX_PLAN_BYTES as usize));
        fs::write(&path, big).unwrap();
        let store = PlanStore::new(dir.path());
        let err = store.load(&path).unwrap_err().to_string();
        assert!(err.contains("not read"), "{err}");
        assert!(store.lock(&path).is_err());
        assert!(
            !lock_path(&path).exists(),
            "no lock for a file that is not a plan"
        );
    }

    #[test]
    fn a_symlinked_lock_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("123456789012").join("alice.yaml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, EXAMPLE).unwrap();
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, lock_path(&path)).unwrap();
        let err = PlanStore::new(dir.path())
            .lock(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert!(!target.exists());
    }

    #[test]
    fn create_never_replaces_an_unfinished_plan_written_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("123456789012").join("alice.yaml");
        let plan = parse(EXAMPLE, &path).unwrap();
        // Another process planned and ran first.
        let store = PlanStore::new(dir.path());
        drop(store.create(&path, plan.clone()).unwrap());
        let before = fs::read(&path).unwrap();
        let err = store.create(&path, plan).err().unwrap().to_string();
        assert!(err.contains("never replaced"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn unlock_removes_only_a_lock_file_no_process_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlanStore::new(dir.path());
        let path = dir.path().join("123456789012").join("alice.yaml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, EXAMPLE).unwrap();
        assert_eq!(store.unlock(&path).unwrap(), Unlocked::Nothing);
        let held = store.lock(&path).unwrap().unwrap();
        let err = store.unlock(&path).unwrap_err().to_string();
        assert!(err.contains("holder is alive"), "{err}");
        assert!(lock_path(&path).exists());
        drop(held);
        assert!(matches!(store.unlock(&path).unwrap(), Unlocked::Removed(_)));
        assert!(!lock_path(&path).exists());
        assert!(store.lock(&path).unwrap().is_some(), "lockable again");
    }

    #[test]
    fn a_local_store_refuses_a_plan_path_in_s3() {
        let store = PlanStore::new("plans");
        let path = Path::new("s3://bucket/team/123456789012/alice.yaml");
        let err = store.load(path).unwrap_err().to_string();
        assert!(err.contains("--plans-dir s3://"), "{err}");
        assert!(is_s3(Path::new("s3://bucket")) && !is_s3(Path::new("./s3:/x")));
    }

    #[test]
    fn users_whose_names_start_with_a_dot_are_listed_but_lock_and_temp_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = PlanStore::new(dir.path());
        let account = dir.path().join("123456789012");
        fs::create_dir_all(&account).unwrap();
        for name in [
            ".svc.yaml",
            "alice.yaml",
            ".alice.yaml.lock",
            ".alice.yaml.x1y2.tmp",
        ] {
            fs::write(account.join(name), "").unwrap();
        }
        let names: Vec<String> = store
            .list("123456789012")
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [".svc.yaml", "alice.yaml"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Any text at all: an error or a plan, never a panic.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = parse(&text, path());
        }

        /// Plausible damage to a real plan: a byte replaced, a span cut, a
        /// line duplicated. Never a panic; an error always names the file.
        #[test]
        fn damaged_plans_never_panic(
            at in 0..EXAMPLE.len(),
            len in 0usize..40,
            byte in any::<u8>(),
            how in 0u8..3,
        ) {
            let mut bytes = EXAMPLE.as_bytes().to_vec();
            match how {
                0 => bytes[at] = byte,
                1 => { bytes.drain(at..(at + len).min(EXAMPLE.len())); }
                _ => {
                    let line_start = EXAMPLE[..at].rfind('\n').map_or(0, |i| i + 1);
                    let line_end = EXAMPLE[at..].find('\n').map_or(EXAMPLE.len(), |i| at + i + 1);
                    let line = bytes[line_start..line_end].to_vec();
                    bytes.splice(line_start..line_start, line);
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            if let Err(e) = parse(&text, path()) {
                prop_assert!(e.to_string().contains("alice.yaml"), "{}", e);
            }
        }
    }
}
