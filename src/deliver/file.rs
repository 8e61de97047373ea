//! `file:PATH`: a CSV like the console's download, created with mode 0600.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::{DeliverError, Destination, Held};
use crate::atomic;
use crate::iam::CreatedKey;

const HEADER: &str = "Access key ID,Secret access key";

pub(super) fn check(destination: &Destination, path: &Path) -> Result<(), DeliverError> {
    let fail = |message: String| DeliverError::failed(destination, message);
    if path.file_name().is_none() {
        return Err(fail("the path names a folder, not a file".into()));
    }
    if !path.is_absolute() {
        return Err(fail(
            "the path is relative, so where it lands would depend on the folder iam-rotate \
             runs in; give an absolute path in `delivery:` (plan again, or edit the plan)"
                .into(),
        ));
    }
    let me = super::prove_writable(destination, parent(path))?;
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(format!("cannot look at the file there ({e})"))),
    };
    if !meta.file_type().is_file() {
        return Err(fail(
            "it exists and is not a regular file; choose another path".into(),
        ));
    }
    if meta.uid() != me {
        return Err(fail(format!(
            "the existing file belongs to another user (uid {}), so it was not written by \
             this iam-rotate user and is never replaced; choose another path",
            meta.uid()
        )));
    }
    if !is_our_csv(path) {
        return Err(fail(
            "the existing file is not an access key CSV (its first line is not `Access key \
             ID,Secret access key`), and a file iam-rotate did not write is never replaced. \
             To put the key into a shared credentials file use `profile:NAME` instead; \
             otherwise choose another path"
                .into(),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(fail(format!(
            "the existing file has mode {:o}, readable by others; a secret is never \
             written there. Run `chmod 600 {}` or remove the file, then run again",
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    Ok(())
}

/// Larger than any access key CSV: a bigger file is something else.
const MAX_CSV_BYTES: u64 = 4096;

/// Whether `path` is a CSV like the ones this destination writes: the
/// console's header, then at most one row. Only the first few KiB are read.
fn is_our_csv(path: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    let mut bytes = Zeroizing::new(Vec::new());
    if file
        .take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut bytes)
        .is_err()
        || bytes.len() as u64 > MAX_CSV_BYTES
    {
        return false;
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return false;
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    lines.next().map(|l| l.trim_end_matches('\r')) == Some(HEADER) && lines.nth(1).is_none()
}

pub(super) fn deliver(
    destination: &Destination,
    path: &Path,
    key: &CreatedKey,
) -> Result<(), DeliverError> {
    deliver_reading_back_with(destination, path, key, |p| fs::read_to_string(p))
}

/// [`deliver`], with the read-back given, so tests can make it fail.
fn deliver_reading_back_with(
    destination: &Destination,
    path: &Path,
    key: &CreatedKey,
    read_back: impl Fn(&Path) -> io::Result<String>,
) -> Result<(), DeliverError> {
    let fail = |message: String| DeliverError::failed(destination, message);
    // What the file holds now (often the old key's CSV) and its mode, to
    // put back if the delivery fails: nothing half-done may stay behind.
    let previous = match fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            let mode = fs::metadata(path)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o600);
            Some((bytes, mode))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(fail(format!(
                "cannot read the file there now ({e}), so it could not be put back if the \
                 delivery failed; nothing was changed"
            )))
        }
    };
    let contents = Zeroizing::new(format!(
        "{HEADER}\n{},{}\n",
        key.id,
        key.secret.expose_secret()
    ));
    // A failed atomic write leaves the file as it was.
    atomic::write(path, contents.as_bytes(), 0o600)
        .map_err(|e| fail(format!("writing failed: {e}")))?;
    drop(contents);

    let problem = match read_back(path).map(Zeroizing::new) {
        Ok(back) => {
            let named = back
                .lines()
                .nth(1)
                .and_then(|row| row.split(',').next())
                .unwrap_or_default();
            if named == key.id {
                return Ok(());
            }
            "reading the file back did not find the new key id; something else writes there"
                .to_string()
        }
        Err(e) => format!("reading the file back failed ({e})"),
    };
    let restored = match &previous {
        Some((bytes, mode)) => atomic::write(path, bytes, *mode),
        None => fs::remove_file(path),
    };
    Err(fail(match (restored, previous.is_some()) {
        (Ok(()), true) => format!("{problem}; the file was put back as it was"),
        (Ok(()), false) => format!("{problem}; the file written for it was removed again"),
        (Err(e), _) => format!(
            "{problem}, and putting the file back as it was failed too ({e}); check {} by hand",
            path.display()
        ),
    }))
}

/// The key id in the CSV's data row. A missing file, or one that is not
/// such a CSV, holds no key (a delivery writes nothing else there); a file
/// that cannot be read cannot tell.
pub(super) fn held(path: &Path) -> Held {
    let text = match fs::read(path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Held::Nothing,
        Err(e) => return Held::Unknown(format!("cannot read {}: {e}", path.display())),
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Held::Nothing;
    }
    match lines.next().and_then(|row| row.split(',').next()) {
        Some(id) if !id.is_empty() => Held::Key(id.to_string()),
        _ => Held::Nothing,
    }
}

pub(super) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use secrecy::SecretString;

    fn key() -> CreatedKey {
        CreatedKey {
            id: "AKIAEXAMPLE000000001".into(),
            created_at: Utc::now(),
            secret: SecretString::from("x".repeat(40)),
        }
    }

    #[test]
    fn writes_a_private_console_style_csv() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/alice.csv");
        let dest = Destination::File(path.clone());
        check(&dest, &path).unwrap();
        deliver(&dest, &path, &key()).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("Access key ID,Secret access key\nAKIAEXAMPLE000000001,"));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn refuses_an_existing_file_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("open.csv");
        fs::write(&path, OLD_CSV).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = check(&Destination::File(path.clone()), &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn refuses_to_replace_a_file_it_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            (
                "credentials",
                "[default]\naws_access_key_id = AKIAOLDKEY0000000001\naws_secret_access_key = x\n",
            ),
            ("id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n"),
            (".netrc", "machine example.com login a password b\n"),
            ("empty.csv", ""),
            (
                "longer.csv",
                "Access key ID,Secret access key\nAKIA1,x\nAKIA2,y\n",
            ),
        ] {
            let path = dir.path().join(name);
            private_file(&path, text, 0o600);
            let err = check(&Destination::File(path.clone()), &path)
                .unwrap_err()
                .to_string();
            assert!(err.contains("profile:NAME"), "{name}: {err}");
            assert!(!err.contains("AKIAOLDKEY"), "{name}: {err}");
            assert_eq!(fs::read_to_string(&path).unwrap(), text, "{name}");
        }
        let ours = dir.path().join("ours.csv");
        private_file(&ours, OLD_CSV, 0o600);
        check(&Destination::File(ours.clone()), &ours).unwrap();
    }

    #[test]
    fn refuses_a_relative_path() {
        let path = Path::new("alice.csv");
        let err = check(&Destination::File(path.into()), path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("absolute path"), "{err}");
    }

    const OLD_CSV: &str = "Access key ID,Secret access key\nAKIAOLDKEY0000000001,old-test-value\n";

    fn private_file(path: &Path, text: &str, mode: u32) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_failed_read_back_puts_the_previous_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.csv");
        private_file(&path, OLD_CSV, 0o400);
        let dest = Destination::File(path.clone());
        let err = deliver_reading_back_with(&dest, &path, &key(), |_| {
            Err(io::Error::other("injected read failure"))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("put back as it was"), "{err}");
        assert!(!err.contains(&"x".repeat(40)), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), OLD_CSV);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o400
        );
    }

    #[test]
    fn a_read_back_naming_another_key_puts_the_previous_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice.csv");
        private_file(&path, OLD_CSV, 0o600);
        let dest = Destination::File(path.clone());
        let err = deliver_reading_back_with(&dest, &path, &key(), |_| {
            Ok("Access key ID,Secret access key\nAKIAOTHER00000000000,y\n".into())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("did not find the new key id"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), OLD_CSV);
    }

    #[test]
    fn a_failed_read_back_removes_only_a_file_it_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.csv");
        let dest = Destination::File(path.clone());
        let err = deliver_reading_back_with(&dest, &path, &key(), |_| {
            Err(io::Error::other("injected read failure"))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("removed again"), "{err}");
        assert!(!path.exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
