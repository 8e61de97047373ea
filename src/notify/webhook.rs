//! `webhook:URL`: an HTTPS POST of the notice as `application/json`
//! (plain http only on loopback, checked when the spec was read). Any 2xx
//! answer is delivery; redirects are not followed. Certificates are checked
//! against the system's roots.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::OnceCell;

/// How long one POST may take, connecting included: a notice must never
/// hold a rotation up for long.
pub const TIMEOUT: Duration = Duration::from_secs(10);

type Https = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One HTTP client for the process, built on first use.
#[derive(Default)]
pub struct Client {
    https: OnceCell<Result<Https, String>>,
}

impl Client {
    async fn https(&self) -> Result<&Https, String> {
        self.https
            .get_or_init(|| async { build() })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// POSTs `body`; a 2xx answer within [`TIMEOUT`] is success.
    pub async fn post(&self, url: &Uri, body: &str) -> Result<(), String> {
        let client = self.https().await?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("iam-rotate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let response = tokio::time::timeout(TIMEOUT, client.request(request))
            .await
            .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered HTTP {status}"))
        }
    }
}

fn build() -> Result<Https, String> {
    // The provider named, not the process default: which one that is
    // depends on the features other crates turn on.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("cannot load the system's TLS root certificates: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector))
}

/// The error and its causes ("client error (Connect): tcp connect error:
/// Connection refused"), which say what went wrong on the way.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_endpoint_is_an_error_not_a_panic() {
        // Port 1 on loopback: nothing listens. Building the TLS client
        // (provider, system roots) and connecting both happen on this path.
        let client = Client::default();
        for url in ["https://127.0.0.1:1/hook", "http://127.0.0.1:1/hook"] {
            let error = client
                .post(&url.parse().unwrap(), "{}")
                .await
                .expect_err(url);
            assert!(
                error.contains("onnect") || error.contains("root certificates"),
                "{url}: {error}"
            );
        }
    }
}
