//! `bulkhead-collector`: receives flow batches from agents, keeps them in
//! tiers, serves queries. See the crate docs for the data model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
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
}

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
