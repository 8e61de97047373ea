//! Plans in S3 (`--plans-dir s3://BUCKET/PREFIX`): the same YAML at
//! `PREFIX/<account>/<user>.yaml`, saved with compare-and-swap (a new plan
//! with `If-None-Match: *`, every later save with `If-Match` on the ETag
//! this runner read or wrote last) and guarded by a lease object beside
//! the plan (`PREFIX/<account>/.<user>.yaml.lock`, see [`super::lease`])
//! instead of an OS lock.
//!
//! The store's interface is synchronous, like the local store's (whose
//! saves block on fsync): its requests run on one I/O thread of their own
//! and the caller waits for the answer. That keeps one `save()` for both
//! stores at every call site, lets a lease be released when its plan is
//! dropped (as an OS lock is), and lets the lease be renewed in the
//! background whatever the command's own runtime is doing.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use chrono::Utc;

use super::lease::{self, Answer, Lease, Owner, Saved, Step, MAX_ATTEMPTS};
use super::{PlanError, MAX_PLAN_BYTES};

/// The scheme of a plans folder in S3.
pub const SCHEME: &str = "s3://";

/// `s3://BUCKET/PREFIX` → (bucket, prefix with a trailing `/`, or empty).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix(SCHEME)
        .ok_or_else(|| format!("{url} does not start with {SCHEME}"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid_bucket {
        return Err(format!(
            "{bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, digits, `-` and `.`); \
             write --plans-dir s3://BUCKET/PREFIX"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
        return Err(format!(
            "the prefix {prefix:?} has an empty, `.` or `..` part; write --plans-dir \
             s3://BUCKET/PREFIX with a plain prefix"
        ));
    }
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

/// The single thread S3 requests run on; started on first use.
fn io_thread() -> Result<tokio::runtime::Handle, String> {
    static IO: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    IO.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("iam-rotate-s3".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        let _ = tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())?
    })
    .clone()
}

/// The plans bucket and prefix, its client, and this process's lease
/// identity.
#[derive(Debug)]
pub struct S3Plans {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    io: tokio::runtime::Handle,
    lease_length: Duration,
    owner: Owner,
    /// Numbers each attempt to take a lease, so that a second take of the
    /// same plan in this process is refused as another holder's would be.
    claims: AtomicU64,
}

/// Whether the endpoint was overridden (an emulator, a VPC endpoint):
/// then buckets are addressed by path, not by host name.
fn endpoint_overridden(config: &SdkConfig) -> bool {
    config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
}

impl S3Plans {
    /// Checks the bucket (HeadBucket) before anything else happens: a
    /// missing bucket or missing permissions is one clear error.
    pub async fn open(
        config: &SdkConfig,
        url: &str,
        lease_length: Duration,
    ) -> Result<S3Plans, PlanError> {
        let (bucket, prefix) = parse_url(url).map_err(|reason| PlanError::Bucket {
            url: url.to_string(),
            reason,
        })?;
        let builder = aws_sdk_s3::config::Builder::from(config)
            .interceptor(crate::aws::log::RequestLog)
            .force_path_style(endpoint_overridden(config))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        let client = aws_sdk_s3::Client::from_conf(builder.build());
        let io = io_thread().map_err(|reason| PlanError::Bucket {
            url: url.to_string(),
            reason: format!("cannot start the S3 I/O thread: {reason}"),
        })?;
        let plans = S3Plans {
            client,
            bucket,
            prefix,
            io,
            lease_length,
            owner: Owner::this_process(),
            claims: AtomicU64::new(0),
        };
        let check = plans
            .client
            .head_bucket()
            .bucket(&plans.bucket)
            .send()
            .await;
        if let Err(e) = check {
            let reason = match e.raw_response().map(|r| r.status().as_u16()) {
                Some(404) => "the bucket does not exist. Create it (versioned, see docs/policies/plans-s3.json for the runner's permissions) or fix the bucket name".to_string(),
                Some(403) => "access denied (HeadBucket). The credentials need s3:ListBucket on the bucket and s3:GetObject, s3:PutObject and s3:DeleteObject under the prefix (docs/policies/plans-s3.json)".to_string(),
                _ => format!("S3 HeadBucket failed: {}", error_chain(&e)),
            };
            return Err(PlanError::Bucket {
                url: url.to_string(),
                reason,
            });
        }
        Ok(plans)
    }

    /// `s3://BUCKET/PREFIX` (no trailing slash): the root of plan paths,
    /// which are `s3://BUCKET/PREFIX/<account>/<user>.yaml`.
    pub fn root(&self) -> PathBuf {
        let prefix = self.prefix.trim_end_matches('/');
        let sep = if prefix.is_empty() { "" } else { "/" };
        PathBuf::from(format!("{SCHEME}{}{sep}{prefix}", self.bucket))
    }

    /// The object key of a plan path `s3://BUCKET/KEY`.
    fn key_of(&self, path: &Path) -> Result<String, PlanError> {
        let text = path.to_string_lossy();
        let key = text
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(self.bucket.as_str()))
            .and_then(|rest| rest.strip_prefix('/'));
        match key {
            Some(key) if key.starts_with(self.prefix.as_str()) => Ok(key.to_string()),
            _ => Err(PlanError::PlansDir {
                path: text.into_owned(),
                reason: format!("it is not under the plans folder {}", self.root().display()),
            }),
        }
    }

    /// Runs `request` on the I/O thread and waits for it.
    fn block<T, F>(&self, request: F) -> Result<T, PlanError>
    where
        F: Future<Output = Result<T, PlanError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.io.spawn(async move {
            let _ = tx.send(request.await);
        });
        let wait = move || rx.recv();
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        answer.map_err(|_| PlanError::S3 {
            action: "reach",
            url: format!("{SCHEME}{}", self.bucket),
            message: "the S3 I/O thread stopped".into(),
        })?
    }

    fn object(&self, key: String) -> Object {
        Object {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key,
        }
    }

    /// The account folders under the prefix, sorted.
    pub fn accounts(&self) -> Result<Vec<String>, PlanError> {
        let folders = self.block(self.object(self.prefix.clone()).list(true))?;
        let mut accounts: Vec<String> = folders
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix(self.prefix.as_str())
                    .map(|a| a.trim_end_matches('/').to_string())
            })
            .filter(|a| !a.is_empty() && !a.starts_with('.'))
            .collect();
        accounts.sort();
        Ok(accounts)
    }

    /// The plans of one account, sorted by user name.
    pub fn list(&self, root: &Path, account: &str) -> Result<Vec<PathBuf>, PlanError> {
        let folder = format!("{}{account}/", self.prefix);
        let keys = self.block(self.object(folder.clone()).list(false))?;
        let mut plans: Vec<PathBuf> = keys
            .iter()
            .filter_map(|k| k.strip_prefix(folder.as_str()))
            .filter(|name| name.ends_with(".yaml") && !name.contains('/'))
            .map(|name| root.join(account).join(name))
            .collect();
        plans.sort();
        Ok(plans)
    }

    /// The plan's text and ETag, or `None` when there is no such object.
    pub fn read(&self, path: &Path) -> Result<Option<(String, String)>, PlanError> {
        let key = self.key_of(path)?;
        let found = self.block(self.object(key).get())?;
        let Some((body, etag)) = found else {
            return Ok(None);
        };
        let text = String::from_utf8(body).map_err(|_| PlanError::Invalid {
            path: path.display().to_string(),
            message: "it is not UTF-8 text, so it is not a plan".into(),
        })?;
        Ok(Some((text, etag)))
    }

    /// Takes the lease beside `path`: `Ok(Err(holder))` when another runner
    /// holds a live one.
    pub fn acquire(self: &Arc<Self>, path: &Path) -> Result<Result<Held, String>, PlanError> {
        let plan = self.object(self.key_of(path)?);
        let lock = self.object(self.key_of(&super::lock_path(path))?);
        let length = chrono::Duration::from_std(self.lease_length).unwrap_or(chrono::Duration::MAX);
        // The owner id of this attempt: a retried write that finds it in
        // the lease knows the lease is its own.
        let claim = self.claims.fetch_add(1, Ordering::Relaxed);
        let me = self.owner.claim(claim);
        let mut step = Step::Retry;
        let mut creates = 0;
        // Bounded twice over: at most MAX_ATTEMPTS creates (a 409, or a
        // lease that vanished between the create and the read, is retried),
        // and a few reads and takeovers between them.
        for _ in 0..MAX_ATTEMPTS * 3 {
            step = match step {
                Step::Retry if creates == MAX_ATTEMPTS => break,
                Step::Retry => {
                    creates += 1;
                    let lease = Lease::new(&me, Utc::now(), length);
                    let answer = self.block(lock.clone().put(lease.to_json(), None))?;
                    match lease::after_create(answer) {
                        Step::Held(etag) => return Ok(Ok(self.hold(plan, lock, lease, etag))),
                        next => next,
                    }
                }
                Step::Read => {
                    let found = self.block(lock.clone().get())?;
                    let found = found
                        .as_ref()
                        .map(|(body, etag)| (body.as_slice(), etag.clone()));
                    lease::after_read(found, &me.id, Utc::now())
                }
                Step::TakeOver(etag) => {
                    let lease = Lease::new(&me, Utc::now(), length);
                    let answer = self.block(lock.clone().put(lease.to_json(), Some(etag)))?;
                    match lease::after_takeover(answer) {
                        Step::Held(etag) => {
                            tracing::info!(lease = %lock.url(), "took over an expired lease");
                            return Ok(Ok(self.hold(plan, lock, lease, etag)));
                        }
                        next => next,
                    }
                }
                Step::Held(etag) => {
                    // Our own earlier write landed (its answer was lost and
                    // the create retried): the lease is ours; the renewal
                    // rewrites its body.
                    let lease = Lease::new(&me, Utc::now(), length);
                    return Ok(Ok(self.hold(plan, lock, lease, etag)));
                }
                Step::Busy(holder) => return Ok(Err(holder)),
            };
            if step == Step::Retry {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(PlanError::S3 {
            action: "take the lease",
            url: lock.url(),
            message: format!(
                "S3 answered 409 ConditionalRequestConflict (or the lease vanished and \
                 reappeared) {creates} times in a row: other runners are contending for this \
                 plan. Nothing was changed; run again"
            ),
        })
    }

    /// Starts renewing the lease now held at `etag`.
    fn hold(self: &Arc<Self>, plan: Object, lock: Object, lease: Lease, etag: String) -> Held {
        let state = Arc::new(Mutex::new(LeaseState {
            lease,
            etag,
            lost: None,
        }));
        let renewer = self
            .io
            .spawn(renew(lock.clone(), state.clone(), self.lease_length));
        Held {
            plans: self.clone(),
            plan,
            lock,
            version: Mutex::new(Version::New),
            lease: state,
            renewer,
        }
    }

    /// Removes the lease beside `path` by hand: what it named, or `None`
    /// when there was none. Conditional on the ETag just read, so a lease
    /// renewed or taken in between is left alone (and the error says so).
    pub fn unlock(&self, path: &Path) -> Result<Option<String>, PlanError> {
        let lock = self.object(self.key_of(&super::lock_path(path))?);
        let Some((body, etag)) = self.block(lock.clone().get())? else {
            return Ok(None);
        };
        let what = Lease::from_json(&body).map_or_else(
            || "a lock object that is not an iam-rotate lease".to_string(),
            |lease| {
                let live = if lease.expires > Utc::now() {
                    "live"
                } else {
                    "expired"
                };
                format!("a {live} lease {}", lease.describe())
            },
        );
        match self.block(lock.clone().delete(etag))? {
            Answer::Done(_) | Answer::Missing => Ok(Some(what)),
            Answer::PreconditionFailed | Answer::Conflict => Err(PlanError::S3 {
                action: "remove the lease",
                url: lock.url(),
                message: "the lease changed while it was being removed (a runner renewed or \
                          took it): it is in use. Check `iam-rotate status`, then try again"
                    .into(),
            }),
        }
    }
}

/// The lease this process holds, as the renewer keeps it.
#[derive(Debug)]
struct LeaseState {
    lease: Lease,
    etag: String,
    /// Why the lease was lost (another runner took it over), if it was.
    lost: Option<String>,
}

/// A plan whose lease this process holds: saves are conditional on the
/// plan's ETag; dropping it stops the renewal and releases the lease.
#[derive(Debug)]
pub struct Held {
    plans: Arc<S3Plans>,
    plan: Object,
    lock: Object,
    /// The version of the plan every save is conditional on.
    version: Mutex<Version>,
    lease: Arc<Mutex<LeaseState>>,
    renewer: tokio::task::JoinHandle<()>,
}

/// The version of the plan a save is conditional on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Version {
    /// Not written yet: the first save uses `If-None-Match: *`.
    New,
    /// The ETag as last read or written: saves use `If-Match`.
    At(String),
    /// A save lost its condition: another runner changed the plan, and
    /// this runner saves (and so acts) no more.
    Lost,
}

