//! The benchmark's floors and fixtures (see bench/fleet.sh, BENCHMARKS.md):
//! the least a program could do for the same result, with the same SDK.
//!
//! ```text
//! fleet_floor setup PREFIX N [KEYS]   create users PREFIX-0000.. with KEYS keys (default 1)
//! fleet_floor create-keys PREFIX N C  the floor of `run --all` through create_second_key:
//!                                     one GetCallerIdentity, then per user ListAccessKeys +
//!                                     CreateAccessKey, C users at a time
//! fleet_floor parse-plans DIR         the floor of `status`: read and parse every plan in
//!                                     DIR with serde_yaml, nothing else
//! ```
//!
//! AWS settings come from the environment (AWS_ENDPOINT_URL, AWS_REGION,
//! credentials), through the same config builder iam-rotate uses. Secrets
//! returned by CreateAccessKey are dropped unread.

use std::process::ExitCode;
use std::time::Instant;

use futures_util::stream::{self, StreamExt};
use iam_rotate::aws::{load_config, AwsArgs};

fn user_name(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:04}")
}

async fn iam_client() -> (aws_sdk_iam::Client, aws_sdk_sts::Client) {
    let config = load_config(&AwsArgs::default()).await;
    (
        aws_sdk_iam::Client::new(&config),
        aws_sdk_sts::Client::new(&config),
    )
}

async fn setup(prefix: &str, users: usize, keys: usize) -> Result<(), String> {
    let (iam, _) = iam_client().await;
    let results: Vec<Result<(), String>> = stream::iter(0..users)
        .map(|i| {
            let iam = iam.clone();
            let name = user_name(prefix, i);
            async move {
                iam.create_user()
                    .user_name(&name)
                    .send()
                    .await
                    .map_err(|e| format!("CreateUser {name}: {e}"))?;
                for _ in 0..keys {
                    iam.create_access_key()
                        .user_name(&name)
                        .send()
                        .await
                        .map_err(|e| format!("CreateAccessKey {name}: {e}"))?;
                }
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn create_keys(prefix: &str, users: usize, concurrency: usize) -> Result<(), String> {
    let (iam, sts) = iam_client().await;
    sts.get_caller_identity()
        .send()
        .await
        .map_err(|e| format!("GetCallerIdentity: {e}"))?;
    let results: Vec<Result<(), String>> = stream::iter(0..users)
        .map(|i| {
            let iam = iam.clone();
            let name = user_name(prefix, i);
            async move {
                iam.list_access_keys()
                    .user_name(&name)
                    .send()
                    .await
                    .map_err(|e| format!("ListAccessKeys {name}: {e}"))?;
                iam.create_access_key()
                    .user_name(&name)
                    .send()
                    .await
                    .map_err(|e| format!("CreateAccessKey {name}: {e}"))?;
                Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

fn parse_plans(dir: &str) -> Result<usize, String> {
    let mut parsed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let _plan: iam_rotate::plan::Plan =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        parsed += 1;
    }
    Ok(parsed)
}

fn number(arg: Option<&String>, what: &str) -> Result<usize, String> {
    arg.ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|e| format!("{what}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = Instant::now();
    let result = match args.first().map(String::as_str) {
        Some("setup") => match (args.get(1), number(args.get(2), "N")) {
            (Some(prefix), Ok(users)) => {
                let keys = args.get(3).and_then(|k| k.parse().ok()).unwrap_or(1);
                setup(prefix, users, keys).await
            }
            (_, Err(e)) => Err(e),
            (None, _) => Err("missing PREFIX".into()),
        },
        Some("create-keys") => {
            match (
                args.get(1),
                number(args.get(2), "N"),
                number(args.get(3), "C"),
            ) {
                (Some(prefix), Ok(users), Ok(concurrency)) => {
                    create_keys(prefix, users, concurrency).await
                }
                (None, _, _) => Err("missing PREFIX".into()),
                (_, Err(e), _) | (_, _, Err(e)) => Err(e),
            }
        }
        Some("parse-plans") => match args.get(1) {
            Some(dir) => parse_plans(dir).map(|n| eprintln!("parsed {n} plans")),
            None => Err("missing DIR".into()),
        },
        _ => Err(
            "usage: fleet_floor setup PREFIX N [KEYS] | create-keys PREFIX N C | parse-plans DIR"
                .into(),
        ),
    };
    match result {
        Ok(()) => {
            eprintln!("done in {:.3}s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
