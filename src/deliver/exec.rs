//! `exec:COMMAND ARGS…`: a program of the operator's, run directly (never
//! through a shell), given the key as one JSON document on its standard
//! input. The secret is never in its arguments or environment. Exit status
//! 0 means delivered; anything else is a failed delivery.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{DeliverError, Destination, Held};
use crate::iam::CreatedKey;

/// How long a program may take before the delivery counts as failed.
const TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How much of the program's stdout and stderr is kept.
const MAX_OUTPUT: usize = 64 * 1024;

/// How many of stderr's last lines a failure quotes.
const STDERR_LINES: usize = 10;

/// Splits `COMMAND ARGS…` as a shell would split plain words and quotes
/// (nothing is expanded: no shell runs). When planning, a bare command
/// name is looked up in PATH and pinned as an absolute path; a plan's must
/// already be absolute.
pub(super) fn parse(rest: &str, at_plan_time: bool) -> Result<(PathBuf, Vec<String>), String> {
    let mut words = shell_words::split(rest)
        .map_err(|e| format!("cannot split the command into words ({e})"))?
        .into_iter();
    let Some(command) = words.next() else {
        return Err("name a command: exec:COMMAND ARGS...".into());
    };
    let args: Vec<String> = words.collect();
    if !at_plan_time {
        let program = PathBuf::from(&command);
        if !program.is_absolute() {
            return Err(
                "a plan's exec: command must be an absolute path (`plan` pins it so); write \
                 the full path in `delivery:`"
                    .into(),
            );
        }
        return Ok((program, args));
    }
    let program = if command.contains('/') {
        std::path::absolute(&command)
            .map_err(|e| format!("cannot make {command} an absolute path ({e})"))?
    } else {
        find_in_path(&command).ok_or_else(|| {
            format!(
                "command {command} was not found in PATH; install it, or give its absolute path"
            )
        })?
    };
    if !is_executable(&program) {
        return Err(format!(
            "{} is not an executable file; give the path of the program to run",
            program.display()
        ));
    }
    Ok((program, args))
}

/// The first executable file named `name` in PATH's folders.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is a valid NUL-terminated string for the call.
    unsafe { libc::access(c_path.as_ptr(), libc::X_OK) == 0 }
}

/// Before a key exists: the program is there and may be run.
pub(super) fn check(destination: &Destination, program: &Path) -> Result<(), DeliverError> {
    if !program.is_absolute() {
        return Err(DeliverError::failed(
            destination,
            "the command is not an absolute path; plan again, or write its full path in \
             `delivery:`",
        ));
    }
    if !is_executable(program) {
        return Err(DeliverError::failed(
            destination,
            format!(
                "{} is missing or not executable; install it (or fix `delivery:`) and run again",
                program.display()
            ),
        ));
    }
    Ok(())
}

/// An exec: program keeps nothing iam-rotate can read.
pub(super) fn held() -> Held {
    Held::Unknown(
        "an exec: destination cannot be read back, so whether the program received this key \
         cannot be told; check where the program puts keys, then either keep this key as the \
         new one or delete it and run again"
            .into(),
    )
}

pub(super) async fn deliver(
    destination: &Destination,
    program: &Path,
    args: &[String],
    user: &str,
    account: &str,
    key: &CreatedKey,
) -> Result<(), DeliverError> {
    deliver_within(destination, program, args, user, account, key, TIMEOUT).await
}

