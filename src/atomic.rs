//! Crash-safe file writes: a temporary file in the same folder, fsync, rename
//! over the target, fsync the folder. A reader sees the old file or the new
//! one, never half of either.
//!
//! A crash between creating the temporary file and the rename leaves it
//! behind, and for a secret destination it holds the secret. Every write
//! therefore first removes its own destination's leftovers: files named
//! exactly like its temporaries (`.NAME.XXXXXX.tmp`), owned by the same
//! user, and old enough that no live write can still be using them. A
//! process reads each folder for leftovers once per [`STALE_TEMP_AGE`], not
//! once per write: a batch writes a thousand plans into one folder, and
//! reading that folder for every write would make the batch quadratic.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Temporary files carry this suffix and a leading dot, so that nothing that
/// lists `*.yaml` ever takes one for a plan.
pub const TEMP_SUFFIX: &str = ".tmp";

/// How many random characters a temporary file's name holds, set
/// explicitly (not left to tempfile's default) so that the pattern
/// [`is_temp_of`] matches stays the one [`write`] makes.
const TEMP_RANDOM_LEN: usize = 6;

/// A temporary file older than this is the remains of a crash: a write
/// holds its temporary for milliseconds, so a live one is never this old.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(5 * 60);

/// Writes `contents` to `path` atomically with the given permission bits.
///
/// Once the rename has happened the new contents are in place, and `Ok` is
/// returned even when the folder's fsync after it fails: an error would make
/// callers believe the write failed, and undo or report something that did
/// not happen. Only durability across a power loss is then in doubt, which
/// is logged as a warning.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_then_sync(path, contents, mode, sync_dir)
}

/// [`write`], with the folder's fsync given, so tests can make it fail.
fn write_then_sync(
    path: &Path,
    contents: &[u8],
    mode: u32,
    sync_folder: fn(&Path) -> io::Result<()>,
) -> io::Result<()> {
    #[cfg(test)]
    observer::notify(path, observer::Stage::Write);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(TEMP_SUFFIX)
        .rand_bytes(TEMP_RANDOM_LEN)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    // Our own temporary says who we are; only that user's leftovers go.
    let owner = temp.as_file().metadata()?.uid();
    remove_stale_temps(dir, &name, owner, STALE_TEMP_AGE);
    // The umask may have narrowed the mode at creation; set it exactly.
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    #[cfg(test)]
    observer::notify(path, observer::Stage::Renamed);
    if let Err(e) = sync_folder(dir) {
        tracing::warn!(
            "{} was replaced, but flushing its folder to disk failed ({e}); the new contents \
             are in place, though a power loss now could still lose them",
            path.display()
        );
    }
    Ok(())
}

/// Whether `candidate` is a temporary file [`write`] makes for a target
/// named `name`: `.NAME.` + exactly [`TEMP_RANDOM_LEN`] letters or digits +
/// [`TEMP_SUFFIX`], and nothing else.
fn is_temp_of(name: &str, candidate: &str) -> bool {
    candidate
        .strip_prefix('.')
        .and_then(|rest| rest.strip_prefix(name))
        .and_then(|rest| rest.strip_prefix('.'))
        .and_then(|rest| rest.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|random| {
            random.len() == TEMP_RANDOM_LEN && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// What one reading of a folder found: the names there shaped like a
/// temporary of any target, and when it was read.
struct Leftovers {
    /// The wall clock, as the files' ages are: a suspended machine's
    /// monotonic clock stands still while the files grow old.
    read_at: SystemTime,
    names: Vec<String>,
}

/// Each folder's [`Leftovers`], read at most once per [`STALE_TEMP_AGE`]
/// by this process. Live writes' temporaries may be among them (the write
/// that reads the folder has made its own already); each candidate is
/// looked at again before it is removed, and a live one is never old
/// enough. A crashed process's temporary that is not yet stale when the
/// folder is read is removed by the next reading or the next process.
static LEFTOVERS: Mutex<BTreeMap<PathBuf, Leftovers>> = Mutex::new(BTreeMap::new());

/// Test builds only: each folder read for leftovers, once per reading.
#[cfg(test)]
static FOLDER_READS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The names in `dir` that start with a dot and end in [`TEMP_SUFFIX`].
fn read_leftovers(dir: &Path) -> Vec<String> {
    #[cfg(test)]
    FOLDER_READS.lock().unwrap().push(dir.to_path_buf());
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with('.') && name.ends_with(TEMP_SUFFIX))
        .collect()
}

/// Removes the temporaries of the target `name` in `dir` that a crashed
/// write left behind: regular files (never a link) owned by `owner`, last
/// modified more than `older_than` ago. Best effort; returns how many went.
fn remove_stale_temps(dir: &Path, name: &str, owner: u32, older_than: Duration) -> usize {
    let candidates: Vec<String> = {
        let mut folders = LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner());
        let leftovers = folders
            .entry(dir.to_path_buf())
            .or_insert_with(|| Leftovers {
                read_at: SystemTime::now(),
                names: read_leftovers(dir),
            });
        // A clock set back since counts as too old too.
        if leftovers
            .read_at
            .elapsed()
            .map_or(true, |age| age > STALE_TEMP_AGE)
        {
            leftovers.read_at = SystemTime::now();
            leftovers.names = read_leftovers(dir);
        }
        leftovers
            .names
            .iter()
            .filter(|candidate| is_temp_of(name, candidate))
            .cloned()
            .collect()
    };
    let mut removed = 0;
    for candidate in candidates {
        let path = dir.join(&candidate);
        // Looked at again now, without following a symbolic link: the
        // folder may have changed since it was read.
        let Ok(meta) = fs::symlink_metadata(&path) else {
            forget_leftover(dir, &candidate);
            continue;
        };
        let stale = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > older_than);
        if meta.file_type().is_file() && meta.uid() == owner && stale {
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    forget_leftover(dir, &candidate);
                    tracing::debug!("removed {}, left by a crashed write", path.display());
                }
                Err(e) => tracing::debug!("cannot remove {}: {e}", path.display()),
            }
        }
    }
    removed
}

