//! The arguments of `top-talkers`, `unlabeled` and `report`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::args::ModeArg;

/// Where the flow history comes from, and which window of it.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// From this time: RFC 3339, or a duration back from now (30d, 1h, 15m).
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time (exclusive), in the same forms [default: now].
    #[arg(long)]
    pub until: Option<String>,
    /// Read an export (flow/v1 JSON lines) instead of asking a collector.
    #[arg(long, value_name = "FILE", conflicts_with = "collector")]
    pub flows: Option<PathBuf>,
    /// The collector's URL, instead of the API server's service proxy.
    #[arg(long, value_name = "URL", env = "BULKHEAD_COLLECTOR")]
    pub collector: Option<String>,
    /// The collector's Service, as namespace/name:port, for the service proxy.
    #[arg(long, default_value = "bulkhead-system/bulkhead-collector:9470")]
    pub service: String,
    /// Read at most this many records (pages of 100,000): the bound on the
    /// memory history takes (about 1 KiB a record).
    #[arg(long, default_value_t = DEFAULT_MAX_RECORDS, value_name = "N")]
    pub max_records: usize,
}

/// `--max-records`: a 400-day history of 2,000 workloads at the day tier
/// is about 2 million records.
pub const DEFAULT_MAX_RECORDS: usize = 3_000_000;

/// The cluster's manifests, as `simulate` reads them.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Enforce the input's Kubernetes NetworkPolicies too.
    #[arg(long)]
    pub network_policies: bool,
    /// The mode of endpoints that no policy gives one.
    #[arg(long, value_enum, default_value_t = ModeArg::Visibility, value_name = "MODE")]
    pub default_mode: ModeArg,
    /// A port every host endpoint keeps open, as the operator's flag of the
    /// same name (PROTOCOL/PORT/DIRECTION); exposure counts it as reachable.
    #[arg(long = "failsafe-port", value_name = "PROTO/PORT/DIR")]
    pub failsafe_ports: Vec<bulkhead_api::rule_map::FailsafePort>,
}

/// `-o` of top-talkers and unlabeled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// `--direction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    /// What groups send.
    Egress,
    /// What groups receive.
    Ingress,
    Both,
}

/// `--sort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortArg {
    Flows,
    Bytes,
    Peers,
}

/// `top-talkers`' arguments.
#[derive(Debug, Args)]
pub struct TopTalkersArgs {
    #[command(flatten)]
    pub history: HistoryArgs,
    /// Group by these label keys, or by namespace, node or pod.
    #[arg(long, value_delimiter = ',', default_value = "app")]
    pub by: Vec<String>,
    #[arg(long, value_enum, default_value_t = SortArg::Flows)]
    pub sort: SortArg,
    /// How many groups.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    #[arg(long, value_enum, default_value_t = DirectionArg::Both)]
    pub direction: DirectionArg,
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

/// `unlabeled`'s arguments.
#[derive(Debug, Args)]
pub struct UnlabeledArgs {
    /// The cluster's manifests [default: today's cluster from the API
    /// server]: with them, the managed entries are exactly what LabelMapping
    /// status counts as unlabeled.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Queue from the flow history alone, without the cluster.
    #[arg(long, conflicts_with = "paths")]
    pub no_cluster: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
    /// Print LabelMapping YAML (cidrs for address clusters, hostnames where a
    /// name is known) to edit and apply, instead of the queue.
    #[arg(long)]
    pub suggest: bool,
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

/// `report -o` / `--format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A text summary.
    Table,
    /// `report/v1` JSON (docs/reports.md).
    Json,
    /// `section,name,metric,value` rows.
    Csv,
    /// One self-contained page.
    Html,
}

/// `report`'s arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The cluster's manifests: Namespaces, Pods, Nodes, ExternalNodes,
    /// LabelMappings, SegmentationPolicies (what exposure and coverage judge)
    /// [default: today's cluster from the API server, KUBECONFIG].
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[arg(short, long = "output", visible_alias = "format", value_enum, default_value_t = ReportFormat::Table)]
    pub output: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The label key that names applications.
    #[arg(long, default_value = "app")]
    pub app_key: String,
    /// The risky ports, as port/PROTOCOL [default: SSH, RDP, SMB, WinRM and database ports].
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub risky_ports: Vec<String>,
    /// The traffic map's node keys.
    #[arg(long, value_delimiter = ',', default_value = "app,env")]
    pub map_by: Vec<String>,
    /// The traffic map clusters its groups by this key.
    #[arg(long, default_value = "env")]
    pub cluster_by: String,
}
