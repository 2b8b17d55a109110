//! `bulkhead-collector`: receives flow batches from agents, keeps them in
//! tiers, serves queries. See the crate docs for the data model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bulkhead_collector::alerts::syslog::{SyslogSink, SyslogTarget, Transport};
use bulkhead_collector::alerts::webhook::WebhookSink;
use bulkhead_collector::alerts::{self, Pipeline};
use bulkhead_collector::api::{self, App};
use bulkhead_collector::auth::{AnyAuth, TokenFileAuth, TokenReviewAuth};
use bulkhead_collector::store::clickhouse::ClickHouseConfig;
use bulkhead_collector::store::{
    AnyStore, ClickHouseStore, Clock, SqliteStore, Store, StoreConfig,
};
use bulkhead_collector::tier::Retention;
use bulkhead_collector::tls;
use bulkhead_insight::query::params::duration;
use clap::{Parser, ValueEnum};
use jiff::SignedDuration;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    Sqlite,
    Clickhouse,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AuthKind {
    Tokenreview,
    TokenFile,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Bulkhead collector: keeps flow records from every agent and answers queries"
)]
struct Args {
    #[arg(long, env = "BULKHEAD_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Where the SQLite store keeps flows.sqlite.
    #[arg(
        long,
        env = "BULKHEAD_DATA_DIR",
        default_value = "/var/lib/bulkhead-collector"
    )]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// ClickHouse's HTTP interface, e.g. http://clickhouse:8123.
    #[arg(long, env = "BULKHEAD_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    #[arg(long, default_value = "bulkhead")]
    clickhouse_database: String,
    #[arg(long, env = "BULKHEAD_CLICKHOUSE_USER")]
    clickhouse_user: Option<String>,
    /// A file holding the ClickHouse password (not the password itself, so
    /// it stays out of process listings).
    #[arg(long)]
    clickhouse_password_file: Option<PathBuf>,
    /// How long 1-minute buckets are kept.
    #[arg(long, default_value = "14d", value_parser = parse_duration)]
    retention_minute: SignedDuration,
    /// How long hourly buckets are kept.
    #[arg(long, default_value = "90d", value_parser = parse_duration)]
    retention_hour: SignedDuration,
    /// How long daily buckets are kept.
    #[arg(long, default_value = "400d", value_parser = parse_duration)]
    retention_day: SignedDuration,
    /// How often retention runs.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    maintain_interval: SignedDuration,
    #[arg(long, value_enum, default_value = "tokenreview")]
    auth: AuthKind,
    /// `token node` per line, for --auth token-file.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The agents' ServiceAccount, namespace:name, for --auth tokenreview.
    #[arg(long, default_value = "bulkhead-system:bulkhead-agent")]
    agent_service_account: String,
    /// Audiences the agents' tokens must carry (TokenReview); repeatable.
    #[arg(long)]
    token_audience: Vec<String>,
    /// The largest batch body accepted, in bytes.
    #[arg(long, default_value_t = api::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Serve HTTPS with this certificate chain (PEM), re-read when it
    /// changes; needs --tls-key-file. Without both, plain HTTP.
    #[arg(long, env = "BULKHEAD_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM).
    #[arg(long, env = "BULKHEAD_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    detect: DetectArgs,
}

