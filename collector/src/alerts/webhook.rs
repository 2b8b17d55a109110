//! SOAR delivery: each alert POSTed as its `alert/v1` JSON, signed with
//! HMAC-SHA256, retried with exponential backoff until the receiver takes it.
//!
//! ```text
//!  POST <url>
//!  Content-Type: application/json
//!  X-Bulkhead-Alert-Id: bh-scan-…           (the body's id; the same on every retry)
//!  X-Bulkhead-Timestamp: 1767225600         (Unix seconds of this attempt)
//!  X-Bulkhead-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//! ```
//!
//! A 2xx ends an alert's delivery: it is never sent again. 5xx, 408, 429,
//! timeouts and connection errors are retried (the same body and id), one at
//! a time and in order; other 4xx are the receiver refusing the alert for
//! good, counted as `rejected` and logged.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_insight::detect::Alert;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

use super::{AlertsError, Backoff, Deliveries};

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where alerts go and how they are signed.
#[derive(Clone)]
pub struct WebhookSink {
    pub url: String,
    pub secret: Arc<Vec<u8>>,
    pub timeout: Duration,
    client: HttpClient,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &self.url)
            .finish()
    }
}

/// `sha256=<hex>` of HMAC-SHA256 over `"<timestamp>.<body>"`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

enum Outcome {
    Delivered,
    Rejected(String),
    Retry(String),
}

impl WebhookSink {
    /// `tls` is needed for `https://` URLs.
    pub fn new(
        url: &str,
        secret: Vec<u8>,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Self, AlertsError> {
        let bad = |reason: &str| AlertsError::Target {
            target: url.to_string(),
            reason: reason.to_string(),
        };
        if secret.is_empty() {
            return Err(bad("the webhook secret is empty"));
        }
        let https = url.starts_with("https://");
        if !https && !url.starts_with("http://") {
            return Err(bad("the webhook URL must be http:// or https://"));
        }
        url.parse::<hyper::Uri>()
            .map_err(|e| bad(&format!("not a URL: {e}")))?;
        let tls = match (tls, https) {
            (Some(t), _) => t,
            (None, true) => return Err(bad("an https webhook needs --webhook-ca-file")),
            (None, false) => super::client_tls(None, "")?,
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(WebhookSink {
            url: url.to_string(),
            secret: Arc::new(secret),
            timeout: Duration::from_secs(10),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    async fn post(&self, id: &str, body: &Bytes) -> Outcome {
        let now = jiff::Timestamp::now().as_second();
        let request = hyper::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("x-bulkhead-alert-id", id)
            .header("x-bulkhead-timestamp", now.to_string())
            .header("x-bulkhead-signature", signature(&self.secret, now, body))
            .body(Full::new(body.clone()));
        let request = match request {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected(format!("building the request: {e}")),
        };
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await
        {
            Err(_) => return Outcome::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => return Outcome::Retry(e.to_string()),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            Outcome::Delivered
        } else if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
            Outcome::Retry(format!("answered {status}"))
        } else {
            Outcome::Rejected(format!("answered {status}"))
        }
    }

    /// Delivers every queued alert until the queue closes.
    pub async fn run(self, mut queue: mpsc::Receiver<Alert>, deliveries: Deliveries) {
        const SINK: &str = "webhook";
        while let Some(alert) = queue.recv().await {
            let body = match serde_json::to_vec(&alert) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::error!(id = alert.id, "encoding an alert: {e}");
                    deliveries.count(SINK, "rejected");
                    continue;
                }
            };
            let mut backoff = Backoff::default();
            loop {
                match self.post(&alert.id, &body).await {
                    Outcome::Delivered => {
                        deliveries.count(SINK, "sent");
                        break;
                    }
                    Outcome::Rejected(why) => {
                        tracing::error!(id = alert.id, url = self.url, "webhook refused: {why}");
                        deliveries.count(SINK, "rejected");
                        break;
                    }
                    Outcome::Retry(why) => {
                        tracing::warn!(id = alert.id, url = self.url, "webhook retry: {why}");
                        deliveries.count(SINK, "retried");
                        backoff.wait().await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Known answer from `printf '%s' '1767225600.{"id":"x"}' |
        // openssl dgst -sha256 -hmac Jefe`.
        assert_eq!(
            signature(b"Jefe", 1_767_225_600, br#"{"id":"x"}"#),
            "sha256=a726ae6b19e8d3d43fecaa1a0b2e82bf4a3cc50d43385c429d70701a0b01d219"
        );
        assert_ne!(signature(b"Jefe", 1, b"x"), signature(b"Jefe", 1, b"y"));
        assert_ne!(signature(b"Jefe", 1, b"x"), signature(b"Jefe", 2, b"x"));
    }
}
