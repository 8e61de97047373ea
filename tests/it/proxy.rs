//! A small HTTP proxy between `iam-rotate` and moto: it counts every
//! request by AWS action and, at chosen rates, injects the faults AWS can
//! show a client — IAM `Throttling`, 500 and 503, a reset connection, a slow
//! answer, and a CreateAccessKey that succeeds in IAM but whose answer never
//! reaches the client — or, like IAM itself, throttles every request beyond
//! a rate (a token bucket).
//!
//! Blocking I/O, a thread per connection: the loads here are small and the
//! code stays obvious.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether to deny a request: given its action, its body, and the requests
/// forwarded so far by action.
pub type DenyRule = fn(&str, &[u8], &BTreeMap<String, usize>) -> bool;

/// Fault rates, each the probability (0..1) that a request gets it.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub throttle: f64,
    pub server_error: f64,
    pub reset: f64,
    pub delay: f64,
    pub delay_by: Duration,
    /// CreateAccessKey only: forwarded, then the answer is dropped.
    pub lose_create: f64,
    /// CreateAccessKey only: IAM has made the key, the answer waits this
    /// long — the window where a crash leaves an orphan.
    pub slow_create_answer: Duration,
    pub seed: u64,
    /// Answers AccessDeniedException (JSON protocols: Secrets Manager,
    /// SSM), without forwarding, to every request this returns true for:
    /// given the action, the request body, and the requests forwarded so
    /// far by action. It stands in for permissions moto does not enforce,
    /// such as kms:Decrypt.
    pub deny: Option<DenyRule>,
    /// Every request this returns true for (same arguments as `deny`) is
    /// forwarded, then its answer held back for `hold_for`: a call that
    /// took effect but hangs, such as a read-back, for a kill to land in.
    /// Each one counts as `held` in [`Proxy::injected`] once it is held.
    pub hold: Option<DenyRule>,
    pub hold_for: Duration,
    /// Every request this returns true for (same arguments as `deny`) is
    /// forwarded and takes effect, then its answer is dropped (the
    /// connection closed): the client's SDK sees a transient failure and
    /// retries. Each counts as `dropped` in [`Proxy::injected`].
    pub drop_answer: Option<DenyRule>,
    /// Answers S3's `409 ConditionalRequestConflict`, without forwarding,
    /// to every request this returns true for (same arguments as `deny`):
    /// another conditional write to the same key was in flight. Each
    /// counts as `conflict` in [`Proxy::injected`].
    pub conflict: Option<DenyRule>,
    /// A rate limit as IAM enforces one: a token bucket refilled at this
    /// many requests per second and holding as many (a second's burst);
    /// a request that finds it empty is answered `Throttling` and not
    /// forwarded. It counts as `rate_limited` in [`Proxy::injected`].
    pub rate_limit: Option<f64>,
    /// Answers IAM's `Throttling`, without forwarding, to every request
    /// this returns true for (same arguments as `deny`).
    pub throttle_when: Option<DenyRule>,
}

/// The token bucket of [`Faults::rate_limit`].
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Shared {
    /// Requests that reached moto, by action.
    forwarded: BTreeMap<String, usize>,
    /// Faults injected, by kind.
    injected: BTreeMap<&'static str, usize>,
    faults: Faults,
    rng: u64,
    /// The KeyId of each PutParameter forwarded, in order (never the value).
    put_parameter_key_ids: Vec<Option<String>>,
    /// Set on the first request under a rate limit, full.
    bucket: Option<Bucket>,
}

