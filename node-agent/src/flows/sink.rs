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
use super::services::ServiceIndex;
use super::{FlowAggregator, Resolver};
use crate::telemetry::Telemetry;

/// Beside the spool's batches (which end in `.json`): the last `events_lost`
/// value reported.
const EVENTS_LOST_FILE: &str = "events-lost.seen";

/// One node's flow output.
#[derive(Debug)]
pub struct FlowSink {
    node: String,
    log: Option<PathBuf>,
    exporter: Option<Exporter>,
    window_start: jiff::Timestamp,
    /// The datapath's `events_lost` counter at the last window's end. The
    /// counter lives in a pinned map and outlasts the agent, so the value is
    /// kept beside the spool too: what the datapath lost while no agent ran
    /// is reported by the next one.
    events_lost_seen: Option<u64>,
    events_lost_file: Option<PathBuf>,
    /// The exporter's dropped-records count at the last window's end.
    dropped_seen: u64,
    seq: u64,
    run_id: String,
    idle: Duration,
    telemetry: Arc<Telemetry>,
    /// Service names (cluster mode's watch of Services); `None` in
    /// standalone mode, whose records carry Service addresses only.
    services: Option<tokio::sync::watch::Receiver<Arc<ServiceIndex>>>,
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
        let events_lost_file = exporter
            .as_ref()
            .map(|e| e.spool_dir.join(EVENTS_LOST_FILE));
        let events_lost_seen = events_lost_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|s| s.trim().parse().ok());
        FlowSink {
            node: node.to_string(),
            log,
            exporter,
            window_start: now,
            events_lost_seen,
            events_lost_file,
            dropped_seen: 0,
            seq: 0,
            run_id: format!("{:020}", now.as_nanosecond()),
            idle,
            telemetry,
            services: None,
            records_written: 0,
        }
    }

    /// Names the Services of records from now on, by the latest index the
    /// watch published (reading it never waits on the API server).
    pub fn set_services(&mut self, services: tokio::sync::watch::Receiver<Arc<ServiceIndex>>) {
        self.services = Some(services);
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
        let end = jiff::Timestamp::now();
        let idle = u64::try_from(self.idle.as_nanos()).unwrap_or(u64::MAX);
        let mut records: Vec<FlowRecord> = agg
            .drain(idle)
            .iter()
            .filter_map(|(edge, counts)| resolver.record(edge, counts, self.window_start, end))
            .collect();
        if let Some(services) = &self.services {
            let index = services.borrow().clone();
            records.iter_mut().for_each(|r| index.name(r));
        }
        let ring_lost = match (self.events_lost_seen, events_lost) {
            (Some(before), Some(now)) => now.saturating_sub(before),
            _ => 0,
        };
        if events_lost.is_some() && events_lost != self.events_lost_seen {
            self.events_lost_seen = events_lost;
            self.remember_events_lost();
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
            self.telemetry
                .observe_export(&exporter.stats, exporter.queued());
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

    fn remember_events_lost(&self) {
        let (Some(file), Some(value)) = (&self.events_lost_file, self.events_lost_seen) else {
            return;
        };
        let tmp = file.with_extension("tmp");
        let written =
            std::fs::write(&tmp, value.to_string()).and_then(|()| std::fs::rename(&tmp, file));
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %file.display(), "could not keep the events-lost count");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::export::ExportConfig;

    fn sink(spool: &std::path::Path) -> FlowSink {
        let exporter = Exporter::start(ExportConfig {
            // Nothing listens: every batch stays in the spool.
            url: "http://127.0.0.1:1".into(),
            token_file: None,
            spool_dir: spool.to_path_buf(),
            spool_max_bytes: 1 << 20,
            timeout: Duration::from_millis(100),
            ca_file: None,
        })
        .expect("exporter");
        FlowSink::new(
            "node-1",
            None,
            Some(exporter),
            Duration::from_secs(60),
            Arc::new(Telemetry::new()),
        )
    }

    fn spooled_losses(spool: &std::path::Path) -> u64 {
        std::fs::read_dir(spool)
            .expect("spool")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).expect("batch");
                let batch: FlowBatch = serde_json::from_str(&text).expect("a FlowBatch");
                batch
                    .losses
                    .iter()
                    .map(|l| l.ring_buffer_events)
                    .sum::<u64>()
            })
            .sum()
    }

    #[test]
    fn events_the_datapath_lost_while_no_agent_ran_are_reported_by_the_next_one() {
        let dir = tempfile::tempdir().expect("dir");
        let counters = |lost: u64| BTreeMap::from([("events_lost", lost)]);
        let resolver = Resolver::default();

        // The first agent: its first window sets the baseline (the counter
        // may hold losses from before any agent), its second reports 5.
        let mut first = sink(dir.path());
        let mut agg = FlowAggregator::default();
        first.flush(&mut agg, &resolver, Some(&counters(100)));
        first.flush(&mut agg, &resolver, Some(&counters(105)));
        first.shutdown();
        assert_eq!(spooled_losses(dir.path()), 5);

        // No agent while the datapath lost 25 more; the next agent's first
        // window reports them.
        let mut second = sink(dir.path());
        second.flush(&mut agg, &resolver, Some(&counters(130)));
        second.shutdown();
        assert_eq!(spooled_losses(dir.path()), 30);
    }
}
