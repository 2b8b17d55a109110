//! The agent's `/metrics` (OpenMetrics), `/healthz` and `/readyz`.
//!
//! Label sets are bounded: verdicts, directions, modes, reasons, map names.
//! No address, pod or node name is ever a label (flow detail goes to the
//! flow log and the collector, not to Prometheus).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::flows::export::ExportStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    /// allow, deny, or would-deny (allowed now, denied in full mode).
    pub verdict: &'static str,
    pub direction: &'static str,
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabel {
    pub map: &'static str,
}

/// Every metric the agent serves.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    pub flows: Family<FlowLabels, Counter>,
    pub packets: Family<ReasonLabel, Counter>,
    pub events_lost: Counter,
    /// Packets to a Service address whose sender's egress waited for the DNAT.
    pub service_deferred: Counter,
    pub flow_records: Counter,
    pub conntrack_entries: Gauge,
    pub conntrack_capacity: Gauge,
    pub map_entries: Family<MapLabel, Gauge>,
    pub map_capacity: Family<MapLabel, Gauge>,
    pub programs_attached: Gauge,
    pub generation: Gauge,
    pub programming: Histogram,
    pub programming_failures: Counter,
    pub export_queue: Gauge,
    pub export_sent: Counter,
    pub export_dropped: Counter,
    pub export_errors: Counter,
    /// Reads of `bh_rule_hits`, one per hits interval.
    pub rule_hits_reads: Counter,
    /// Rules with hits on this node, as last read.
    pub rules_hit: Gauge,
    counters_seen: Mutex<BTreeMap<&'static str, u64>>,
    export_seen: Mutex<(u64, u64, u64)>,
    pub ready: AtomicBool,
    heartbeat: AtomicU64,
    started: Instant,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// Datapath counters that are drops, with the reason label they get.
