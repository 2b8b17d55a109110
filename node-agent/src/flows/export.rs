//! Shipping `flow/v1` batches to the collector.
//!
//! ```text
//!  agent loop ──try_send──► channel ──► exporter thread ──write──► spool dir (one file per batch)
//!   (never waits)          (bounded)     (own runtime)              │ oldest first
//!                                                                   ▼
//!                                             POST /api/v1/flows (HTTP/2, Bearer token)
//!                                             2xx: delete the file · 400: set aside, count lost
//!                                             otherwise: keep it, back off, retry
//! ```
//!
//! Every batch is on disk before it is sent, so a collector outage of any
//! length loses nothing until the spool's byte bound is reached, and an
//! agent restart loses only what had not yet been drained from the ring
//! buffer (at most one flow interval). The collector ignores a batch id it
//! has stored, so a batch re-sent after a lost reply is not counted twice.
//!
//! Why HTTP/2 with JSON rather than gRPC: the body is the same `flow/v1`
//! JSON as the flow log and the CLI's export files (one schema, no second
//! encoding to keep in step), anything that speaks HTTP can post a batch,
//! and HTTP/2 still gives one multiplexed connection with flow control.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_api::flow::FlowBatch;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

/// Where and how to ship.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// `http://collector:9470` (the path is added).
    pub url: String,
    /// A file holding the bearer token, read again before every request
    /// (projected ServiceAccount tokens rotate).
    pub token_file: Option<PathBuf>,
    pub spool_dir: PathBuf,
    /// Oldest batches are dropped (and counted) beyond this many bytes.
    pub spool_max_bytes: u64,
    pub timeout: Duration,
    /// CA certificates (PEM) for an `https://` collector.
    pub ca_file: Option<PathBuf>,
}

/// What the exporter has done, for metrics and status.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub batches_sent: AtomicU64,
    pub records_sent: AtomicU64,
    /// Records lost: channel full, spool over its bound, or refused as malformed.
    pub records_dropped: AtomicU64,
    pub send_errors: AtomicU64,
    pub spooled_batches: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// The agent's handle; cheap to call from the loop.