/// Detections and where their alerts go (docs/integrations.md).
#[derive(Debug, clap::Args)]
struct DetectArgs {
    /// Turn the detections off.
    #[arg(long)]
    detect_off: bool,
    /// A scan is this many denied destinations from one source in a window...
    #[arg(long, default_value_t = 20)]
    detect_scan_hosts: usize,
    /// ...or this many denied ports on one destination.
    #[arg(long, default_value_t = 20)]
    detect_scan_ports: usize,
    /// The window of every windowed detection.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    detect_window: SignedDuration,
    /// A label (key=value) that makes a workload sensitive: the first flow
    /// from a new source into it raises an alert. Repeatable.
    #[arg(long, value_parser = parse_label)]
    detect_sensitive_label: Vec<(String, String)>,
    /// Connections from world or unlabeled into a full-mode workload, per
    /// source and port in a window, that raise an alert.
    #[arg(long, default_value_t = 1)]
    detect_untrusted_min_flows: u64,
    /// Risky ports for lateral movement between applications.
    #[arg(long, value_delimiter = ',', default_values_t = bulkhead_insight::detect::RISKY_PORTS)]
    detect_lateral_ports: Vec<u16>,
    /// The label key that names an application.
    #[arg(long, default_value = "app")]
    detect_app_key: String,
    /// History read at start so known edges into sensitive workloads are
    /// not called first-ever after a restart.
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    detect_seed: SignedDuration,
    /// A syslog destination: udp://host:514, tcp://host:601, tls://host:6514,
    /// with ?format=cef for CEF lines. Repeatable.
    #[arg(long)]
    syslog: Vec<String>,
    /// The CA (PEM) that signed tls:// syslog servers' certificates.
    #[arg(long)]
    syslog_ca_file: Option<PathBuf>,
    /// The HOSTNAME of syslog lines (default: $HOSTNAME, else "-").
    #[arg(long, env = "BULKHEAD_SYSLOG_HOSTNAME")]
    syslog_hostname: Option<String>,
    /// A SOAR webhook (http:// or https://) that gets each alert as JSON.
    #[arg(long, requires = "webhook_secret_file")]
    webhook_url: Option<String>,
    /// The HMAC-SHA256 key of X-Bulkhead-Signature (a file, so the key stays
    /// out of process listings).
    #[arg(long)]
    webhook_secret_file: Option<PathBuf>,
    /// The CA (PEM) of an https:// webhook.
    #[arg(long)]
    webhook_ca_file: Option<PathBuf>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(format!("{s:?} is not key=value")),
    }
}

async fn alerts_pipeline<S: Store>(
    args: &DetectArgs,
    store: &S,
    metrics: &bulkhead_collector::metrics::Metrics,
    now: jiff::Timestamp,
) -> anyhow::Result<Option<Arc<Pipeline>>> {
    use bulkhead_insight::detect::{
        DetectConfig, Detector, LateralConfig, ScanConfig, SensitiveConfig, UntrustedConfig,
    };
    if args.detect_off {
        return Ok(None);
    }
    let window = args.detect_window;
    let config = DetectConfig {
        scan: ScanConfig {
            enabled: true,
            window,
            hosts: args.detect_scan_hosts,
            ports: args.detect_scan_ports,
        },
        sensitive: SensitiveConfig {
            labels: args.detect_sensitive_label.clone(),
        },
        untrusted: UntrustedConfig {
            enabled: true,
            window,
            min_flows: args.detect_untrusted_min_flows,
        },
        lateral: LateralConfig {
            enabled: true,
            ports: args.detect_lateral_ports.clone(),
            app_key: args.detect_app_key.clone(),
            window,
            min_flows: 1,
        },
    };
    let detector = Detector::new(config).context("detection thresholds")?;
    let mut pipeline = Pipeline::new(detector, metrics);
    if !args.detect_sensitive_label.is_empty() && args.detect_seed.as_secs() > 0 {
        let filter = bulkhead_insight::FlowFilter {
            since: Some(now - args.detect_seed),
            ..Default::default()
        };
        let history = store
            .records(&filter, SEED_RECORDS)
            .await
            .context("reading history to seed the first-flow detection")?;
        tracing::info!(records = history.len(), "detections seeded from history");
        pipeline.seed(&history);
    }
    let hostname = args
        .syslog_hostname
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "-".into());
    let syslog_tls = match &args.syslog_ca_file {
        Some(f) => Some(Arc::new(alerts::client_tls(Some(f), "--syslog-ca-file")?)),
        None => None,
    };
    for target in &args.syslog {
        let target: SyslogTarget = target.parse()?;
        if target.transport == Transport::Tls && syslog_tls.is_none() {
            bail!("--syslog {target:?}: tls:// needs --syslog-ca-file");
        }
        pipeline.add_syslog(SyslogSink {
            target,
            tls: syslog_tls.clone(),
            hostname: hostname.clone(),
        });
    }
    if let (Some(url), Some(secret)) = (&args.webhook_url, &args.webhook_secret_file) {
        let key = std::fs::read(secret)
            .with_context(|| format!("--webhook-secret-file {}", secret.display()))?;
        let key = String::from_utf8_lossy(&key).trim().as_bytes().to_vec();
        let tls = match &args.webhook_ca_file {
            Some(f) => Some(alerts::client_tls(Some(f), "--webhook-ca-file")?),
            None => None,
        };
        pipeline.add_webhook(WebhookSink::new(url, key, tls)?);
    }
    Ok(Some(Arc::new(pipeline)))
}

