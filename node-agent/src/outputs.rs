//! What both modes set up beside the datapath: the flow pipeline (log,
//! collector export) and the telemetry endpoints. Shared so that standalone
//! and cluster mode cannot drift.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::datapath::Datapath;
use crate::flows::export::{ExportConfig, Exporter};
use crate::flows::{FlowAggregator, FlowSink, Resolver};
use crate::telemetry::Telemetry;

/// Flow and telemetry settings, the same in both modes.
#[derive(Clone, Debug, Default)]
pub struct OutputConfig {
    /// JSON lines of `flow/v1` records; `-` for stdout.
    pub flow_log: Option<PathBuf>,
    pub flow_interval: Duration,
    pub export: Option<ExportConfig>,
    pub metrics_addr: Option<SocketAddr>,
    /// Conntrack idle timeout: flow instances quiet this long are forgotten.
    pub ct_timeout: Duration,
}

/// The running outputs.
#[derive(Debug)]
pub struct Outputs {
    pub telemetry: Arc<Telemetry>,
    pub flows: FlowAggregator,
    resolver: Resolver,
    /// Whether `resolver` holds a programmed rule map yet. Windows do not
    /// end before: after a restart the pinned ring buffer hands the new
    /// agent events from while none ran, and they need names and labels.
    resolving: bool,
    sink: FlowSink,
    interval: Duration,
    last_flush: std::time::Instant,
    /// When the conntrack map was last counted (a walk of every key).
    last_ct_count: Option<std::time::Instant>,
}

/// How often the conntrack map is walked to count its entries.
const CT_COUNT_EVERY: Duration = Duration::from_secs(30);

impl Outputs {
    /// Starts the exporter thread and the telemetry server (on the current
    /// tokio runtime).
    pub fn start(node: &str, config: &OutputConfig) -> crate::Result<Self> {
        let telemetry = Arc::new(Telemetry::new());
        if let Some(addr) = config.metrics_addr {
            let t = telemetry.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::telemetry::serve(addr, t).await {
                    tracing::error!(error = %e, %addr, "metrics endpoint");
                }
            });
        }
        let exporter = match &config.export {
            Some(export) => Some(Exporter::start(export.clone()).map_err(|e| {
                crate::Error::invalid(
                    "agent",
                    "collector export",
                    format!("{e} (spool {})", export.spool_dir.display()),
                )
            })?),
            None => None,
        };
        let sink = FlowSink::new(
            node,
            config.flow_log.clone(),
            exporter,
            config.ct_timeout,
            telemetry.clone(),
        );
        Ok(Outputs {
            telemetry,
            flows: FlowAggregator::default(),
            resolver: Resolver::default(),
            resolving: false,
            sink,
            interval: config.flow_interval,
            last_flush: std::time::Instant::now(),
            last_ct_count: None,
        })
    }

    /// Names and labels for the records from now on (what was programmed).
    pub fn set_resolver(&mut self, resolver: Resolver) {
        self.resolver = resolver;
        self.resolving = true;
    }

    /// Service names for the records from now on (cluster mode).
    pub fn set_services(
        &mut self,
        services: tokio::sync::watch::Receiver<Arc<crate::flows::ServiceIndex>>,
    ) {
        self.sink.set_services(services);
    }

    /// Drains the ring buffer, and ends the window when it is due (and
    /// records can be named).
    pub fn tick(&mut self, datapath: &mut Datapath) {
        self.telemetry.beat();
        datapath.read_flows(&mut self.flows);
        if self.resolving && self.last_flush.elapsed() >= self.interval {
            self.flush(datapath);
        }
    }

    pub fn flush(&mut self, datapath: &mut Datapath) {
        datapath.read_flows(&mut self.flows);
        let counters = datapath.counters().ok();
        self.sink
            .flush(&mut self.flows, &self.resolver, counters.as_ref());
        self.last_flush = std::time::Instant::now();
        if self
            .last_ct_count
            .is_none_or(|t| t.elapsed() >= CT_COUNT_EVERY)
        {
            let ct = &datapath.maps.conntrack;
            self.telemetry.observe_conntrack(ct.count(), ct.capacity());
            self.last_ct_count = Some(std::time::Instant::now());
        }
    }

    /// Writes what is left and waits until the exporter has it on disk.
    pub fn shutdown(mut self, datapath: &mut Datapath) {
        self.flush(datapath);
        self.sink.shutdown();
    }
}