pub struct Proxy {
    pub endpoint: String,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: &str, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared {
            rng: faults.seed | 1,
            faults,
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.trim_start_matches("http://").to_string();
        {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let shared = shared.clone();
                    let upstream = upstream.clone();
                    std::thread::spawn(move || serve(conn, &upstream, &shared));
                }
            });
        }
        Proxy {
            endpoint,
            shared,
            stop,
        }
    }

    /// Changes the fault rates from now on (a rate limit starts full).
    pub fn set_faults(&self, faults: Faults) {
        let mut shared = self.shared.lock().unwrap();
        shared.faults = faults;
        shared.bucket = None;
    }

    /// Requests that reached moto, by action (`CreateAccessKey`, …).
    pub fn forwarded(&self) -> BTreeMap<String, usize> {
        self.shared.lock().unwrap().forwarded.clone()
    }

    /// Requests that change IAM, by action.
    pub fn writes(&self) -> BTreeMap<String, usize> {
        self.forwarded()
            .into_iter()
            .filter(|(action, _)| is_write(action))
            .collect()
    }

    pub fn injected(&self) -> BTreeMap<&'static str, usize> {
        self.shared.lock().unwrap().injected.clone()
    }

    pub fn reset_counts(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.forwarded.clear();
        shared.injected.clear();
        shared.put_parameter_key_ids.clear();
    }

    /// The KeyId each forwarded PutParameter carried, in order.
    pub fn put_parameter_key_ids(&self) -> Vec<Option<String>> {
        self.shared.lock().unwrap().put_parameter_key_ids.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

pub fn is_write(action: &str) -> bool {
    matches!(
        action,
        "CreateAccessKey"
            | "UpdateAccessKey"
            | "DeleteAccessKey"
            | "CreateUser"
            | "DeleteUser"
            | "CreateSecret"
            | "PutSecretValue"
            | "PutParameter"
    ) || action.ends_with(".CreateSecret")
        || action.ends_with(".PutSecretValue")
        || action.ends_with(".PutParameter")
}

struct Request {
    head: String,
    body: Vec<u8>,
    action: String,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = String::new();
    let mut content_length = 0usize;
    let mut target = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().ok()?;
        }
        if lower.starts_with("x-amz-target:") {
            target = Some(line["x-amz-target:".len()..].trim().to_string());
        }
        // Each forwarded request gets its own upstream connection.
        if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    let action = target
        .map(|t| t.rsplit('.').next().unwrap_or_default().to_string())
        .or_else(|| {
            String::from_utf8_lossy(&body)
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
        })
        .unwrap_or_else(|| rest_action(&head));
    Some(Request { head, body, action })
}

/// A REST request (S3) has no action name: `S3:METHOD /bucket/key`, the
/// path without its query (`S3:GET /plans/team/123456789012/alice.yaml`).
fn rest_action(head: &str) -> String {
    let mut parts = head.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(method), Some(target)) => {
            let path = target.split('?').next().unwrap_or(target);
            format!("S3:{method} {path}")
        }
        _ => "Unknown".into(),
    }
}