/// The most records read to seed the first-flow detection.
const SEED_RECORDS: usize = 1_000_000;

fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    duration(s).ok_or_else(|| format!("{s:?} is not a duration like 14d, 1h or 15m"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn open_store(args: &Args, config: StoreConfig) -> anyhow::Result<AnyStore> {
    Ok(match args.backend {
        Backend::Sqlite => {
            let s = SqliteStore::open(&args.data_dir, config).with_context(|| {
                format!("opening the SQLite store in {}", args.data_dir.display())
            })?;
            AnyStore::Sqlite(s)
        }
        Backend::Clickhouse => {
            let Some(url) = args.clickhouse_url.clone() else {
                bail!("--backend clickhouse needs --clickhouse-url");
            };
            let password = match &args.clickhouse_password_file {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("reading {}", p.display()))?
                        .trim()
                        .to_string(),
                ),
                None => None,
            };
            let ch = ClickHouseConfig {
                url,
                database: args.clickhouse_database.clone(),
                user: args.clickhouse_user.clone(),
                password,
            };
            AnyStore::ClickHouse(Box::new(
                ClickHouseStore::open(ch, config)
                    .await
                    .context("opening the ClickHouse store")?,
            ))
        }
    })
}

async fn open_auth(args: &Args) -> anyhow::Result<AnyAuth> {
    Ok(match args.auth {
        AuthKind::TokenFile => {
            let Some(path) = &args.token_file else {
                bail!("--auth token-file needs --token-file");
            };
            AnyAuth::TokenFile(TokenFileAuth::load(path)?)
        }
        AuthKind::Tokenreview => {
            let client = kube::Client::try_default()
                .await
                .context("a Kubernetes client for TokenReview (kubeconfig or in-cluster)")?;
            AnyAuth::TokenReview(Box::new(TokenReviewAuth::new(
                client,
                &args.agent_service_account,
                args.token_audience.clone(),
            )?))
        }
    })
}

async fn maintain_loop<S: Store, A: bulkhead_collector::auth::Auth>(
    app: Arc<App<S, A>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match app.store.maintain(app.clock.now()).await {
            Ok(done) if !done.dropped.is_empty() => {
                app.metrics
                    .partitions_dropped
                    .inc_by(done.dropped.len() as u64);
                tracing::info!(dropped = ?done.dropped, "retention dropped partitions");
            }
            Ok(_) => {}
            Err(e) => {
                app.metrics.store_error("maintain", &e);
                tracing::error!("retention failed: {e}");
            }
        }
    }
}

/// SIGTERM (what Kubernetes sends) or SIGINT.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let retention = Retention {
        minute: args.retention_minute,
        hour: args.retention_hour,
        day: args.retention_day,
    };
    retention.validate()?;
    let every = Duration::try_from(args.maintain_interval)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--maintain-interval must be positive")?;
    let clock = Clock::system();
    let store = open_store(
        &args,
        StoreConfig {
            retention,
            clock: clock.clone(),
        },
    )
    .await?;
    let auth = open_auth(&args).await?;
    let mut app = App::new(store, auth, clock);
    app.body_limit = args.body_limit;
    app.alerts = alerts_pipeline(&args.detect, &app.store, &app.metrics, app.clock.now()).await?;
    let app = Arc::new(app);
    tokio::spawn(maintain_loop(app.clone(), every));
    // Before binding: a bad certificate is an error at start, not a refused handshake later.
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::server_config(tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, backend = ?args.backend, auth = ?args.auth, tls = tls.is_some(), "collector up");
    match tls {
        Some(config) => tls::serve(listener, api::router(app), config, shutdown())
            .await
            .context("serving HTTPS")?,
        None => axum::serve(listener, api::router(app))
            .with_graceful_shutdown(shutdown())
            .await
            .context("serving")?,
    }
    Ok(())
}