impl Held {
    /// Every later save is conditional on this ETag (`None`: no plan yet).
    pub fn read_at(&self, etag: Option<String>) {
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) =
            etag.map_or(Version::New, Version::At);
    }

    /// Writes the plan if it is still the version this runner read or
    /// wrote last. A lost condition is final: the plan is marked so that
    /// no later save (and so no AWS write) goes ahead. A write whose answer
    /// was lost and that the SDK retried also ends here (the plan's ETag
    /// is then our own): the plan stops, safely, and the next run goes on.
    pub fn save(&self, path: &Path, yaml: &str) -> Result<(), PlanError> {
        if let Some(reason) = self.lease_lost() {
            return Err(PlanError::LeaseLost {
                path: path.display().to_string(),
                reason,
            });
        }
        let mut version = self.version.lock().unwrap_or_else(|e| e.into_inner());
        let if_match = match &*version {
            Version::New => None,
            Version::At(etag) => Some(etag.clone()),
            Version::Lost => {
                return Err(PlanError::Changed {
                    path: path.display().to_string(),
                })
            }
        };
        for _ in 0..MAX_ATTEMPTS {
            let write = self
                .plan
                .clone()
                .put(yaml.as_bytes().to_vec(), if_match.clone());
            match lease::after_save(self.plans.block(write)?) {
                Saved::Written(new) => {
                    *version = Version::At(new);
                    return Ok(());
                }
                Saved::Lost => {
                    *version = Version::Lost;
                    return Err(PlanError::Changed {
                        path: path.display().to_string(),
                    });
                }
                Saved::Retry => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        Err(PlanError::S3 {
            action: "save",
            url: self.plan.url(),
            message: format!(
                "S3 answered 409 ConditionalRequestConflict {MAX_ATTEMPTS} times; nothing was \
                 changed in AWS after the last save. Run again"
            ),
        })
    }

    fn lease_lost(&self) -> Option<String> {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lost
            .clone()
    }
}

impl Drop for Held {
    /// Releases the lease: a delete conditional on our last ETag. When
    /// that fails because our own renewal raced it, the lease is read once
    /// more and deleted if it is still ours; anything else is left to
    /// expire.
    fn drop(&mut self) {
        self.renewer.abort();
        let (etag, me) = {
            let state = self.lease.lock().unwrap_or_else(|e| e.into_inner());
            if state.lost.is_some() {
                return;
            }
            (state.etag.clone(), state.lease.owner.clone())
        };
        let lock = self.lock.clone();
        let released = self.plans.block(async move {
            if lock.clone().delete(etag).await? == Answer::PreconditionFailed {
                if let Some((body, etag)) = lock.clone().get().await? {
                    if lease::judge(&body, &me, Utc::now()) == lease::Found::Ours {
                        lock.delete(etag).await?;
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = released {
            tracing::warn!(
                "could not release the lease {}: {e}; it expires on its own",
                self.lock.url()
            );
        }
    }
}

/// Renews the lease every third of its length, conditional on its ETag.
/// A 412 means another runner took it over (we were paused past expiry):
/// the lease is marked lost and every later save of the plan is refused.
async fn renew(lock: Object, state: Arc<Mutex<LeaseState>>, length: Duration) {
    let every = (length / 3).max(Duration::from_millis(100));
    let chrono_length = chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX);
    loop {
        tokio::time::sleep(every).await;
        let (renewed, etag) = {
            let s = state.lock().unwrap_or_else(|e| e.into_inner());
            (s.lease.renewed(Utc::now(), chrono_length), s.etag.clone())
        };
        for _ in 0..MAX_ATTEMPTS {
            let answer = lock
                .clone()
                .put(renewed.to_json(), Some(etag.clone()))
                .await;
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            match answer.map(lease::after_save) {
                Ok(Saved::Written(new)) => {
                    s.lease = renewed;
                    s.etag = new;
                    break;
                }
                Ok(Saved::Lost) => {
                    s.lost = Some(format!(
                        "the lease {} was taken over or removed while this runner held it",
                        lock.url()
                    ));
                    return;
                }
                Ok(Saved::Retry) => {}
                Err(e) => {
                    tracing::warn!(
                        "could not renew the lease {}: {e}; trying again",
                        lock.url()
                    );
                    break;
                }
            }
        }
    }
}

/// The answer S3 gave to a conditional request, when it is one the
/// protocol decides on; `None` for any other error.
fn answer_of<E>(err: &SdkError<E, HttpResponse>) -> Option<Answer> {
    match err.raw_response().map(|r| r.status().as_u16()) {
        Some(412) => Some(Answer::PreconditionFailed),
        Some(409) => Some(Answer::Conflict),
        Some(404) => Some(Answer::Missing),
        _ => None,
    }
}

fn s3_error<E>(action: &'static str, url: &str, err: &SdkError<E, HttpResponse>) -> PlanError
where
    E: std::error::Error + 'static,
{
    let denied = err
        .raw_response()
        .is_some_and(|r| r.status().as_u16() == 403);
    let message = if denied {
        "access denied; the credentials need s3:GetObject, s3:PutObject and s3:DeleteObject \
         under the prefix and s3:ListBucket on the bucket (docs/policies/plans-s3.json)"
            .to_string()
    } else {
        error_chain(err)
    };
    PlanError::S3 {
        action,
        url: url.to_string(),
        message,
    }
}

/// An error and its sources, each one's message once, without the debug
/// dump of the SDK's own display helper: what went wrong, down to the cause
/// (a refused connection, credentials that could not be loaded).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// One object of the bucket, and the client to reach it: what every
/// request of the protocol acts on. Cheap to clone (the client is shared).
#[derive(Clone, Debug)]
struct Object {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

impl Object {
    fn url(&self) -> String {
        format!("{SCHEME}{}/{}", self.bucket, self.key)
    }

    /// PutObject, conditional: `If-Match` with an ETag, `If-None-Match: *`
    /// without one.
    async fn put(self, body: Vec<u8>, if_match: Option<String>) -> Result<Answer, PlanError> {
        let content_type = if self.key.ends_with(".yaml") {
            "application/yaml"
        } else {
            "application/json"
        };
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        let request = match if_match {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        match request.send().await {
            Ok(out) => Ok(Answer::Done(out.e_tag)),
            Err(e) => answer_of(&e).ok_or_else(|| s3_error("write", &self.url(), &e)),
        }
    }

    /// GetObject: the body and ETag, or `None` for no such object. An
    /// object over the plan size limit is refused unread.
    async fn get(self) -> Result<Option<(Vec<u8>, String)>, PlanError> {
        let request = self.client.get_object().bucket(&self.bucket).key(&self.key);
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if answer_of(&e) == Some(Answer::Missing) => return Ok(None),
            Err(e) => return Err(s3_error("read", &self.url(), &e)),
        };
        if out
            .content_length
            .is_some_and(|len| u64::try_from(len).unwrap_or(0) > MAX_PLAN_BYTES)
        {
            return Err(PlanError::Invalid {
                path: self.url(),
                message: format!(
                    "it is larger than {} KiB, which no plan is; it was not read",
                    MAX_PLAN_BYTES / 1024
                ),
            });
        }
        let etag = out.e_tag.clone().unwrap_or_default();
        let body = out.body.collect().await.map_err(|e| PlanError::S3 {
            action: "read",
            url: self.url(),
            message: e.to_string(),
        })?;
        Ok(Some((body.to_vec(), etag)))
    }

    /// ListObjectsV2 one level under this key taken as a prefix: the
    /// sub-folders (`folders`) or the objects.
    async fn list(self, folders: bool) -> Result<Vec<String>, PlanError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.key)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("list", &self.url(), &e))?;
            if folders {
                let prefixes = page.common_prefixes().iter();
                names.extend(prefixes.filter_map(|p| p.prefix.clone()));
            } else {
                names.extend(page.contents().iter().filter_map(|o| o.key.clone()));
            }
        }
        Ok(names)
    }

    /// DeleteObject with `If-Match`.
    async fn delete(self, etag: String) -> Result<Answer, PlanError> {
        let request = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match(etag);
        match request.send().await {
            Ok(_) => Ok(Answer::Done(None)),
            Err(e) => answer_of(&e).ok_or_else(|| s3_error("delete", &self.url(), &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_dir_urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(
            parse_url("s3://team-plans/iam/rotation").unwrap(),
            ("team-plans".into(), "iam/rotation/".into())
        );
        assert_eq!(
            parse_url("s3://team-plans/iam/").unwrap(),
            ("team-plans".into(), "iam/".into())
        );
        assert_eq!(
            parse_url("s3://team-plans").unwrap(),
            ("team-plans".into(), String::new())
        );
        for bad in [
            "s3://",
            "s3://Team_Plans/x",
            "s3://ab",
            "s3://plans/a/../b",
            "s3://plans/a//b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
