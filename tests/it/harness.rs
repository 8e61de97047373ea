//! The integration-test harness: a `moto_server` per test on a free loopback
//! port, the real `iam-rotate` binary pointed at it, and helpers to set up
//! users and keys and to sign requests with a key, as an application would.
//!
//! moto comes from the repository's `.venv` (made by `scripts/test.sh`) or
//! from `IAM_ROTATE_MOTO_SERVER`. Without it a test is skipped with a note,
//! except under `CI=true`, where it fails: CI must never pass by skipping.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};

use crate::proxy::{Faults, Proxy};

/// The account moto serves unless told otherwise.
pub const ACCOUNT: &str = "123456789012";

/// Returns the harness, or skips the test when moto is not installed.
#[macro_export]
macro_rules! moto_env {
    () => {
        match $crate::harness::Env::new() {
            Some(env) => env,
            None => return,
        }
    };
}

/// A running `moto_server`, stopped when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn moto_server_path() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("IAM_ROTATE_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    local.exists().then_some(local)
}

impl Moto {
    /// Starts moto serving `account`. `None` (skip) only outside CI.
    pub fn start(account: &str, log_dir: &Path) -> Option<Moto> {
        let Some(server) = moto_server_path() else {
            assert!(
                !in_ci(),
                "moto_server not found (.venv/bin/moto_server or IAM_ROTATE_MOTO_SERVER) and \
                 CI=true: run the tests with scripts/test.sh"
            );
            eprintln!("skipped: moto_server not installed; run scripts/test.sh");
            return None;
        };
        // Another test may take the port between this probe and moto's
        // bind; a few attempts make that harmless.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let log = log_dir.join(format!("moto-{port}.log"));
            let mut command = Command::new(&server);
            // moto serves ACCOUNT by default. MOTO_ACCOUNT_ID pins every
            // request to one account, so it is set only for another one:
            // without it, credentials from AssumeRole into another account
            // work in that account, as they do in AWS.
            if account != ACCOUNT {
                command.env("MOTO_ACCOUNT_ID", account);
            }
            let child = command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).expect("moto log"))
                .stderr(std::fs::File::create(log.with_extension("err")).expect("moto log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", server.display()));
            let mut moto = Moto {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
            };
            if moto.wait_ready(Duration::from_secs(30)) {
                return Some(moto);
            }
        }
        panic!(
            "moto_server did not start; see its logs in {}",
            log_dir.display()
        );
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if http(&self.endpoint, "GET", "/moto-api/", "")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP/1.1 request on loopback; the whole response as text.
pub fn http(endpoint: &str, method: &str, path: &str, body: &str) -> Option<String> {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// An access key as IAM returned it at creation. The secret stays in the
/// test's memory; the leak scan looks for it everywhere else.
#[derive(Clone, Debug)]
pub struct Key {
    pub id: String,
    pub secret: String,
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    #[track_caller]
    pub fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// One test's world: a moto server, a scratch folder with `HOME` and the
/// plans folder in it, and every secret and output seen, for the scan.
pub struct Env {
    pub moto: Moto,
    /// Between the binary and moto: counts requests, injects faults.
    pub proxy: Proxy,
    pub dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    secrets: RefCell<Vec<String>>,
    outputs: RefCell<Vec<String>>,
}

impl Env {
    pub fn new() -> Option<Env> {
        Env::for_account(ACCOUNT)
    }

    pub fn for_account(account: &str) -> Option<Env> {
        let dir = tempfile::tempdir().expect("scratch folder");
        std::fs::create_dir_all(dir.path().join("home/.aws")).unwrap();
        std::fs::write(dir.path().join("home/.aws/config"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let moto = Moto::start(account, &dir.path().join("logs"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let proxy = Proxy::start(&moto.endpoint, Faults::default());
        Some(Env {
            proxy,
            moto,
            dir,
            runtime,
            secrets: RefCell::default(),
            outputs: RefCell::default(),
        })
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn plans(&self) -> PathBuf {
        self.dir.path().join("plans")
    }

    pub fn plan_path(&self, user: &str) -> PathBuf {
        self.plans().join(ACCOUNT).join(format!("{user}.yaml"))
    }

    pub fn plan_text(&self, user: &str) -> String {
        std::fs::read_to_string(self.plan_path(user)).expect("plan file")
    }

    pub fn plan_yaml(&self, user: &str) -> serde_yaml::Value {
        serde_yaml::from_str(&self.plan_text(user)).unwrap()
    }

    /// The binary with the environment an operator would have: the standard
    /// AWS variables pointing at moto, and nothing from this machine.
    pub fn command(&self) -> Command {
        let mut cmd = bare_command();
        let home = self.home();
        cmd.current_dir(self.dir.path())
            .env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", "AKIAOPERATOR00000000")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "operator-test-credentials-not-secret00000",
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.proxy.endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("IAM_ROTATE_PLANS_DIR", self.plans())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `iam-rotate ARGS` with the clock at `now` (days from the real
    /// time, `None` for the real clock) and keeps the output for the scan.
    pub fn run_at(&self, now: Option<f64>, args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.args(args);
        if let Some(days) = now {
            cmd.env("IAM_ROTATE_NOW", at(days));
        }
        self.capture(cmd.output().expect("run iam-rotate"))
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_at(None, args)
    }

    /// Starts `iam-rotate ARGS` (output piped, for [`Env::capture`]) and
    /// returns once `ready` holds; fails the test after `limit` with
    /// `what`, the thing that never happened.
    pub fn spawn_until(
        &self,
        args: &[&str],
        ready: impl Fn() -> bool,
        limit: Duration,
        what: &str,
    ) -> Child {
        let child = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !ready() {
            assert!(start.elapsed() < limit, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    pub fn capture(&self, output: Output) -> Run {
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        self.outputs
            .borrow_mut()
            .push(format!("{}\n{}", run.stdout, run.stderr));
        run
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    pub fn sdk_config(&self, id: &str, secret: &str) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.moto.endpoint)
            .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
                Credentials::new(id, secret, None, None, "test"),
            ))
            .build()
    }

    /// IAM as the account's administrator.
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.sdk_config(
            "AKIAADMIN00000000000",
            "admin-test-credentials-not-secret0000000",
        ))
    }

    /// Creates a user with `keys` access keys.
    pub fn user(&self, name: &str, keys: usize) -> Vec<Key> {
        let iam = self.iam();
        self.block_on(async {
            iam.create_user().user_name(name).send().await.unwrap();
            let mut made = Vec::new();
            for _ in 0..keys {
                made.push(self.create_key_with(&iam, name).await);
            }
            made
        })
    }

    pub async fn create_key_with(&self, iam: &aws_sdk_iam::Client, user: &str) -> Key {
        let out = iam
            .create_access_key()
            .user_name(user)
            .send()
            .await
            .unwrap();
        let key = out.access_key().unwrap();
        let key = Key {
            id: key.access_key_id().to_string(),
            secret: key.secret_access_key().to_string(),
        };
        self.secrets.borrow_mut().push(key.secret.clone());
        key
    }

    /// The user's keys as IAM lists them: (id, status), oldest first.
    pub fn keys(&self, user: &str) -> Vec<(String, String)> {
        let iam = self.iam();
        self.block_on(async {
            let out = iam.list_access_keys().user_name(user).send().await.unwrap();
            let mut keys: Vec<_> = out.access_key_metadata().to_vec();
            keys.sort_by_key(|k| k.create_date().map(|d| (d.secs(), d.subsec_nanos())));
            keys.iter()
                .map(|k| {
                    (
                        k.access_key_id().unwrap_or_default().to_string(),
                        k.status()
                            .map(|s| s.as_str().to_string())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
    }

    /// Sets a key's status behind iam-rotate's back, as a person would.
    pub fn set_key_status(&self, user: &str, key_id: &str, status: &str) {
        let iam = self.iam();
        self.block_on(async {
            iam.update_access_key()
                .user_name(user)
                .access_key_id(key_id)
                .status(aws_sdk_iam::types::StatusType::from(status))
                .send()
                .await
                .unwrap();
        });
    }

    /// An application signs STS GetCallerIdentity with `key`: IAM (moto)
    /// records the key as used. Returns the caller ARN.
    pub fn use_key(&self, key: &Key) -> String {
        let sts = aws_sdk_sts::Client::new(&self.sdk_config(&key.id, &key.secret));
        self.block_on(async {
            sts.get_caller_identity()
                .send()
                .await
                .expect("STS signed with the key")
                .arn()
                .unwrap_or_default()
                .to_string()
        })
    }

    /// The key `iam-rotate` delivered to the default destination's CSV.
    pub fn delivered(&self, user: &str) -> Key {
        let path = self.default_csv(user);
        let key = read_csv(&path);
        self.secrets.borrow_mut().push(key.secret.clone());
        key
    }

    pub fn default_csv(&self, user: &str) -> PathBuf {
        self.home()
            .join(".iam-rotate/credentials")
            .join(ACCOUNT)
            .join(format!("{user}.csv"))
    }

    /// Remembers a secret that must appear nowhere but its destination.
    pub fn remember_secret(&self, secret: &str) {
        self.secrets.borrow_mut().push(secret.to_string());
    }

    /// Fails when any secret seen by this test appears in any file under
    /// the plans folder, any moto-independent file but the delivered CSVs,
    /// or any output of the binary.
    pub fn assert_no_secret_leaked(&self, allowed: &[&Path]) {
        let secrets = self.secrets.borrow();
        assert!(
            !secrets.is_empty(),
            "the scan needs at least one secret to look for"
        );
        let mut places: Vec<(String, String)> = Vec::new();
        for file in walk(self.dir.path()) {
            if allowed.iter().any(|a| *a == file) || file.starts_with(self.dir.path().join("logs"))
            {
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
            places.push((file.display().to_string(), text));
        }
        for (i, out) in self.outputs.borrow().iter().enumerate() {
            places.push((format!("output of run {i}"), out.clone()));
        }
        for (place, text) in &places {
            for secret in secrets.iter() {
                assert!(
                    !text.contains(secret.as_str()),
                    "a secret access key leaked into {place}"
                );
            }
        }
    }
}

/// The binary with no AWS or iam-rotate settings from this machine.
pub fn bare_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_iam-rotate"));
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") || name.starts_with("IAM_ROTATE_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Every regular file under `root`.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Reads a console-style access key CSV.
pub fn read_csv(path: &Path) -> Key {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Access key ID,Secret access key"));
    let (id, secret) = lines.next().unwrap().split_once(',').unwrap();
    Key {
        id: id.to_string(),
        secret: secret.to_string(),
    }
}

/// RFC 3339 time `days` from now.
pub fn at(days: f64) -> String {
    let t = chrono::Utc::now() + chrono::Duration::seconds((days * 86_400.0) as i64);
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
