//! The collector's metrics, under `bulkhead_collector_`, bounded labels only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `stored` or `duplicate`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Why a request was refused: `unauthenticated`, `forbidden`,
/// `bad_request`, `too_large`, `invalid_batch`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// A store operation and the kind of its error ([`crate::StoreError::kind`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreErrorLabel {
    pub op: String,
    pub kind: String,
}

/// `deny` (the datapath dropped it) or `would_deny` (full mode would).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabel {
    pub verdict: String,
}

/// `flows` or `aggregate`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabel {
    pub query: String,
}

/// An alert's detector (`scan`, `firstSensitiveFlow`, `untrustedIntoFull`,
/// `lateralMovement`) and severity (`low`, `medium`, `high`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabel {
    pub detector: String,
    pub severity: String,
}

/// A sink (`syslog-udp`, `syslog-tcp`, `syslog-tls`, `webhook`) and what an
/// attempt did: `sent`, `retried`, `rejected` (for good), `dropped` (queue full).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    pub sink: String,
    pub result: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the collector exports.
#[derive(Debug)]
pub struct Metrics {
    pub batches: Family<ResultLabel, Counter>,
    pub records: Counter,
    pub refused: Family<ReasonLabel, Counter>,
    pub store_errors: Family<StoreErrorLabel, Counter>,
    pub query_duration: Family<QueryLabel, Histogram, fn() -> Histogram>,
    pub partitions_dropped: Counter,
    pub flows_denied: Family<DeniedLabel, Counter>,
    pub alerts: Family<AlertLabel, Counter>,
    pub alert_deliveries: Family<DeliveryLabel, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            batches: Family::default(),
            records: Counter::default(),
            refused: Family::default(),
            store_errors: Family::default(),
            query_duration: Family::new_with_constructor(duration_histogram),
            partitions_dropped: Counter::default(),
            flows_denied: Family::default(),
            alerts: Family::default(),
            alert_deliveries: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("bulkhead_collector");
        r.register(
            "batches",
            "Flow batches received, stored or recognised as retries",
            m.batches.clone(),
        );
        r.register("records", "Flow records stored", m.records.clone());
        r.register("refused", "Requests refused, by reason", m.refused.clone());
        r.register(
            "store_errors",
            "Store operations that failed, by operation and kind",
            m.store_errors.clone(),
        );
        r.register(
            "query_duration_seconds",
            "Time to answer a query, by query",
            m.query_duration.clone(),
        );
        r.register(
            "partitions_dropped",
            "Partitions dropped by retention",
            m.partitions_dropped.clone(),
        );
        r.register(
            "flows_denied",
            "Flows denied (deny) or that full mode would deny (would_deny), as each judging side reported them",
            m.flows_denied.clone(),
        );
        r.register(
            "alerts",
            "Suspicious-connectivity alerts raised, by detector and severity",
            m.alerts.clone(),
        );
        r.register(
            "alert_deliveries",
            "Alert delivery attempts, by sink and result (sent, retried, rejected, dropped)",
            m.alert_deliveries.clone(),
        );
        m
    }

    /// Counts the denied and would-be-denied flows of a stored batch.
    pub fn denied(&self, records: &[bulkhead_api::flow::FlowRecord]) {
        use bulkhead_api::flow::FlowVerdict::Deny;
        let (mut deny, mut would) = (0, 0);
        for r in records {
            if r.verdict == Deny {
                deny += r.flows;
            } else if r.would_verdict == Deny {
                would += r.flows;
            }
        }
        for (verdict, n) in [("deny", deny), ("would_deny", would)] {
            self.flows_denied
                .get_or_create(&DeniedLabel {
                    verdict: verdict.into(),
                })
                .inc_by(n);
        }
    }

    pub fn refuse(&self, reason: &str) {
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn store_error(&self, op: &str, e: &crate::StoreError) {
        self.store_errors
            .get_or_create(&StoreErrorLabel {
                op: op.into(),
                kind: e.kind().into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::flow::{FlowRecord, FlowVerdict};

    const DASHBOARD: &str = include_str!("../../charts/bulkhead/dashboards/bulkhead-kpis.json");

    fn record(verdict: FlowVerdict, would: FlowVerdict, flows: u64) -> FlowRecord {
        let mut r: FlowRecord = serde_json::from_str(
            r#"{"schema":"flow/v1","start":"2026-11-30T10:00:00Z","end":"2026-11-30T10:01:00Z","node":"n",
            "source":{"address":"10.0.0.1","identity":300,"kind":"pod","reported":true},
            "destination":{"address":"10.0.0.2","identity":301,"kind":"pod","reported":true},
            "port":80,"protocol":"TCP","direction":"egress","verdict":"allow","wouldVerdict":"allow",
            "mode":"full","reason":"default","flows":1,"packets":1,"bytes":1}"#,
        )
        .expect("record");
        r.verdict = verdict;
        r.would_verdict = would;
        r.flows = flows;
        r
    }

    #[test]
    fn denied_flows_are_counted_by_verdict_and_the_dashboard_names_exist() {
        use FlowVerdict::{Allow, Deny};
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.denied(&[
            record(Deny, Deny, 3),
            record(Allow, Deny, 5),
            record(Allow, Allow, 7),
        ]);
        let get = |v: &str| {
            m.flows_denied
                .get_or_create(&DeniedLabel { verdict: v.into() })
                .get()
        };
        assert_eq!((get("deny"), get("would_deny")), (3, 5));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let v: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard");
        let mut checked = 0;
        for p in v["panels"].as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_default();
                for (i, _) in expr.match_indices("bulkhead_collector_") {
                    let name: String = expr[i..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        text.lines().any(|l| l.starts_with(&format!("{name}{{"))),
                        "{name} is not in /metrics:\n{text}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 0, "the dashboard queries the collector");
    }
}
