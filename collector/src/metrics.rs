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

/// `flows` or `aggregate`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabel {
    pub query: String,
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
        m
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
