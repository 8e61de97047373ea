//! `file:PATH`: a CSV like the console's download, created with mode 0600.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::{DeliverError, Destination};
use crate::atomic;
use crate::iam::CreatedKey;

const HEADER: &str = "Access key ID,Secret access key";

pub(super) fn check(destination: &Destination, path: &Path) -> Result<(), DeliverError> {
    let fail = |message: String| DeliverError::failed(destination, message);
    if path.file_name().is_none() {
        return Err(fail("the path names a folder, not a file".into()));
    }
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(fail(
                "it exists and is not a regular file; choose another path".into(),
            ))
        }
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            return Err(fail(format!(
                "the existing file has mode {:o}, readable by others; a secret is never \
                 written there. Run `chmod 600 {}` or remove the file, then run again",
                meta.permissions().mode() & 0o777,
                path.display()
            )))
        }
        _ => {}
    }
    super::prove_writable(destination, parent(path))
}

pub(super) fn deliver(
    destination: &Destination,
    path: &Path,
    key: &CreatedKey,
) -> Result<(), DeliverError> {
    let fail = |message: String| DeliverError::failed(destination, message);
    let contents = Zeroizing::new(format!(
        "{HEADER}\n{},{}\n",
        key.id,
        key.secret.expose_secret()
    ));
    atomic::write(path, contents.as_bytes(), 0o600)
        .map_err(|e| fail(format!("writing failed: {e}")))?;
    let back = Zeroizing::new(
        fs::read_to_string(path).map_err(|e| fail(format!("reading back failed: {e}")))?,
    );
    let named = back
        .lines()
        .nth(1)
        .and_then(|row| row.split(',').next())
        .unwrap_or_default();
    if named != key.id {
        let _ = fs::remove_file(path);
        return Err(fail(
            "reading the file back did not find the new key id; something else writes there".into(),
        ));
    }
    Ok(())
}

/// The key id in the CSV's data row, if the file is there and readable.
pub(super) fn held_key_id(path: &Path) -> Option<String> {
    let text = Zeroizing::new(fs::read_to_string(path).ok()?);
    let mut lines = text.lines();
    (lines.next()? == HEADER).then_some(())?;
    let id = lines.next()?.split(',').next()?;
    Some(id.to_string())
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
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = check(&Destination::File(path.clone()), &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
