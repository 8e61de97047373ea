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

    /// The account folders under the root, sorted.
    pub fn accounts(&self) -> Result<Vec<String>, PlanError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(PlanError::io("read the plans folder", &self.root, e)),
        };
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
            if !name.starts_with('.') && name.ends_with(".yaml") {
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
        let locked = LockedPlan {
            path: path.to_path_buf(),
            plan,
            _lock: lock,
        };
        locked.save()?;
        Ok(Some(locked))
    }

    /// Removes temporary files left by a process that was killed mid-write.
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
                .is_some_and(|age| age.as_secs() > 60);
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