/// Drops `name` from the leftovers known in `dir`: it is gone.
fn forget_leftover(dir: &Path, name: &str) {
    let mut folders = LEFTOVERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(leftovers) = folders.get_mut(dir) {
        leftovers.names.retain(|n| n != name);
    }
}

/// Flushes a folder's entries (a rename or a new file) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its parents with mode 0700 where they are missing.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Opens (creating if needed) a lock file; its content is never read.
///
/// A symbolic link there is never followed (`O_NOFOLLOW`, failing with
/// `ELOOP`): a lock must not become a way to create or open a file
/// elsewhere.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    #[cfg(test)]
    observer::notify(path, observer::Stage::Lock);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Test builds only: an observer of the file side effects above, which the
/// deterministic simulation ([`crate::sim`]) numbers as crash points and
/// may crash at (by unwinding). Release builds of the binary have no hook.
#[cfg(test)]
pub(crate) mod observer {
    use std::cell::RefCell;
    use std::path::Path;
    use std::rc::Rc;

    /// Where in a file side effect the observer is told.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Stage {
        /// An atomic write is about to start: nothing is on disk yet.
        Write,
        /// The rename is done: the new contents are what readers see.
        Renamed,
        /// A lock file is about to be opened (and then locked).
        Lock,
    }

    type Hook = Rc<dyn Fn(&Path, Stage)>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Installs `hook` for this thread; returns the one it replaces.
    pub(crate) fn set(hook: Option<Hook>) -> Option<Hook> {
        HOOK.with(|h| std::mem::replace(&mut *h.borrow_mut(), hook))
    }

    pub(super) fn notify(path: &Path, stage: Stage) {
        // Cloned out first: the hook may unwind, and must find the cell free.
        let hook = HOOK.with(|h| h.borrow().clone());
        if let Some(hook) = hook {
            hook(path, stage);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.yaml");
        write(&target, b"one", 0o600).unwrap();
        write(&target, b"two", 0o640).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "two");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
    /// Backdates a file's modification time by `age`.
    fn age(path: &Path, age: Duration) {
        let when = std::time::SystemTime::now() - age;
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    #[test]
    fn the_temporary_name_pattern_is_the_one_write_makes() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["alice.csv", "credentials", "a.yaml"] {
            let temp = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(TEMP_SUFFIX)
                .rand_bytes(TEMP_RANDOM_LEN)
                .tempfile_in(dir.path())
                .unwrap();
            let made = temp.path().file_name().unwrap().to_str().unwrap();
            assert!(is_temp_of(name, made), "{made}");
        }
        for other in [
            ".alice.csv.tmp",
            ".alice.csv.abc.tmp",
            ".alice.csv.abcdefg.tmp",
            ".alice.csv.ab-def.tmp",
            ".alice.csv.abcdef.tmp.bak",
            "alice.csv.abcdef.tmp",
            ".alice.csv.abcdef.yaml",
            ".alice.csvx.abcdef.tmp",
            ".bob.csv.abcdef.tmp",
            ".alice.abcdef.tmp",
            "alice.csv",
        ] {
            assert!(!is_temp_of("alice.csv", other), "{other}");
        }
    }

    #[test]
    fn a_write_removes_only_this_targets_stale_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let old = STALE_TEMP_AGE + Duration::from_secs(60);
        let put = |name: &str, age_by: Option<Duration>| {
            let path = d.join(name);
            fs::write(&path, "left over").unwrap();
            if let Some(by) = age_by {
                age(&path, by);
            }
            path
        };
        // A crash's leftover of this target: goes.
        let stale = put(".alice.csv.Ab3dE9.tmp", Some(old));
        // All of these stay.
        let fresh = put(".alice.csv.Zz0000.tmp", None);
        let other_target = put(".bob.csv.Ab3dE9.tmp", Some(old));
        let other_shape = put(".alice.csv.Ab3dE9x.tmp", Some(old));
        let other_suffix = put(".alice.csv.Ab3dE9.tmp.keep", Some(old));
        let real_file = put("alice.csv.Ab3dE9.tmp", Some(old));
        let linked = put("linked-to", Some(old));
        std::os::unix::fs::symlink(&linked, d.join(".alice.csv.Lnk000.tmp")).unwrap();
        fs::create_dir(d.join(".alice.csv.Dir000.tmp")).unwrap();

        write(&d.join("alice.csv"), b"new", 0o600).unwrap();

        assert!(!stale.exists(), "the stale temporary is removed");
        for kept in [
            &fresh,
            &other_target,
            &other_shape,
            &other_suffix,
            &real_file,
            &linked,
        ] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        assert!(d.join(".alice.csv.Lnk000.tmp").symlink_metadata().is_ok());
        assert!(d.join(".alice.csv.Dir000.tmp").is_dir());
        assert_eq!(fs::read_to_string(d.join("alice.csv")).unwrap(), "new");
    }

    /// How many times this process read `dir` for leftovers.
    fn readings_of(dir: &Path) -> usize {
        FOLDER_READS
            .lock()
            .unwrap()
            .iter()
            .filter(|f| *f == dir)
            .count()
    }

    /// A batch writes many targets into one folder: the folder is read for
    /// leftovers once, not once per write, and a leftover found in that
    /// reading is still removed by its own target's write later.
    #[test]
    fn a_folder_is_read_for_leftovers_once_for_many_writes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let stale = d.join(".user-099.yaml.Ab3dE9.tmp");
        fs::write(&stale, "left over").unwrap();
        age(&stale, STALE_TEMP_AGE + Duration::from_secs(60));
        for i in 0..100 {
            let target = d.join(format!("user-{i:03}.yaml"));
            write(&target, b"one", 0o644).unwrap();
            write(&target, b"two", 0o644).unwrap();
            assert_eq!(stale.exists(), i < 99, "after user-{i:03}");
        }
        assert_eq!(
            readings_of(d),
            1,
            "readings of the folder for 200 writes into it"
        );
        let names: Vec<_> = fs::read_dir(d).unwrap().collect();
        assert_eq!(names.len(), 100);
    }

    /// The folder was read while a stale leftover was a plain file; by the
    /// time its target is written, someone has put a link to another file
    /// in its place. The write looks again, sees the link, and leaves both
    /// the link and the file it points to alone.
    #[test]
    fn a_leftover_swapped_for_a_link_after_the_reading_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let old = STALE_TEMP_AGE + Duration::from_secs(60);
        let leftover = d.join(".bob.csv.Ab3dE9.tmp");
        fs::write(&leftover, "left over").unwrap();
        age(&leftover, old);
        let victim = d.join("someone-elses-file");
        fs::write(&victim, "keep me").unwrap();
        age(&victim, old);
        // alice's write reads the folder; bob's leftover is in the reading.
        write(&d.join("alice.csv"), b"a", 0o600).unwrap();
        fs::remove_file(&leftover).unwrap();
        std::os::unix::fs::symlink(&victim, &leftover).unwrap();

        write(&d.join("bob.csv"), b"b", 0o600).unwrap();

        assert!(leftover
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(
            readings_of(d),
            1,
            "bob's write used the reading alice's made"
        );
    }

    #[test]
    fn a_failed_folder_fsync_after_the_rename_is_not_a_failed_write() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.csv");
        write(&target, b"old", 0o600).unwrap();
        let result = write_then_sync(&target, b"new", 0o600, |_| {
            Err(io::Error::other("injected fsync failure"))
        });
        result.expect("the rename happened, so the write succeeded");
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
    }
}