async fn deliver_within(
    destination: &Destination,
    program: &Path,
    args: &[String],
    user: &str,
    account: &str,
    key: &CreatedKey,
    timeout: Duration,
) -> Result<(), DeliverError> {
    let document = super::json::exec_document(key, user, account);
    let secret = key.secret.expose_secret();
    let fail = |message: String| {
        DeliverError::failed(
            destination,
            super::scrub(&message, &[document.as_str(), secret]),
        )
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start {} ({e})", program.display())))?;
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();

    let run = async {
        let write = async {
            if let Some(mut stdin) = stdin.take() {
                stdin.write_all(document.as_bytes()).await?;
                stdin.shutdown().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let (written, _out, err, status) = tokio::join!(
            write,
            read_bounded(stdout),
            read_bounded(stderr),
            child.wait()
        );
        (written, err, status)
    };
    let (written, err, status) = match tokio::time::timeout(timeout, run).await {
        Ok(done) => done,
        Err(_) => {
            // kill_on_drop ends it; say how long it was given.
            return Err(fail(format!(
                "{} did not finish within {}s and was stopped",
                program.display(),
                timeout.as_secs()
            )));
        }
    };
    let err = zeroize::Zeroizing::new(err);
    let tail = stderr_tail(&err);
    let status =
        status.map_err(|e| fail(format!("waiting for {} failed ({e})", program.display())))?;
    if !status.success() {
        let how = match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        return Err(fail(format!("{} {how}{tail}", program.display())));
    }
    if let Err(e) = written {
        return Err(fail(format!(
            "{} exited 0 without reading the key from its standard input ({e}){tail}",
            program.display()
        )));
    }
    Ok(())
}

/// The first [`MAX_OUTPUT`] bytes of a pipe; the rest is read and dropped
/// so the program never blocks on a full pipe.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    kept
}

/// `; its stderr ended: …` with stderr's last lines, or nothing.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "; it wrote nothing on stderr".into();
    }
    let start = lines.len().saturating_sub(STDERR_LINES);
    format!("; its stderr ended:\n  {}", lines[start..].join("\n  "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use secrecy::SecretString;
    use std::os::unix::fs::PermissionsExt;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn key() -> CreatedKey {
        CreatedKey {
            id: "AKIAEXAMPLE000000001".into(),
            created_at: Utc::now(),
            secret: SecretString::from(SECRET.to_string()),
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn destination(program: &Path, args: &[&str]) -> Destination {
        Destination::Exec {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            user: "alice".into(),
            account: "123456789012".into(),
        }
    }

    #[test]
    fn a_bare_name_is_pinned_from_path_and_round_trips() {
        let d = Destination::resolve("exec:sh -c 'echo {user}' x", "alice", "1").unwrap();
        let Destination::Exec { program, args, .. } = &d else {
            panic!("{d:?}")
        };
        assert!(program.is_absolute(), "{program:?}");
        assert_eq!(args, &["-c", "echo alice", "x"]);
        let spec = d.to_string();
        let mut plan: crate::plan::Plan = serde_yaml::from_str(
            "version: 1\naccount: '1'\nuser: alice\n\
             user_arn: arn:aws:iam::1:user/alice\ndelivery: stdout\n\
             policy: {adoption_wait: 7d, quiet_period: 3d, verify_period: 7d, \
             require_new_key_use: true}\n\
             old_key: {id: AKIAIOSFODNN7EXAMPLE, created_at: 2025-06-02T08:14:51Z, \
             status: Active}\nphase: create_second_key\nphase_since: 2026-11-26T09:00:04Z\n",
        )
        .unwrap();
        plan.delivery = spec;
        assert_eq!(Destination::of_plan(&plan).unwrap(), d);
        plan.delivery = "exec:sh -c x".into();
        let err = Destination::of_plan(&plan).unwrap_err().to_string();
        assert!(err.contains("absolute path"), "{err}");
    }

    #[test]
    fn a_missing_program_is_refused_when_planned() {
        for spec in [
            "exec:no-such-program-iam-rotate",
            "exec:/no/such/program",
            "exec:",
            "exec:'unclosed",
        ] {
            let err = Destination::resolve(spec, "a", "1")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("invalid delivery destination"),
                "{spec}: {err}"
            );
        }
    }

    #[tokio::test]
    async fn the_key_arrives_on_stdin_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("got");
        let program = script(
            dir.path(),
            "take",
            &format!(
                "cat > '{}'; echo \"$@\" > '{}.argv'",
                out.display(),
                out.display()
            ),
        );
        let d = destination(&program, &["one", "two"]);
        check(&d, &program).unwrap();
        deliver(
            &d,
            &program,
            &["one".into(), "two".into()],
            "alice",
            "123456789012",
            &key(),
        )
        .await
        .unwrap();
        let got: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(got["SecretAccessKey"], SECRET);
        assert_eq!(got["AccessKeyId"], "AKIAEXAMPLE000000001");
        assert_eq!(got["UserName"], "alice");
        assert_eq!(got["Account"], "123456789012");
        let argv = std::fs::read_to_string(dir.path().join("got.argv")).unwrap();
        assert_eq!(argv.trim(), "one two");
    }

    #[tokio::test]
    async fn a_failure_quotes_stderr_without_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(
            dir.path(),
            "fail",
            "read line; echo \"first\" >&2; echo \"got $line\" >&2; echo denied >&2; exit 3",
        );
        let d = destination(&program, &[]);
        let err = deliver(&d, &program, &[], "alice", "1", &key())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited with status 3"), "{err}");
        assert!(err.contains("denied"), "{err}");
        assert!(!err.contains(SECRET), "{err}");
    }

    #[tokio::test]
    async fn a_program_that_hangs_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "hang", "exec sleep 30");
        let d = destination(&program, &[]);
        let err = deliver_within(
            &d,
            &program,
            &[],
            "a",
            "1",
            &key(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("did not finish"), "{err}");
    }

    #[test]
    fn a_non_executable_file_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        std::fs::write(&path, "x").unwrap();
        let err = check(&destination(&path, &[]), &path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not executable"), "{err}");
    }

    #[test]
    fn exec_cannot_be_read_back() {
        assert!(matches!(held(), Held::Unknown(m) if m.contains("cannot be read back")));
    }
}
