//! `bulkhead-operator`: see the crate docs of `bulkhead_operator`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use bulkhead_api::policy::EnforcementMode;
use bulkhead_operator::collector::Collector;
use bulkhead_operator::engine::Engine;
use bulkhead_operator::feed;
use bulkhead_operator::http::{self, Health};
use bulkhead_operator::leader::{self, LeaseConfig};
use bulkhead_operator::metrics::Metrics;
use bulkhead_operator::promotion::Promotions;
use bulkhead_policy::CompileOptions;
use clap::Parser;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::{mpsc, watch};

#[derive(Debug, Parser)]
#[command(version, about = "Compiles Bulkhead policy into per-node rule maps")]
struct Args {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "127.0.0.1:9440")]
    metrics_addr: SocketAddr,
    /// Mode of endpoints no policy sets one for.
    #[arg(long, default_value = "visibility", value_parser = parse_mode)]
    default_mode: EnforcementMode,
    /// How many IdentityMap shards to write.
    #[arg(long, default_value_t = 16)]
    identity_shards: u32,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "bulkhead-system", env = "POD_NAMESPACE")]
    lease_namespace: String,
    /// This replica's name in the Lease (defaults to the host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Enforce Kubernetes NetworkPolicies (networking.k8s.io/v1) too, through
    /// the same compiler: watched and translated only when set.
    #[arg(long, env = "BULKHEAD_NETWORK_POLICIES")]
    network_policies: bool,
    /// How long a released identity number stays reserved for its label
    /// set before another may get it ("24h", "90m", "1h30m"). It must
    /// outlast what may still carry the number: agents catching up, their
    /// conntrack entries, flow records in spools and in flight.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    identity_quarantine: std::time::Duration,
    /// The collector's base URL, which promotion gates ask for would-be
    /// denied flows (e.g. http://bulkhead-collector.bulkhead-system:9470).
    /// Without it every gate stays shut, and its status says why.
    #[arg(long, env = "BULKHEAD_COLLECTOR_URL")]
    collector_url: Option<String>,
    /// CA certificates (PEM) the collector's certificate must chain to, for
    /// an https:// --collector-url.
    #[arg(long, value_name = "FILE")]
    collector_ca_file: Option<std::path::PathBuf>,
    /// How long one question to the collector may take.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    collector_timeout: std::time::Duration,
    /// How often rule hits are gathered from the NodeRuleMaps into each
    /// SegmentationPolicy's status (written only when they changed).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    hits_interval: std::time::Duration,
    /// Rules not hit for this long count as unused in
    /// bulkhead_operator_rules_recertify (90d, 12w, 30d).
    #[arg(long, default_value = "90d", value_parser = parse_window)]
    unused_for: jiff::SignedDuration,
    /// How often promotion gates are checked.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    promotion_interval: std::time::Duration,
    /// The longest a SegmentationException may run, in hours after its
    /// request (2160: 90 days); longer ones are refused in their status. The
    /// admission policy's bound (chart value exceptions.maxHours) should match.
    #[arg(long, default_value_t = 2160, value_parser = clap::value_parser!(u64).range(1..))]
    exception_max_hours: u64,
    /// A port every host endpoint keeps open whatever policy says, added to
    /// the built-in ones (SSH, the API server, kubelet, etcd, DNS, DHCP):
    /// PROTOCOL/PORT/DIRECTION, repeatable. The chart adds the collector
    /// (`tcp/9470/egress`) and the agents' metrics (`tcp/9465/ingress`).
    #[arg(long = "failsafe-port", value_name = "PROTO/PORT/DIR")]
    failsafe_ports: Vec<bulkhead_api::rule_map::FailsafePort>,
    /// Namespace of the external nodes' heartbeat Leases.
    #[arg(long, default_value = bulkhead_api::external_node::EXTERNAL_NODE_NAMESPACE)]
    external_node_namespace: String,
    /// How often external nodes' Leases are checked for lateness.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    heartbeat_interval: std::time::Duration,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn parse_mode(s: &str) -> Result<EnforcementMode, String> {
    match s {
        "visibility" => Ok(EnforcementMode::Visibility),
        "selective" => Ok(EnforcementMode::Selective),
        "full" => Ok(EnforcementMode::Full),
        _ => Err(format!(
            "{s:?} is not a mode: use visibility, selective or full"
        )),
    }
}

fn parse_window(s: &str) -> Result<jiff::SignedDuration, String> {
    bulkhead_insight::query::params::duration(s)
        .filter(|d| d.is_positive())
        .ok_or_else(|| format!("{s:?} is not a duration like 90d, 12w or 36h"))
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 24h or 90m: {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG or in-cluster config)")?;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let health = Arc::new(Health {
        registry,
        ready: AtomicBool::new(false),
    });
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let reporter = Reporter {
        controller: "bulkhead-operator".into(),
        instance: Some(identity.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);

    let (leader_tx, leader_rx) = watch::channel(false);
    let lease = LeaseConfig::new(args.lease_namespace, "bulkhead-operator".into(), identity);
    tokio::spawn(leader::run(
        client.clone(),
        lease,
        leader_tx,
        metrics.clone(),
    ));
    tokio::spawn(bulkhead_operator::heartbeat::run(
        client.clone(),
        args.external_node_namespace.clone(),
        args.heartbeat_interval
            .max(std::time::Duration::from_millis(100)),
        leader_rx.clone(),
    ));
    let addr = args.metrics_addr;
    let h = health.clone();
    tokio::spawn(async move {
        if let Err(e) = http::serve(addr, h).await {
            tracing::error!(error = %e, %addr, "metrics endpoint failed");
        }
    });
    let (tx, rx) = mpsc::channel(4096);
    let observed = Arc::new(bulkhead_operator::observed::Observed::default());
    feed::start(
        client.clone(),
        tx,
        metrics.clone(),
        observed.clone(),
        args.network_policies,
    );
    let mut options = CompileOptions {
        default_mode: args.default_mode,
        identity_shards: args.identity_shards,
        network_policies: args.network_policies,
        identity_quarantine: args.identity_quarantine,
        ..CompileOptions::default()
    };
    for port in args.failsafe_ports {
        if !options.failsafe_ports.contains(&port) {
            options.failsafe_ports.push(port);
        }
    }
    let collector = match (args.collector_url.as_deref(), &args.collector_ca_file) {
        (Some(url), Some(ca)) => Some(
            Collector::new(url, args.collector_timeout)
                .with_ca_file(ca)
                .map_err(anyhow::Error::msg)?,
        ),
        (Some(url), None) if url.starts_with("https://") => {
            anyhow::bail!("--collector-url {url}: an https collector needs --collector-ca-file")
        }
        (Some(url), None) => Some(Collector::new(url, args.collector_timeout)),
        (None, _) => None,
    };
    let interval = args
        .promotion_interval
        .max(std::time::Duration::from_secs(1));
    let engine = Engine::new(client, options, metrics, health, recorder)
        .with_observed(observed)
        .with_promotions(Promotions::new(collector, interval))
        .with_exception_max(std::time::Duration::from_secs(
            args.exception_max_hours * 3600,
        ))
        .with_hits(
            args.hits_interval
                .max(std::time::Duration::from_millis(100)),
            args.unused_for,
        );
    tokio::select! {
        _ = engine.run(rx, leader_rx) => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
    }
    Ok(())
}
