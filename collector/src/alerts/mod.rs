//! Detections on incoming batches, and delivery of their alerts.
//!
//! ```text
//!  POST /api/v1/flows ─ stored (not a retried batch) ─► Pipeline::observe
//!        │                                                │ Detector (insight::detect; ids stable,
//!        │                                                │ each returned once)
//!        │                                                ▼
//!        │              bulkhead_collector_alerts_total{detector,severity}, recent (GET /api/v1/alerts)
//!        │                                                │ one bounded queue per sink
//!        ▼                                                ▼
//!   store                          syslog udp/tcp/tls (RFC 5424 | CEF)   webhook (JSON, HMAC, retries)
//! ```
//!
//! Each sink works through its own queue in order, retrying the alert at
//! its head until delivered, so a SIEM that is down delays alerts but does
//! not lose them (up to the queue's bound) and a webhook never sees one id
//! accepted twice.

pub mod format;
pub mod syslog;
pub mod webhook;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_api::flow::FlowRecord;
use bulkhead_insight::detect::{Alert, Detector};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;

use crate::metrics::{AlertLabel, DeliveryLabel, Metrics};

/// A sink or its configuration that cannot work, naming it.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("{target}: {reason}")]
    Target { target: String, reason: String },
}

/// Alerts queued per sink before new ones are dropped (and counted).
pub const QUEUE: usize = 10_000;
/// Alerts `GET /api/v1/alerts` remembers.
pub const RECENT: usize = 1_000;

/// Exponential backoff from 200 ms, doubling to at most 30 s.
#[derive(Debug)]
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(200))
    }
}

impl Backoff {
    pub(crate) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }
}

/// `bulkhead_collector_alert_deliveries_total{sink,result}`.
#[derive(Clone, Debug)]
pub struct Deliveries(Family<DeliveryLabel, Counter>);

impl Deliveries {
    pub(crate) fn count(&self, sink: &str, result: &str) {
        self.0
            .get_or_create(&DeliveryLabel {
                sink: sink.into(),
                result: result.into(),
            })
            .inc();
    }
}

/// A rustls client config trusting the PEM certificates in `ca_file` (none:
/// an empty trust store, for plain-HTTP use).
pub fn client_tls(ca_file: Option<&Path>, flag: &str) -> Result<rustls::ClientConfig, AlertsError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(file) = ca_file {
        let bad = |reason: String| AlertsError::Target {
            target: format!("{flag} {}", file.display()),
            reason,
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
            .map_err(|e| bad(e.to_string()))?;
        for cert in certs {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("no CERTIFICATE in it".into()));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AlertsError::Target {
        target: "TLS".into(),
        reason: e.to_string(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
}

/// The detector, the sinks' queues and the recent alerts.
#[derive(Debug)]
pub struct Pipeline {
    detector: Mutex<Detector>,
    queues: Vec<(String, mpsc::Sender<Alert>)>,
    recent: Mutex<VecDeque<Alert>>,
    alerts: Family<AlertLabel, Counter>,
    deliveries: Deliveries,
}

impl Pipeline {
    pub fn new(detector: Detector, metrics: &Metrics) -> Self {
        Pipeline {
            detector: Mutex::new(detector),
            queues: Vec::new(),
            recent: Mutex::new(VecDeque::new()),
            alerts: metrics.alerts.clone(),
            deliveries: Deliveries(metrics.alert_deliveries.clone()),
        }
    }

    /// Starts a syslog sink's task (needs a tokio runtime).
    pub fn add_syslog(&mut self, sink: syslog::SyslogSink) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let name = format!("syslog-{}", sink.target.transport.as_str());
        tokio::spawn(sink.run(rx, self.deliveries.clone()));
        self.queues.push((name, tx));
    }

    /// Starts the webhook's task (needs a tokio runtime).
    pub fn add_webhook(&mut self, sink: webhook::WebhookSink) {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(sink.run(rx, self.deliveries.clone()));
        self.queues.push(("webhook".into(), tx));
    }

    /// What history already holds (first-ever edges), before any batch.
    pub fn seed(&self, history: &[FlowRecord]) {
        if let Ok(mut d) = self.detector.lock() {
            d.seed(history);
        }
    }

    /// Runs the detections over a stored batch and queues new alerts.
    pub fn observe(&self, records: &[FlowRecord]) -> Vec<Alert> {
        let raised = match self.detector.lock() {
            Ok(mut d) => d.observe(records),
            Err(poisoned) => poisoned.into_inner().observe(records),
        };
        for a in &raised {
            self.alerts
                .get_or_create(&AlertLabel {
                    detector: a.detector.as_str().into(),
                    severity: a.severity.as_str().into(),
                })
                .inc();
            tracing::warn!(
                id = a.id,
                detector = a.detector.as_str(),
                severity = a.severity.as_str(),
                "alert: {}",
                a.summary
            );
            for (sink, tx) in &self.queues {
                if tx.try_send(a.clone()).is_err() {
                    tracing::error!(sink, id = a.id, "alert queue full, alert dropped");
                    self.deliveries.count(sink, "dropped");
                }
            }
        }
        if !raised.is_empty() {
            let mut recent = match self.recent.lock() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            recent.extend(raised.iter().cloned());
            while recent.len() > RECENT {
                recent.pop_front();
            }
        }
        raised
    }

    /// The last [`RECENT`] alerts, oldest first.
    pub fn recent(&self) -> Vec<Alert> {
        match self.recent.lock() {
            Ok(r) => r.iter().cloned().collect(),
            Err(p) => p.into_inner().iter().cloned().collect(),
        }
    }
}
