//! Where drained windows go: `flow/v1` JSON lines (what a SIEM tails) and
//! batches for the collector, with what was lost on the way.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_api::flow::{FlowBatch, FlowRecord, LossReport};

use super::export::Exporter;
use super::{FlowAggregator, Resolver};
use crate::telemetry::Telemetry;

/// One node's flow output.
#[derive(Debug)]
pub struct FlowSink {
    node: String,
    log: Option<PathBuf>,
    exporter: Option<Exporter>,
    window_start: jiff::Timestamp,
    /// The datapath's `events_lost` counter at the last window's end.
    events_lost_seen: Option<u64>,
    /// The exporter's dropped-records count at the last window's end.
    dropped_seen: u64,
    seq: u64,
    run_id: String,
    idle: Duration,
    telemetry: Arc<Telemetry>,
    pub records_written: u64,
}

impl FlowSink {
    pub fn new(
        node: &str,
        log: Option<PathBuf>,
        exporter: Option<Exporter>,
        idle: Duration,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let now = jiff::Timestamp::now();
        FlowSink {
            node: node.to_string(),
            log,
            exporter,
            window_start: now,
            events_lost_seen: None,
            dropped_seen: 0,
            seq: 0,
            run_id: format!("{:020}", now.as_nanosecond()),
            idle,
            telemetry,
            records_written: 0,
        }
    }

    pub fn exporter(&self) -> Option<&Exporter> {
        self.exporter.as_ref()
    }

    /// Ends the window: drains `agg`, names every edge with `resolver`,
    /// writes the log and hands a batch to the exporter. `counters` are the
    /// datapath's totals now (`events_lost` among them).
    pub fn flush(
        &mut self,
        agg: &mut FlowAggregator,
        resolver: &Resolver,
        counters: Option<&BTreeMap<&'static str, u64>>,
    ) {
        let events_lost = counters.map(|c| c.get("events_lost").copied().unwrap_or(0));
        if let Some(c) = counters {
            self.telemetry.observe_counters(c);
        }
        self.telemetry
            .conntrack_entries
            .set(agg.live_flows() as i64);
        let end = jiff::Timestamp::now();
        let idle = u64::try_from(self.idle.as_nanos()).unwrap_or(u64::MAX);
        let records: Vec<FlowRecord> = agg
            .drain(idle)
            .iter()
            .filter_map(|(edge, counts)| resolver.record(edge, counts, self.window_start, end))
            .collect();
        let ring_lost = match (self.events_lost_seen, events_lost) {
            (Some(before), Some(now)) => now.saturating_sub(before),
            _ => 0,
        };
        if events_lost.is_some() {
            self.events_lost_seen = events_lost;
        }
        let dropped = self
            .exporter
            .as_ref()
            .map_or(0, |e| e.stats.records_dropped.load(Ordering::Relaxed));
        let export_lost = dropped.saturating_sub(self.dropped_seen);
        self.dropped_seen = dropped;
        let start = std::mem::replace(&mut self.window_start, end);
        if ring_lost > 0 {
            tracing::warn!(lost = ring_lost, "flow events lost in the ring buffer");
        }
        self.telemetry.observe_records(&records);
        self.write_log(&records);
        if let Some(exporter) = &self.exporter {
            let spooled = std::fs::read_dir(&exporter.spool_dir)
                .map(|d| d.count())
                .unwrap_or(0);
            self.telemetry.observe_export(&exporter.stats, spooled);
            if records.is_empty() && ring_lost == 0 && export_lost == 0 {
                return;
            }
            self.seq += 1;
            let losses = if ring_lost + export_lost > 0 {
                vec![LossReport {
                    node: self.node.clone(),
                    start,
                    end,
                    ring_buffer_events: ring_lost,
                    export_records: export_lost,
                }]
            } else {
                Vec::new()
            };
            exporter.submit(FlowBatch {
                node: self.node.clone(),
                batch_id: format!("{}-{:010}", self.run_id, self.seq),
                records,
                losses,
            });
        }
    }

    fn write_log(&mut self, records: &[FlowRecord]) {
        let Some(path) = &self.log else {
            return;
        };
        if records.is_empty() {
            return;
        }
        let mut text = String::new();
        for r in records {
            if let Ok(line) = serde_json::to_string(r) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let written = if path.as_os_str() == "-" {
            std::io::stdout().write_all(text.as_bytes())
        } else {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
        };
        match written {
            Ok(()) => self.records_written += records.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "could not write flow records")
            }
        }
    }

    /// Flushes nothing more; waits until the exporter has everything on disk.
    pub fn shutdown(self) {
        if let Some(e) = self.exporter {
            e.shutdown();
        }
    }
}
