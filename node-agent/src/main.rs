//! `bulkhead-agent`: the node agent binary.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bulkhead_agent::flows::export::ExportConfig;
use bulkhead_agent::loader::LoadOptions;
use bulkhead_agent::outputs::OutputConfig;
use bulkhead_agent::InterfaceConfig;
use bulkhead_agent::{cluster, standalone};
use clap::Parser;

mod config_file;

/// Bulkhead's node agent. Cluster mode (`--node-name`, with KUBECONFIG or an
/// in-cluster config) enforces this node's NodeRuleMap and the IdentityMap
/// shards from the API server and reports what it programmed in the rule
/// map's status. Standalone mode (`--rule-map`) enforces a NodeRuleMap and
/// IdentityMap shards read from files (YAML or JSON, object or bare spec)
/// and reloads them when they change.
#[derive(Debug, Parser)]
#[command(name = "bulkhead-agent", version)]
struct Args {
    /// Read flags from this YAML file: each key a long flag without dashes
    /// (`host-interface: [eth0]`, `log-json: true`); flags on the command line
    /// override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Cluster mode: this node's name, the NodeRuleMap to enforce.
    #[arg(long, env = "NODE_NAME", conflicts_with_all = ["rule_map", "external_node"])]
    node_name: Option<String>,
    /// External-node mode: this host's ExternalNode, whose NodeRuleMap it
    /// enforces on every interface (or those in spec.interfaces), renewing a
    /// Lease and reporting in the ExternalNode's status.
    #[arg(long, value_name = "NAME", conflicts_with = "rule_map")]
    external_node: Option<String>,
    /// Namespace of the external node's heartbeat Lease.
    #[arg(long, default_value = bulkhead_api::external_node::EXTERNAL_NODE_NAMESPACE)]
    lease_namespace: String,
    /// The heartbeat Lease's duration; it is renewed four times as often.
    #[arg(long, default_value_t = 40)]
    lease_duration_secs: u64,
    /// The API server's URL (instead of KUBECONFIG), as `kubectl bulkhead
    /// externalnode add` writes it in the host's config file.
    #[arg(long, value_name = "URL", requires = "api_server_ca_data")]
    api_server: Option<String>,
    /// The CA certificates (base64 of the PEM, as in a kubeconfig) that the
    /// API server's certificate must chain to.
    #[arg(long, value_name = "BASE64", requires = "api_server")]
    api_server_ca_data: Option<String>,
    /// The bearer token shown to the API server (with --api-server).
    #[arg(
        long,
        value_name = "TOKEN",
        requires = "api_server",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the bearer token, read again when it changes.
    #[arg(long, value_name = "FILE", requires = "api_server")]
    token_file: Option<PathBuf>,
    /// The NodeRuleMap of this node (standalone mode).
    #[arg(long, value_name = "FILE")]
    rule_map: Option<PathBuf>,
    /// An IdentityMap shard; repeat for every shard.
    #[arg(long, value_name = "FILE")]
    identities: Vec<PathBuf>,
    /// A host interface to protect (repeatable), e.g. eth0.
    #[arg(long = "host-interface", value_name = "NAME")]
    host_interfaces: Vec<String>,
    /// Name prefix of the host side of pod veths (repeatable).
    #[arg(long = "endpoint-prefix", value_name = "PREFIX", default_values = ["veth", "lxc", "cali"])]
    endpoint_prefixes: Vec<String>,
    /// Where bpffs is mounted (mounted there when it is not).
    #[arg(long, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    /// Directory under bpffs for the pinned maps and links.
    #[arg(long, default_value = "bulkhead")]
    pin_name: String,
    /// Append flow records, one JSON object per line (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    flow_log: Option<PathBuf>,
    /// How often flow records are written.
    #[arg(long, default_value_t = 1000)]
    flow_interval_ms: u64,
    /// How often files and interfaces are checked for changes.
    #[arg(long, default_value_t = 500)]
    poll_interval_ms: u64,
    /// Write a JSON status document here after every programming.
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
    /// Ship flow/v1 batches to this collector (`https://host:port`, or
    /// `http://` where the network is trusted).
    #[arg(long, env = "BULKHEAD_COLLECTOR", value_name = "URL")]
    collector: Option<String>,
    /// Bearer token for the collector, read before every request (default:
    /// the pod's ServiceAccount token, when it exists).
    #[arg(long, value_name = "FILE")]
    collector_token_file: Option<PathBuf>,
    /// CA certificates (PEM) that the collector's certificate must chain to;
    /// needed for an https:// collector.
    #[arg(long, value_name = "FILE")]
    collector_ca_file: Option<PathBuf>,
    /// Batches wait here until the collector has them.
    #[arg(long, default_value = "/var/lib/bulkhead/spool")]
    spool_dir: PathBuf,
    /// Bound of the spool; the oldest batches are dropped (and counted) beyond it.
    #[arg(long, default_value_t = 512)]
    spool_max_mib: u64,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, env = "BULKHEAD_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// How often the rule hit counters are read and, when they changed,
    /// written to the NodeRuleMap's status (cluster mode).
    #[arg(long, default_value_t = 60_000)]
    hits_interval_ms: u64,
    /// How often an established flow reports its packets and bytes.
    #[arg(long, default_value_t = 5000)]
    flow_report_interval_ms: u64,
    /// Idle time after which a conntrack entry is forgotten.
    #[arg(long, default_value_t = 600)]
    ct_timeout_secs: u64,
    /// Idle time after which a TCP entry that saw FIN or RST is forgotten.
    #[arg(long, default_value_t = 10)]
    ct_closing_timeout_secs: u64,
    /// Drop packets from pods (and into host interfaces) whose source
    /// address is not the sender's: `--anti-spoofing=false` turns it off.
    #[arg(long, env = "BULKHEAD_ANTI_SPOOFING", default_value_t = true, action = clap::ArgAction::Set)]
    anti_spoofing: bool,
    /// Drop packets of a pod interface this agent (or the bulkhead-cni
    /// plugin) attached to when no endpoint of the rule map owns them, so a
    /// pod not in the rule map yet is closed, not open:
    /// `--guard-interfaces=false` passes them, as before (docs/security.md).
    #[arg(long, env = "BULKHEAD_GUARD_INTERFACES", default_value_t = true, action = clap::ArgAction::Set)]
    guard_interfaces: bool,
    /// The cluster's Service ranges (kube-apiserver's
    /// --service-cluster-ip-range; repeat or comma-separate, one per family):
    /// a pod's egress to them is judged on the backend after kube-proxy's
    /// DNAT. Empty: every Service address is judged as `world`.
    #[arg(
        long = "service-cidr",
        env = "BULKHEAD_SERVICE_CIDRS",
        value_delimiter = ','
    )]
    service_cidrs: Vec<ipnet::IpNet>,
    /// Ceiling of the policy map (entries after flattening). The map is an
    /// LPM trie that allocates per entry, so a high ceiling costs nothing
    /// until it is used; a rule map that would not fit is refused whole.
    #[arg(long, default_value_t = 262_144)]
    policy_max_entries: u32,
    /// Capacity of the conntrack table of full-mode endpoints' flows (when
    /// full, their new flows are refused; established ones never evicted).
    #[arg(long, default_value_t = 131_072)]
    conntrack_max_entries: u32,
    /// Detach every program on exit (by default they stay, and keep enforcing).
    #[arg(long)]
    detach_on_exit: bool,
    /// Detach every program this agent's pins hold, and exit.
    #[arg(long)]
    detach: bool,
    /// Logs as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn main() -> anyhow::Result<()> {
    let args: Args = config_file::parse(std::env::args_os())?;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let load = LoadOptions {
        bpffs: args.bpffs.clone(),
        pin_name: args.pin_name.clone(),
        ct_timeout: Duration::from_secs(args.ct_timeout_secs),
        ct_closing_timeout: Duration::from_secs(args.ct_closing_timeout_secs),
        anti_spoofing: args.anti_spoofing,
        guard_interfaces: args.guard_interfaces,
        emit_new_flows: true,
        report_interval: Duration::from_millis(args.flow_report_interval_ms),
        policy_max_entries: args.policy_max_entries,
        conntrack_max_entries: args.conntrack_max_entries,
        service_cidrs: args.service_cidrs.clone(),
        layout_version: bulkhead_agent::layout::LAYOUT_VERSION,
    };
    if args.detach {
        let mut datapath = bulkhead_agent::Datapath::open(&load).context("opening the datapath")?;
        datapath.detach_all().context("detaching")?;
        return Ok(());
    }
    const SA_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    let outputs = OutputConfig {
        flow_log: args.flow_log.clone(),
        flow_interval: Duration::from_millis(args.flow_interval_ms),
        export: args.collector.clone().map(|url| ExportConfig {
            url,
            token_file: args.collector_token_file.clone().or_else(|| {
                std::path::Path::new(SA_TOKEN)
                    .exists()
                    .then(|| PathBuf::from(SA_TOKEN))
            }),
            spool_dir: args.spool_dir.clone(),
            spool_max_bytes: args.spool_max_mib * 1024 * 1024,
            timeout: Duration::from_secs(10),
            ca_file: args.collector_ca_file.clone(),
        }),
        metrics_addr: args.metrics_addr,
        ct_timeout: Duration::from_secs(args.ct_timeout_secs),
    };
    let interfaces = InterfaceConfig {
        endpoint_prefixes: args.endpoint_prefixes.clone(),
        host_interfaces: args.host_interfaces.clone(),
    };
    let external = args.external_node.clone().map(|_| cluster::ExternalConfig {
        lease_namespace: args.lease_namespace.clone(),
        lease_duration: Duration::from_secs(args.lease_duration_secs.max(1)),
    });
    if let Some(node) = args.node_name.clone().or(args.external_node.clone()) {
        let config = cluster::Config {
            node,
            interfaces,
            poll_interval: Duration::from_millis(args.poll_interval_ms),
            hits_interval: Duration::from_millis(args.hits_interval_ms.max(100)),
            outputs,
            detach_on_exit: args.detach_on_exit,
            external,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return runtime.block_on(async {
            let client = client(&args).await?;
            cluster::run(client, config, load)
                .await
                .context("cluster-mode agent")
        });
    }
    let rule_map = args.rule_map.context(
        "pass --node-name NODE (cluster mode) or --rule-map FILE and --identities FILE (standalone mode)",
    )?;
    let config = standalone::Config {
        rule_map,
        identities: args.identities,
        interfaces,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        outputs,
        status_file: args.status_file,
        detach_on_exit: args.detach_on_exit,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(standalone::run(config, load))
        .context("standalone agent")
}

/// The API server client: from --api-server and its credential when given
/// (an external host's config file), else KUBECONFIG or the in-cluster config.
async fn client(args: &Args) -> anyhow::Result<kube::Client> {
    let Some(server) = &args.api_server else {
        return kube::Client::try_default()
            .await
            .context("connecting to the API server (KUBECONFIG or in-cluster config)");
    };
    let mut user = serde_json::Map::new();
    if let Some(token) = &args.token {
        user.insert("token".into(), token.clone().into());
    }
    if let Some(file) = &args.token_file {
        user.insert("tokenFile".into(), file.display().to_string().into());
    }
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bulkhead", "cluster": {
            "server": server,
            "certificate-authority-data": args.api_server_ca_data,
        }}],
        "users": [{"name": "bulkhead-agent", "user": user}],
        "contexts": [{"name": "bulkhead", "context": {"cluster": "bulkhead", "user": "bulkhead-agent"}}],
        "current-context": "bulkhead",
    });
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)
        .context("--api-server, --api-server-ca-data, --token")?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("the API server {server} and its credential"))?;
    kube::Client::try_from(config).context("building the API server client")
}
