//! The plan store: where plans live (`<plans-dir>/<account>/<user>.yaml`),
//! how they are parsed (with file, line and column on any error), locked
//! (one process per plan) and saved (atomically).

use std::fs::{self, File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

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
    #[error("no plan at {path}. Create one with `iam-rotate plan {user}`, or check --plans-dir (env IAM_ROTATE_PLANS_DIR).")]
    NotFound { path: String, user: String },
    #[error("cannot use {path} as the plans folder: {reason}. Check --plans-dir (env IAM_ROTATE_PLANS_DIR); `iam-rotate plan` creates the folder with the first plan.")]
    PlansDir { path: String, reason: String },
    #[error("cannot {action} {path}: {source}. Check that the path exists and that you may read and write it.")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
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

/// The folder of plans.
#[derive(Clone, Debug)]
pub struct PlanStore {
    root: PathBuf,
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
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PlanStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
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

    /// Reads and parses one plan.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = fs::read_to_string(path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                PlanError::NotFound {
                    path: path.display().to_string(),
                    user: path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                }
            } else {
                PlanError::io("read", path, e)
            }
        })?;
        parse(&text, path)
    }

    /// Takes the plan's lock and loads it. `Ok(None)`: another process holds
    /// the lock; nothing was read.
    pub fn lock(path: &Path) -> Result<Option<LockedPlan>, PlanError> {
        if !path.is_file() {
            // Say "no plan", not "cannot open the lock file".
            Self::load(path)?;
        }
        let lock_path = lock_path(path);
        let lock = atomic::open_lock_file(&lock_path)
            .map_err(|e| PlanError::io("open the lock file", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => {
                return Err(PlanError::io("lock", &lock_path, e));
            }
        }
        let plan = Self::load(path)?;
        Ok(Some(LockedPlan {
            path: path.to_path_buf(),
            plan,
            _lock: lock,
        }))
    }

    /// Writes a brand-new plan, holding its lock. `Ok(None)`: another process
    /// holds the lock.
    pub fn create(path: &Path, plan: Plan) -> Result<Option<LockedPlan>, PlanError> {
        if let Some(dir) = path.parent() {
            atomic::create_private_dir(dir)
                .map_err(|e| PlanError::io("create the plans folder", dir, e))?;
        }
        let lock_path = lock_path(path);
        let lock = atomic::open_lock_file(&lock_path)
            .map_err(|e| PlanError::io("open the lock file", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(PlanError::io("lock", &lock_path, e)),
        }
        // Checked again under the lock: another `plan` may have written a
        // plan (and a `run` taken it on) since the caller looked.
        if path.exists() {
            let existing = Self::load(path)?;
            if !existing.phase.is_finished() {
                return Err(PlanError::Invalid {
                    path: path.display().to_string(),
                    message: format!(
                        "another iam-rotate process wrote an unfinished plan here (phase {}) \
                         while this one was planning; it is never replaced",
                        existing.phase
                    ),
                });
            }
        }
        let locked = LockedPlan {
            path: path.to_path_buf(),
            plan,
            _lock: lock,
        };
        locked.save()?;
        Ok(Some(locked))
    }

    /// Removes temporary files left by a process that was killed mid-write,
    /// once they are an hour old: a live writer renames its file within
    /// milliseconds, so an hour-old one has no owner.
    /// They are never read as plans either way; this only tidies the folder.
    pub fn sweep_temporaries(&self, account: &str) -> usize {
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

/// `plans/123/alice.yaml` → `plans/123/.alice.yaml.lock`.
pub fn lock_path(plan_path: &Path) -> PathBuf {
    let name = plan_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    plan_path.with_file_name(format!(".{name}.lock"))
}

/// Parses plan text, naming the file, line and column of any problem.
pub fn parse(text: &str, path: &Path) -> Result<Plan, PlanError> {
    if text.trim().is_empty() {
        return Err(PlanError::Invalid {
            path: path.display().to_string(),
            message: "the file is empty; a plan is a YAML mapping starting with `version: 1`"
                .into(),
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
    let invalid = |message: String| PlanError::Invalid {
        path: path.display().to_string(),
        message,
    };
    if !is_valid_user_name(&plan.user) {
        return Err(invalid(format!(
            "`user: {}` is not a valid IAM user name",
            plan.user
        )));
    }
    if plan.account.len() != 12 || !plan.account.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid(format!(
            "`account: {}` is not a 12-digit AWS account id",
            plan.account
        )));
    }
    if plan.phase == super::Phase::Blocked && plan.blocked_in.is_none() {
        return Err(invalid(
            "the plan is `blocked` but names no `blocked_in` phase".into(),
        ));
    }
    Ok(plan)
}

/// A YAML error's line, column (1-based) and message without the position.
pub fn located(error: &serde_yaml::Error) -> (usize, usize, String) {
    let (line, column) = error
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let mut message = error.to_string();
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    (line, column, message)
}

/// A plan whose lock this process holds. Dropping it releases the lock.
#[derive(Debug)]
pub struct LockedPlan {
    pub path: PathBuf,
    pub plan: Plan,
    _lock: File,
}

impl LockedPlan {
    /// Writes the plan atomically: readers see the old plan or the new one.
    pub fn save(&self) -> Result<(), PlanError> {
        let yaml = to_yaml(&self.plan);
        atomic::write(&self.path, yaml.as_bytes(), 0o644)
            .map_err(|e| PlanError::io("write", &self.path, e))
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
        assert!(err.contains("sideways"), "{err}");
    }

    #[test]
    fn create_never_replaces_an_unfinished_plan_written_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("123456789012").join("alice.yaml");
        let plan = parse(EXAMPLE, &path).unwrap();
        // Another process planned and ran first.
        drop(PlanStore::create(&path, plan.clone()).unwrap());
        let before = fs::read(&path).unwrap();
        let err = PlanStore::create(&path, plan).err().unwrap().to_string();
        assert!(err.contains("never replaced"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before);
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
