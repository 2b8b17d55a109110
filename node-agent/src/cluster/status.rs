//! The agent's status on its NodeRuleMap, written off the main loop.
//!
//! ```text
//!  main loop ──set(status)──► watch channel (latest wins) ──► writer task ──PATCH──► API server
//!                                                        (timeout, backoff, retries the newest)
//! ```
//!
//! The main loop attaches new veths and drains the ring buffer; it must
//! never wait on the API server. A paused or slow API server delays only
//! the writer, which always sends the newest status it has and drops the
//! ones that were overtaken.

use std::collections::BTreeMap;
use std::time::Duration;

use bulkhead_api::condition::{types, Condition, ConditionStatus};
use bulkhead_api::{NodeRuleMap, NodeRuleMapStatus};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::error::Error;
use crate::maps::ProgramStats;

/// The field manager of the agent's status writes.
pub const FIELD_MANAGER: &str = "bulkhead-agent";

/// How long one status write may take before it is abandoned and retried.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Status after a programming pass that went through.
pub fn programmed(
    generation: i64,
    map: &NodeRuleMap,
    stats: &ProgramStats,
    shards: &BTreeMap<String, i64>,
) -> NodeRuleMapStatus {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    NodeRuleMapStatus {
        programmed_generation: Some(generation),
        // The node's own host endpoint beside its pods.
        endpoints: count(map.spec.endpoints.len() + 1),
        policy_entries: count(stats.policy.added + stats.policy.changed + stats.policy.unchanged),
        programmed_identity_maps: shards.clone(),
        // The caller adds the hits it last read.
        rule_hits: Vec::new(),
        conditions: vec![condition(
            true,
            "Programmed",
            format!("generation {generation} is in the BPF maps"),
            generation,
        )],
    }
}

/// Status after a pass that failed: what was programmed before stays (it is
/// what enforces), and Ready turns False with the error.
pub fn failed(
    previous: Option<&NodeRuleMapStatus>,
    generation: i64,
    error: &Error,
) -> NodeRuleMapStatus {
    let kept = previous
        .and_then(|p| p.programmed_generation)
        .map_or("nothing was programmed before".to_string(), |g| {
            format!("generation {g} stays in force")
        });
    NodeRuleMapStatus {
        conditions: vec![condition(
            false,
            "ProgrammingFailed",
            format!("generation {generation} was not programmed: {error}; {kept}"),
            generation,
        )],
        ..previous.cloned().unwrap_or_default()
    }
}

fn condition(ok: bool, reason: &str, message: String, generation: i64) -> Condition {
    Condition {
        type_: types::READY.into(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.into(),
        message,
        observed_generation: Some(generation),
        last_transition_time: Some(jiff::Timestamp::now().to_string()),
    }
}

/// The sending side, held by the main loop.
#[derive(Debug)]
pub struct StatusWriter {
    tx: watch::Sender<Option<NodeRuleMapStatus>>,
}

impl StatusWriter {
    /// Starts the writer task for `node`'s rule map.
    pub fn spawn(client: Client, node: String) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(write_loop(client, node, rx));
        StatusWriter { tx }
    }

    /// Hands over a status to write; returns at once.
    pub fn set(&self, status: NodeRuleMapStatus) {
        self.tx.send_replace(Some(status));
    }
}

async fn write_loop(
    client: Client,
    node: String,
    mut rx: watch::Receiver<Option<NodeRuleMapStatus>>,
) {
    let api: Api<NodeRuleMap> = Api::all(client);
    let mut backoff = Duration::from_millis(200);
    while rx.changed().await.is_ok() {
        loop {
            let Some(status) = rx.borrow_and_update().clone() else {
                break;
            };
            let patch = Patch::Merge(serde_json::json!({ "status": status }));
            let params = PatchParams::apply(FIELD_MANAGER);
            let call = api.patch_status(&node, &params, &patch);
            match tokio::time::timeout(WRITE_TIMEOUT, call).await {
                Ok(Ok(_)) => {
                    backoff = Duration::from_millis(200);
                    break;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "status not written; will retry"),
                Err(_) => tracing::warn!(
                    timeout_s = WRITE_TIMEOUT.as_secs(),
                    "status write timed out; will retry"
                ),
            }
            // Retry after a pause, or at once with a newer status.
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                changed = rx.changed() => if changed.is_err() { return },
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::NodeRuleMapSpec;

    fn map() -> NodeRuleMap {
        NodeRuleMap::new("node-1", NodeRuleMapSpec::default())
    }

    #[test]
    fn a_failed_pass_keeps_what_enforces_and_says_why() {
        let mut shards = BTreeMap::new();
        shards.insert("identities-0".to_string(), 4);
        let ok = programmed(7, &map(), &ProgramStats::default(), &shards);
        let err = Error::MapFull {
            map: "bh_policy",
            max: 10,
            needed: 11,
        };
        let bad = failed(Some(&ok), 8, &err);
        assert_eq!(bad.programmed_generation, Some(7));
        assert_eq!(bad.programmed_identity_maps, shards);
        let ready = &bad.conditions[0];
        assert_eq!(ready.status, ConditionStatus::False);
        assert_eq!(ready.observed_generation, Some(8));
        assert!(
            ready.message.contains("generation 8 was not programmed")
                && ready.message.contains("bh_policy")
                && ready.message.contains("generation 7 stays in force"),
            "{}",
            ready.message
        );
        let first = failed(None, 1, &err);
        assert_eq!(first.programmed_generation, None);
        assert!(first.conditions[0]
            .message
            .contains("nothing was programmed before"));
    }

    fn generation(body: &[u8]) -> i64 {
        let v: serde_json::Value = serde_json::from_slice(body).expect("JSON patch");
        v["status"]["programmedGeneration"]
            .as_i64()
            .expect("a generation")
    }

    /// The API server takes the first write and never answers (as when it
    /// is paused with SIGSTOP). Handing over statuses still returns at
    /// once; the stalled write times out, and the retry sends the newest.
    #[tokio::test(start_paused = true)]
    async fn status_writes_never_wait_in_the_loop_and_the_newest_wins() {
        use http::{Request, Response};
        use http_body_util::BodyExt;
        use kube::client::Body;

        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let writer = StatusWriter::spawn(Client::new(service, "default"), "node-1".into());
        let status = |g| programmed(g, &map(), &ProgramStats::default(), &BTreeMap::new());

        writer.set(status(1));
        let (first, stalled) = handle.next_request().await.expect("the first write");
        assert_eq!(first.method(), http::Method::PATCH);
        assert!(first.uri().path().ends_with("/noderulemaps/node-1/status"));
        let body = first.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(generation(&body), 1);

        let t0 = tokio::time::Instant::now();
        writer.set(status(2));
        writer.set(status(3));
        assert_eq!(t0.elapsed(), Duration::ZERO, "set never waits");

        let (retry, answer) = handle.next_request().await.expect("a retry");
        assert!(
            t0.elapsed() >= WRITE_TIMEOUT,
            "after the stalled write timed out"
        );
        let body = retry.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(
            generation(&body),
            3,
            "the newest status, not the overtaken one"
        );
        answer.send_response(Response::new(Body::from(br#"{"apiVersion":"bulkhead.dev/v1alpha1","kind":"NodeRuleMap","metadata":{"name":"node-1"},"spec":{}}"#.to_vec())));
        drop(stalled);
    }
}