fn serve(client: TcpStream, upstream: &str, shared: &Mutex<Shared>) {
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut client = client;
    while let Some(request) = read_request(&mut reader) {
        let denied = {
            let s = shared.lock().unwrap();
            s.faults
                .deny
                .is_some_and(|deny| deny(&request.action, &request.body, &s.forwarded))
        };
        if denied {
            *shared.lock().unwrap().injected.entry("denied").or_default() += 1;
            let body = format!(
                "{{\"__type\":\"AccessDeniedException\",\"message\":\"injected: not \
                 authorized to perform {}\"}}",
                request.action
            );
            let head = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            );
            if client
                .write_all(format!("{head}{body}").as_bytes())
                .is_err()
            {
                return;
            }
            continue;
        }
        let conflict = {
            let s = shared.lock().unwrap();
            s.faults
                .conflict
                .is_some_and(|rule| rule(&request.action, &request.body, &s.forwarded))
        };
        if conflict {
            *shared
                .lock()
                .unwrap()
                .injected
                .entry("conflict")
                .or_default() += 1;
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>\
                <Code>ConditionalRequestConflict</Code><Message>injected: a conflicting \
                operation occurred</Message></Error>";
            if respond(&mut client, "409 Conflict", body).is_err() {
                return;
            }
            continue;
        }
        if request.action == "PutParameter" {
            let key_id = serde_json::from_slice::<serde_json::Value>(&request.body)
                .ok()
                .and_then(|v| v["KeyId"].as_str().map(str::to_string));
            shared.lock().unwrap().put_parameter_key_ids.push(key_id);
        }
        let held = {
            let s = shared.lock().unwrap();
            s.faults
                .hold
                .is_some_and(|hold| hold(&request.action, &request.body, &s.forwarded))
        };
        let dropped = {
            let s = shared.lock().unwrap();
            s.faults
                .drop_answer
                .is_some_and(|drop| drop(&request.action, &request.body, &s.forwarded))
        };
        let throttled = {
            let mut s = shared.lock().unwrap();
            let throttled = s
                .faults
                .throttle_when
                .is_some_and(|rule| rule(&request.action, &request.body, &s.forwarded));
            if throttled {
                *s.injected.entry("throttled_when").or_default() += 1;
            }
            throttled
        };
        let fault = if throttled || rate_limited(shared) {
            Some("throttle")
        } else {
            pick_fault(shared, &request.action)
        };
        match fault {
            Some("throttle") => {
                let body = "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\
                    <Error><Type>Sender</Type><Code>Throttling</Code>\
                    <Message>Rate exceeded</Message></Error>\
                    <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>";
                if respond(&mut client, "400 Bad Request", body).is_err() {
                    return;
                }
                continue;
            }
            Some("server_error") => {
                let status = if shared.lock().unwrap().rng.is_multiple_of(2) {
                    "500 Internal Server Error"
                } else {
                    "503 Service Unavailable"
                };
                let body = "<ErrorResponse><Error><Type>Receiver</Type>\
                    <Code>ServiceUnavailable</Code><Message>injected</Message></Error>\
                    </ErrorResponse>";
                if respond(&mut client, status, body).is_err() {
                    return;
                }
                continue;
            }
            Some("reset") => {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Some("delay") => {
                let by = shared.lock().unwrap().faults.delay_by;
                std::thread::sleep(by);
            }
            _ => {}
        }
        let Some(response) = forward(upstream, &request) else {
            let _ = client.shutdown(Shutdown::Both);
            return;
        };
        *shared
            .lock()
            .unwrap()
            .forwarded
            .entry(request.action.clone())
            .or_default() += 1;
        if request.action == "CreateAccessKey" {
            let wait = shared.lock().unwrap().faults.slow_create_answer;
            std::thread::sleep(wait);
        }
        if held {
            let wait = {
                let mut s = shared.lock().unwrap();
                *s.injected.entry("held").or_default() += 1;
                s.faults.hold_for
            };
            std::thread::sleep(wait);
        }
        if dropped {
            *shared
                .lock()
                .unwrap()
                .injected
                .entry("dropped")
                .or_default() += 1;
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if fault == Some("lose_create") {
            // IAM made the key; the client never hears of it.
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if client.write_all(&response).is_err() {
            return;
        }
    }
}

/// Whether the rate limit, if any, turns this request away: takes a token
/// from the bucket, or counts a `rate_limited` request when it is empty.
fn rate_limited(shared: &Mutex<Shared>) -> bool {
    let mut s = shared.lock().unwrap();
    let Some(rate) = s.faults.rate_limit else {
        return false;
    };
    let now = Instant::now();
    let mut bucket = s.bucket.unwrap_or(Bucket {
        tokens: rate,
        at: now,
    });
    bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(rate);
    bucket.at = now;
    let admitted = bucket.tokens >= 1.0;
    if admitted {
        bucket.tokens -= 1.0;
    }
    s.bucket = Some(bucket);
    if !admitted {
        *s.injected.entry("rate_limited").or_default() += 1;
    }
    !admitted
}

fn pick_fault(shared: &Mutex<Shared>, action: &str) -> Option<&'static str> {
    let mut s = shared.lock().unwrap();
    let f = s.faults.clone();
    let mut roll = || {
        // xorshift64: reproducible for a seed, no dependency.
        s.rng ^= s.rng << 13;
        s.rng ^= s.rng >> 7;
        s.rng ^= s.rng << 17;
        (s.rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let kind = if action == "CreateAccessKey" && roll() < f.lose_create {
        Some("lose_create")
    } else if roll() < f.throttle {
        Some("throttle")
    } else if roll() < f.server_error {
        Some("server_error")
    } else if roll() < f.reset {
        Some("reset")
    } else if roll() < f.delay {
        Some("delay")
    } else {
        None
    };
    if let Some(kind) = kind {
        *s.injected.entry(kind).or_default() += 1;
    }
    kind
}

fn respond(client: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends the request to moto on a fresh connection and returns its whole
/// answer, re-framed with a Content-Length so the client's connection can
/// be kept alive.
fn forward(upstream: &str, request: &Request) -> Option<Vec<u8>> {
    let mut conn = TcpStream::connect(upstream).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let head = request.head.trim_end_matches("\r\n");
    conn.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    conn.write_all(&request.body).ok()?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    let body = as_aws_error(body);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("content-length:")
            || lower.starts_with("transfer-encoding:")
            || lower.starts_with("connection:")
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&body);
    Some(bytes)
}

/// moto answers a request its IAM policy checks deny (after
/// `/moto-api/reset-auth`) with `<ErrorResponse><Errors><Error>…`, EC2's
/// shape; IAM and STS answer `<ErrorResponse><Error>…`, the only one the
/// AWS SDK's query-protocol parser reads (anything else becomes an
/// "unhandled error" without code or message). Such an answer is given
/// IAM's shape, unchanged otherwise; every other body passes untouched.
fn as_aws_error(body: Vec<u8>) -> Vec<u8> {
    const MOTO: &str = "<ErrorResponse><Errors><Error>";
    let text = String::from_utf8_lossy(&body);
    if !text.contains(MOTO) {
        return body;
    }
    text.replace(MOTO, "<ErrorResponse><Error>")
        .replace("</Error></Errors>", "</Error>")
        .into_bytes()
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&body[..line_end])
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}