#[derive(Debug)]
pub struct Exporter {
    tx: mpsc::Sender<FlowBatch>,
    pub spool_dir: PathBuf,
    pub stats: Arc<ExportStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const CHANNEL_BATCHES: usize = 64;

impl Exporter {
    /// Starts the exporter thread. Batches already in the spool (from a
    /// previous run) go out first.
    pub fn start(config: ExportConfig) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.spool_dir)?;
        let client = client(&config)?;
        let spool_dir = config.spool_dir.clone();
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let stats = Arc::new(ExportStats::default());
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("flow-export".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "flow export runtime");
                        return;
                    }
                };
                runtime.block_on(run(config, client, rx, thread_stats));
            })?;
        Ok(Exporter {
            tx,
            spool_dir,
            stats,
            thread: Some(thread),
        })
    }

    /// Hands a batch over without waiting. A full channel (the exporter
    /// cannot keep up with writing the spool) drops it, counted.
    pub fn submit(&self, batch: FlowBatch) {
        let n = batch.records.len() as u64;
        if self.tx.try_send(batch).is_err() {
            self.stats.records_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Batches waiting in the spool.
    pub fn queued(&self) -> usize {
        spooled(&self.spool_dir).len()
    }

    /// Closes the channel and waits until everything handed over is in the
    /// spool (not until it is sent).
    pub fn shutdown(mut self) {
        let (tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spool_name(batch: &FlowBatch) -> String {
    format!("{}.{}.json", batch.batch_id, batch.records.len())
}

/// Spool files, oldest first (names start with a zero-padded timestamp).
fn spooled(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

fn records_in(path: &Path) -> u64 {
    // <batch id>.<records>.json
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.rsplit('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn write_spool(config: &ExportConfig, stats: &ExportStats, batch: &FlowBatch) {
    let path = config.spool_dir.join(spool_name(batch));
    let tmp = path.with_extension("tmp");
    let written = serde_json::to_vec(batch)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    match written {
        Ok(()) => {
            stats.spooled_batches.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats
                .records_dropped
                .fetch_add(batch.records.len() as u64, Ordering::Relaxed);
            tracing::error!(error = %e, path = %path.display(), "flow spool write failed; batch dropped");
        }
    }
    // Keep the spool within its bound: the oldest batches go first.
    let files = spooled(&config.spool_dir);
    let mut total: u64 = files.iter().map(|(_, n)| n).sum();
    for (old, size) in files {
        if total <= config.spool_max_bytes {
            break;
        }
        stats
            .records_dropped
            .fetch_add(records_in(&old), Ordering::Relaxed);
        tracing::warn!(path = %old.display(), "flow spool full; oldest batch dropped");
        std::fs::remove_file(&old).ok();
        total = total.saturating_sub(size);
    }
}

enum Sent {
    Ok,
    /// The collector refused the batch itself: retrying will not help.
    Rejected(String),
    Retry(String),
}

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// HTTP/2 to the collector: over TLS (ALPN) for `https://`, with the
/// collector's certificate checked against `ca_file`; prior knowledge
/// (h2c) for `http://`. Errors name what is missing or unreadable.
fn client(config: &ExportConfig) -> std::io::Result<HttpClient> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(file) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(file)
                .map_err(|e| invalid(format!("--collector-ca-file {}: {e}", file.display())))?;
            for cert in certs {
                let cert = cert
                    .map_err(|e| invalid(format!("--collector-ca-file {}: {e}", file.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("--collector-ca-file {}: {e}", file.display())))?;
            }
            if roots.is_empty() {
                return Err(invalid(format!(
                    "--collector-ca-file {}: no CERTIFICATE in it",
                    file.display()
                )));
            }
        }
        None if config.url.starts_with("https://") => {
            return Err(invalid(format!(
                "--collector {}: an https collector needs --collector-ca-file",
                config.url
            )))
        }
        None => {}
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector))
}

async fn post(client: &HttpClient, config: &ExportConfig, body: Vec<u8>) -> Sent {
    let uri = format!("{}/api/v1/flows", config.url.trim_end_matches('/'));
    let mut request = hyper::Request::post(&uri).header("content-type", "application/json");
    if let Some(file) = &config.token_file {
        match std::fs::read_to_string(file) {
            Ok(token) => {
                request = request.header("authorization", format!("Bearer {}", token.trim()));
            }
            Err(e) => return Sent::Retry(format!("reading the token {}: {e}", file.display())),
        }
    }
    let request = match request.body(Full::new(Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => return Sent::Rejected(format!("building the request to {uri}: {e}")),
    };
    let response = match tokio::time::timeout(config.timeout, client.request(request)).await {
        Err(_) => return Sent::Retry(format!("{uri}: no answer within {:?}", config.timeout)),
        Ok(Err(e)) => return Sent::Retry(format!("{uri}: {e}")),
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let text = match tokio::time::timeout(config.timeout, response.into_body().collect()).await {
        Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        _ => String::new(),
    };
    if status.is_success() {
        Sent::Ok
    } else if status == hyper::StatusCode::BAD_REQUEST
        || status == hyper::StatusCode::PAYLOAD_TOO_LARGE
    {
        Sent::Rejected(format!("{uri}: {status}: {text}"))
    } else {
        Sent::Retry(format!("{uri}: {status}: {text}"))
    }
}

async fn run(
    config: ExportConfig,
    client: HttpClient,
    mut rx: mpsc::Receiver<FlowBatch>,
    stats: Arc<ExportStats>,
) {
    let mut backoff = Duration::from_millis(250);
    let mut open = true;
    loop {
        while let Ok(batch) = rx.try_recv() {
            write_spool(&config, &stats, &batch);
        }
        let Some((path, _)) = spooled(&config.spool_dir).into_iter().next() else {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(batch) => write_spool(&config, &stats, &batch),
                None => return,
            }
            continue;
        };
        if !open {
            // Shutting down: everything handed over is on disk.
            return;
        }
        let body = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "unreadable spool file dropped");
                std::fs::remove_file(&path).ok();
                continue;
            }
        };
        match post(&client, &config, body).await {
            Sent::Ok => {
                stats.batches_sent.fetch_add(1, Ordering::Relaxed);
                stats
                    .records_sent
                    .fetch_add(records_in(&path), Ordering::Relaxed);
                std::fs::remove_file(&path).ok();
                backoff = Duration::from_millis(250);
            }
            Sent::Rejected(why) => {
                stats
                    .records_dropped
                    .fetch_add(records_in(&path), Ordering::Relaxed);
                tracing::error!(error = %why, path = %path.display(), "collector refused a batch; set aside");
                let aside = config.spool_dir.join("rejected");
                std::fs::create_dir_all(&aside).ok();
                if let Some(name) = path.file_name() {
                    std::fs::rename(&path, aside.join(name)).ok();
                }
                *stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            }
            Sent::Retry(why) => {
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %why, retry_in = ?backoff, "flow export failed; batches stay in the spool");
                *stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                // Wait, but keep taking batches into the spool meanwhile.
                let deadline = tokio::time::Instant::now() + backoff;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        b = rx.recv(), if open => match b {
                            Some(batch) => write_spool(&config, &stats, &batch),
                            None => open = false,
                        },
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        if rx.is_closed() && rx.is_empty() {
            open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(id: &str) -> FlowBatch {
        FlowBatch {
            node: "n".into(),
            batch_id: id.into(),
            records: Vec::new(),
            losses: Vec::new(),
        }
    }

    #[test]
    fn the_spool_keeps_its_bound_by_dropping_the_oldest_and_counting_them() {
        let dir = std::env::temp_dir().join(format!("bh-spool-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).expect("dir");
        let config = ExportConfig {
            url: "http://127.0.0.1:1".into(),
            token_file: None,
            spool_dir: dir.clone(),
            spool_max_bytes: 200,
            timeout: Duration::from_millis(100),
            ca_file: None,
        };
        let stats = ExportStats::default();
        for i in 0..5 {
            write_spool(&config, &stats, &batch(&format!("{i:020}")));
        }
        let files = spooled(&dir);
        let total: u64 = files.iter().map(|(_, n)| n).sum();
        assert!(total <= 200, "{files:?}");
        assert!(files.len() < 5, "oldest dropped: {files:?}");
        let newest = files.last().expect("the newest stays").0.clone();
        assert!(newest.to_string_lossy().contains("00000000000000000004"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
