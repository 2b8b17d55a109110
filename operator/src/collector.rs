//! The collector, as the promotion gates ask it: the records of one verdict
//! class in a time window, through `GET /api/v1/flows`, every call with a
//! deadline.
//!
//! The collector's read API takes no credentials today (agents authenticate
//! their batches; readers reach it through the Service, or through the API
//! server's service proxy with their own RBAC), so the operator needs only
//! network reach to it.

use std::time::Duration;

use bulkhead_api::flow::FlowRecord;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde::Deserialize;

/// How long one question to the collector may take by default.
pub const COLLECTOR_TIMEOUT: Duration = Duration::from_secs(5);

/// The most records one answer carries (the collector's own upper bound).
pub const RECORD_LIMIT: usize = 100_000;

/// Which records to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Let through, but `full` mode would drop them.
    WouldDeny,
    /// Dropped.
    Deny,
}

/// The records, and whether there may be more.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Records {
    pub records: Vec<FlowRecord>,
    /// False when the answer reached the limit.
    pub complete: bool,
    /// `(node, records lost)` in the window.
    pub lost: Vec<(String, u64)>,
}

#[derive(Deserialize)]
struct Answer {
    records: Vec<FlowRecord>,
    #[serde(default)]
    lost: Vec<Lost>,
}

#[derive(Deserialize)]
struct Lost {
    node: String,
    records: u64,
}

/// A collector at a base URL such as `http://bulkhead-collector.bulkhead-system:9470`.
#[derive(Clone)]
pub struct Collector {
    base: String,
    timeout: Duration,
    limit: usize,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Collector {
    pub fn new(base: &str, timeout: Duration) -> Self {
        Collector {
            base: base.trim_end_matches('/').to_string(),
            timeout,
            limit: RECORD_LIMIT,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The same collector with a smaller answer limit (tests use it to see truncation).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, RECORD_LIMIT);
        self
    }

    /// Records of `class` whose window starts in `[since, until)`. The error
    /// is a sentence for a status message.
    pub async fn records(
        &self,
        class: Class,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Records, String> {
        let verdict = match class {
            Class::WouldDeny => "would-deny",
            Class::Deny => "deny",
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("since", &since.to_string())
            .append_pair("until", &until.to_string())
            .append_pair("verdict", verdict)
            .append_pair("limit", &self.limit.to_string())
            .finish();
        let uri = format!("{}/api/v1/flows?{query}", self.base);
        let ask = async {
            let request = http::Request::get(&uri)
                .body(Empty::new())
                .map_err(|e| format!("building the request: {e}"))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("reaching {}: {e}", self.base))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer of {}: {e}", self.base))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, ask)
            .await
            .map_err(|_| format!("{} gave no answer within {:?}", self.base, self.timeout))??;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!(
                "{} answered {}: {}",
                self.base,
                status.as_u16(),
                text.trim()
            ));
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{} answered something that is not flow/v1 records: {e}",
                self.base
            )
        })?;
        Ok(Records {
            complete: answer.records.len() < self.limit,
            records: answer.records,
            lost: answer
                .lost
                .into_iter()
                .map(|l| (l.node, l.records))
                .collect(),
        })
    }
}