const DROP_COUNTERS: [(&str, &str); 6] = [
    ("denied", "policy"),
    ("reeval_denied", "reevaluated"),
    ("malformed", "malformed"),
    ("spoofed", "spoofed"),
    ("ct_full", "table_full"),
    ("unbound", "unbound"),
];

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bulkhead_agent");
        let t = Telemetry {
            flows: Family::default(),
            packets: Family::default(),
            events_lost: Counter::default(),
            service_deferred: Counter::default(),
            flow_records: Counter::default(),
            conntrack_entries: Gauge::default(),
            conntrack_capacity: Gauge::default(),
            map_entries: Family::default(),
            map_capacity: Family::default(),
            programs_attached: Gauge::default(),
            generation: Gauge::default(),
            programming: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            programming_failures: Counter::default(),
            export_queue: Gauge::default(),
            export_sent: Counter::default(),
            export_dropped: Counter::default(),
            export_errors: Counter::default(),
            rule_hits_reads: Counter::default(),
            rules_hit: Gauge::default(),
            counters_seen: Mutex::new(BTreeMap::new()),
            export_seen: Mutex::new((0, 0, 0)),
            ready: AtomicBool::new(false),
            heartbeat: AtomicU64::new(0),
            started: Instant::now(),
            registry: Registry::default(),
        };
        registry.register(
            "flows",
            "Connections seen, by verdict, direction and mode",
            t.flows.clone(),
        );
        registry.register(
            "dropped_packets",
            "Packets the datapath dropped, by reason",
            t.packets.clone(),
        );
        registry.register(
            "ringbuf_events_lost",
            "Flow events the datapath could not put in the ring buffer",
            t.events_lost.clone(),
        );
        registry.register(
            "service_deferred_packets",
            "Packets from pods to a Service address, judged on the backend after the DNAT rather than on the address sent to",
            t.service_deferred.clone(),
        );
        registry.register(
            "flow_records",
            "flow/v1 records produced",
            t.flow_records.clone(),
        );
        registry.register(
            "conntrack_entries",
            "Live entries in the conntrack map (counted every 30 s)",
            t.conntrack_entries.clone(),
        );
        registry.register(
            "conntrack_capacity",
            "Capacity of the conntrack map",
            t.conntrack_capacity.clone(),
        );
        registry.register(
            "map_entries",
            "Entries in each BPF map (those the agent writes, and bh_conntrack)",
            t.map_entries.clone(),
        );
        registry.register(
            "map_capacity",
            "Capacity of each BPF map",
            t.map_capacity.clone(),
        );
        registry.register(
            "programs_attached",
            "TC programs attached (two per interface)",
            t.programs_attached.clone(),
        );
        registry.register(
            "rule_map_generation",
            "The NodeRuleMap generation in the maps",
            t.generation.clone(),
        );
        registry.register(
            "programming_duration_seconds",
            "Time to program the maps from a rule map",
            t.programming.clone(),
        );
        registry.register(
            "programming_failures",
            "Programming passes that failed (the previous maps stayed)",
            t.programming_failures.clone(),
        );
        registry.register(
            "export_queue_batches",
            "Batches waiting in the spool for the collector",
            t.export_queue.clone(),
        );
        registry.register(
            "export_records_sent",
            "Records the collector accepted",
            t.export_sent.clone(),
        );
        registry.register(
            "export_records_dropped",
            "Records lost on the way to the collector",
            t.export_dropped.clone(),
        );
        registry.register(
            "export_errors",
            "Failed sends to the collector (retried)",
            t.export_errors.clone(),
        );
        registry.register(
            "rule_hits_reads",
            "Reads of the rule hit counters (one per hits interval)",
            t.rule_hits_reads.clone(),
        );
        registry.register(
            "rules_hit",
            "Rules of this node's rule map that decided something since the datapath was loaded",
            t.rules_hit.clone(),
        );
        Telemetry { registry, ..t }
    }

    /// Counts a window's records.
    pub fn observe_records(&self, records: &[FlowRecord]) {
        for r in records {
            let verdict = match (r.verdict, r.would_verdict) {
                (FlowVerdict::Deny, _) => "deny",
                (FlowVerdict::Allow, FlowVerdict::Deny) => "would-deny",
                (FlowVerdict::Allow, FlowVerdict::Allow) => "allow",
            };
            let direction = match r.direction {
                bulkhead_api::rule_map::Direction::Egress => "egress",
                bulkhead_api::rule_map::Direction::Ingress => "ingress",
            };
            let mode = match r.mode {
                bulkhead_api::policy::EnforcementMode::Full => "full",
                bulkhead_api::policy::EnforcementMode::Selective => "selective",
                bulkhead_api::policy::EnforcementMode::Visibility => "visibility",
            };
            self.flows
                .get_or_create(&FlowLabels {
                    verdict,
                    direction,
                    mode,
                })
                .inc_by(r.flows);
        }
        self.flow_records.inc_by(records.len() as u64);
    }

    /// Moves the datapath's per-CPU totals into the counters (as deltas).
    pub fn observe_counters(&self, counters: &BTreeMap<&'static str, u64>) {
        let mut seen = self.counters_seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut delta = |name: &'static str| {
            let now = counters.get(name).copied().unwrap_or(0);
            let before = seen.insert(name, now).unwrap_or(0);
            now.saturating_sub(before)
        };
        for (counter, reason) in DROP_COUNTERS {
            let d = delta(counter);
            self.packets
                .get_or_create(&ReasonLabel { reason })
                .inc_by(d);
        }
        self.events_lost.inc_by(delta("events_lost"));
        self.service_deferred.inc_by(delta("via_service"));
    }

    pub fn observe_export(&self, stats: &ExportStats, spooled: usize) {
        let mut seen = self.export_seen.lock().unwrap_or_else(|e| e.into_inner());
        let sent = stats.records_sent.load(Ordering::Relaxed);
        let dropped = stats.records_dropped.load(Ordering::Relaxed);
        let errors = stats.send_errors.load(Ordering::Relaxed);
        self.export_sent.inc_by(sent.saturating_sub(seen.0));
        self.export_dropped.inc_by(dropped.saturating_sub(seen.1));
        self.export_errors.inc_by(errors.saturating_sub(seen.2));
        *seen = (sent, dropped, errors);
        self.export_queue.set(spooled as i64);
    }

    /// How full the maps are after a programming pass.
    pub fn observe_fill(&self, fill: &[crate::maps::MapFill]) {
        for f in fill {
            self.map_fill(f.map, f.entries, f.capacity);
        }
    }

    /// The conntrack map, counted by the datapath's owner at a slow cadence.
    pub fn observe_conntrack(&self, entries: usize, capacity: u32) {
        self.conntrack_entries.set(entries as i64);
        self.conntrack_capacity.set(i64::from(capacity));
        self.map_fill("bh_conntrack", entries, capacity);
    }

    fn map_fill(&self, map: &'static str, entries: usize, capacity: u32) {
        let label = MapLabel { map };
        self.map_entries.get_or_create(&label).set(entries as i64);
        self.map_capacity
            .get_or_create(&label)
            .set(i64::from(capacity));
    }

    /// The loop is alive.
    pub fn beat(&self) {
        self.heartbeat
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn alive(&self, stale: Duration) -> bool {
        let last = Duration::from_millis(self.heartbeat.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last) < stale
    }
}

/// Serves until the process ends.
pub async fn serve(addr: SocketAddr, telemetry: Arc<Telemetry>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(telemetry);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

async fn metrics(State(t): State<Arc<Telemetry>>, headers: HeaderMap) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &t.registry) {
        Ok(()) => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let (body, content_type) = bulkhead_api::exposition::negotiate(body, accept);
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body)
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

async fn healthz(State(t): State<Arc<Telemetry>>) -> (StatusCode, &'static str) {
    if t.alive(Duration::from_secs(30)) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent loop has not run for 30 s",
        )
    }
}

async fn readyz(State(t): State<Arc<Telemetry>>) -> (StatusCode, &'static str) {
    if t.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first programming",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_by_deltas_of_the_datapath_totals() {
        let t = Telemetry::new();
        let mut c = BTreeMap::new();
        c.insert("denied", 5u64);
        c.insert("events_lost", 2u64);
        c.insert("via_service", 3u64);
        t.observe_counters(&c);
        c.insert("denied", 8u64);
        c.insert("via_service", 10u64);
        t.observe_counters(&c);
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &t.registry).expect("encode");
        assert!(
            body.contains("bulkhead_agent_dropped_packets_total{reason=\"policy\"} 8"),
            "{body}"
        );
        assert!(
            body.contains("bulkhead_agent_ringbuf_events_lost_total 2"),
            "{body}"
        );
        assert!(
            body.contains("bulkhead_agent_service_deferred_packets_total 10"),
            "{body}"
        );
        assert!(body.ends_with("# EOF\n"));
    }
}
