//! The command line, as clap parses it.

use std::path::PathBuf;

use bulkhead_api::policy::{EnforcementMode, Protocol};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ports::{parse_port_protocol, parse_protocol, PortProtocol};

/// Bulkhead's kubectl plugin: offline answers from the same compiler and
/// verdict function the operator and the agents use.
#[derive(Debug, Parser)]
#[command(name = "kubectl-bulkhead", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Can A reach B on this port? Or, with --matrix, who can reach whom.
    ///
    /// Exits 0 whatever the verdict (read it from the output, or from
    /// `-o json | jq -r .verdict`); non-zero only when the input or the
    /// arguments are wrong.
    Simulate(SimulateArgs),
    /// Compile rule maps and identity shards into files, as the operator would
    /// publish them (what an agent in standalone mode reads).
    Compile(CompileArgs),
    /// Endpoints with their segmentation labels and identities, the unlabeled
    /// queue and label conflicts.
    Labels(LabelsArgs),
    /// Flow history from the collector (through the API server's service
    /// proxy, or --collector URL), or offline from an export (--flows FILE).
    Flows(FlowsArgs),
    /// SegmentationPolicy YAML that allows what history shows and nothing
    /// wider, at the env, app or role layer (docs/recommend.md).
    Recommend(crate::recommend_cmd::RecommendArgs),
    /// Replay history under today's policy and under DRAFT files: what would
    /// be newly denied or allowed (docs/what-if.md). Exits 0 when nothing
    /// observed would be newly denied, 3 when something would, 1 on errors.
    #[command(name = "what-if")]
    WhatIf(crate::whatif_cmd::WhatIfArgs),
    /// The groups that send and receive the most, with their main peers and ports.
    TopTalkers(crate::reports::args::TopTalkersArgs),
    /// The labeling queue: unlabeled endpoints and unknown addresses, most
    /// traffic first; --suggest prints LabelMapping YAML.
    Unlabeled(crate::reports::args::UnlabeledArgs),
    /// Enforcement coverage, exposure and its reduction, top talkers,
    /// denials, unused rules, the unlabeled queue and a traffic map.
    Report(crate::reports::args::ReportArgs),
    /// Hosts outside the cluster: `externalnode add NAME --address A
    /// --label k=v` creates the ExternalNode and its credential and prints
    /// the host's agent.yaml.
    #[command(name = "externalnode")]
    ExternalNode(crate::externalnode::ExternalNodeArgs),
    /// Why a recent flow was denied: the deciding rule, its policy, owner
    /// and contact, and the command that asks for an exception.
    Why(crate::governance::WhyArgs),
    /// Rules to recertify: never hit, not hit within --unused-for (from
    /// the datapath's rule hits), expired, or past their review date.
    Recertify(crate::governance::RecertifyArgs),
    /// SegmentationExceptions: request (what-if first), approve, list.
    #[command(subcommand)]
    Exception(crate::governance::ExceptionCommand),
    /// Bring labels in from elsewhere: `import cmdb FILE --map column=label`
    /// writes LabelMappings for a CMDB's CIDRs and host names.
    Import {
        #[command(subcommand)]
        command: crate::cmdb::ImportCommand,
    },
}

/// `flows`' arguments.
#[derive(Debug, Args)]
pub struct FlowsArgs {
    #[command(subcommand)]
    pub export: Option<FlowsCommand>,
    #[command(flatten)]
    pub query: FlowQueryArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = FlowsFormat::Table, global = true)]
    pub output: FlowsFormat,
    /// Keep printing new records as the collector receives them.
    #[arg(long, conflicts_with = "flows")]
    pub follow: bool,
}

/// `flows export`.
#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// Write matching records as flow/v1 JSON lines (what `--flows` reads).
    Export {
        /// Write here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Which records, and from where.
#[derive(Debug, Args)]
pub struct FlowQueryArgs {
    /// From this time: RFC 3339, or a duration back from now (30d, 1h, 15m).
    #[arg(long, default_value = "1h", global = true)]
    pub since: String,
    /// Until this time (exclusive), in the same forms.
    #[arg(long, global = true)]
    pub until: Option<String>,
    /// The source: a label selector (app=web,env=prod), namespace/pod,
    /// node:NAME, an address or a CIDR.
    #[arg(long, global = true, value_name = "ENDPOINT")]
    pub from: Option<String>,
    /// The destination, in the same forms, or `service:namespace/name`: the
    /// flows sent to that Service, whichever backend answered (by the
    /// Service name records carry; unnamed records by its ClusterIP).
    #[arg(long, global = true, value_name = "ENDPOINT")]
    pub to: Option<String>,
    /// allow, deny or would-deny (allowed now, denied in full mode).
    #[arg(long, global = true)]
    pub verdict: Option<String>,
    #[arg(long, global = true)]
    pub port: Option<u16>,
    /// TCP, UDP, SCTP, ICMP or ICMPv6.
    #[arg(long, global = true)]
    pub protocol: Option<String>,
    /// Only what this node reported.
    #[arg(long, global = true)]
    pub node: Option<String>,
    /// At most this many records.
    #[arg(long, global = true)]
    pub limit: Option<usize>,
    /// Read an export (flow/v1 JSON lines) instead of asking a collector.
    #[arg(long, value_name = "FILE", global = true, conflicts_with = "collector")]
    pub flows: Option<PathBuf>,
    /// The collector's URL, instead of the API server's service proxy.
    #[arg(long, value_name = "URL", global = true, env = "BULKHEAD_COLLECTOR")]
    pub collector: Option<String>,
    /// The collector's Service, as namespace/name:port, for the service proxy.
    #[arg(
        long,
        default_value = "bulkhead-system/bulkhead-collector:9470",
        global = true
    )]
    pub service: String,
}

/// `flows -o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlowsFormat {
    Table,
    Json,
    Jsonl,
}

/// Where the manifests are, and cluster-wide settings.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Manifest files or directories (searched recursively for *.yaml,
    /// *.yml and *.json): Namespaces, Pods, Nodes, ExternalNodes,
    /// LabelMappings, SegmentationPolicies, NetworkPolicies. Other kinds are
    /// skipped with a warning.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Enforce the Kubernetes NetworkPolicies of the input too, as the
    /// operator does when its NetworkPolicy support is on. `simulate` turns
    /// this on by itself when the input has NetworkPolicies.
    #[arg(long)]
    pub network_policies: bool,
    /// The mode of endpoints that no policy gives one.
    #[arg(long, value_enum, default_value_t = ModeArg::Visibility, value_name = "MODE")]
    pub default_mode: ModeArg,
    /// A port every host endpoint keeps open, added to the built-in ones, as
    /// the operator's flag of the same name (PROTOCOL/PORT/DIRECTION, e.g.
    /// tcp/9470/egress); repeatable.
    #[arg(long = "failsafe-port", value_name = "PROTO/PORT/DIR")]
    pub failsafe_ports: Vec<bulkhead_api::rule_map::FailsafePort>,
}

/// `simulate`'s arguments.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// The client: `namespace/pod`, a Node or ExternalNode name, or an IP address.
    #[arg(
        long,
        value_name = "ENDPOINT",
        required_unless_present = "matrix",
        conflicts_with = "matrix"
    )]
    pub from: Option<String>,
    /// The server: `namespace/pod`, a Node or ExternalNode name, an IP address,
    /// or `service:namespace/name` (each backend its EndpointSlices list,
    /// judged as kube-proxy sends to it; `--port` is then the target port).
    #[arg(
        long,
        value_name = "ENDPOINT",
        required_unless_present = "matrix",
        conflicts_with = "matrix"
    )]
    pub to: Option<String>,
    /// Print the reachability matrix of every pod and ExternalNode instead.
    #[arg(long)]
    pub matrix: bool,
    /// Destination port (ICMP/ICMPv6: message type; default echo request).
    /// Repeat for the matrix.
    #[arg(long = "port", value_name = "N")]
    pub port: Vec<u16>,
    /// TCP, UDP, SCTP, ICMP or ICMPv6 [default: TCP]. Repeat for the matrix.
    #[arg(long = "protocol", value_name = "PROTO", value_parser = parse_protocol)]
    pub protocol: Vec<Protocol>,
    /// Port/protocol pairs, such as `80/TCP,53/UDP,ICMP`. Without any port
    /// the matrix uses the ports the policies name.
    #[arg(long = "ports", value_name = "LIST", value_delimiter = ',', value_parser = parse_port_protocol)]
    pub ports: Vec<PortProtocol>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// `compile`'s arguments.
#[derive(Debug, Args)]
pub struct CompileArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// The directory to write `noderulemap-<node>.yaml` and
    /// `identitymap-<i>.yaml` into (created if missing; stale files of those
    /// names are removed).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The format of the files written.
    #[arg(short, long, value_enum, default_value_t = FileFormat::Yaml)]
    pub output: FileFormat,
    /// How many IdentityMap shards to write [default: the compiler's].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: Option<u32>,
}

/// `labels`' arguments.
#[derive(Debug, Args)]
pub struct LabelsArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// One JSON document, for programs.
    Json,
}

/// How compiled objects are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FileFormat {
    /// `*.yaml`.
    Yaml,
    /// `*.json`.
    Json,
}

/// An enforcement mode on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Drop nothing; report would-be verdicts.
    Visibility,
    /// Enforce explicit denies only.
    Selective,
    /// Enforce everything; default deny.
    Full,
}

impl From<ModeArg> for EnforcementMode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Visibility => EnforcementMode::Visibility,
            ModeArg::Selective => EnforcementMode::Selective,
            ModeArg::Full => EnforcementMode::Full,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-bulkhead").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn simulate_one_flow() {
        let cli = parse(&[
            "simulate",
            "dir",
            "--from",
            "shop/web",
            "--to",
            "10.0.0.1",
            "--port",
            "80",
            "--protocol",
            "udp",
            "-o",
            "json",
        ])
        .expect("parses");
        let Command::Simulate(args) = cli.command else {
            panic!("not simulate")
        };
        assert_eq!(args.from.as_deref(), Some("shop/web"));
        assert_eq!(args.to.as_deref(), Some("10.0.0.1"));
        assert_eq!(args.port, vec![80]);
        assert_eq!(args.protocol, vec![Protocol::Udp]);
        assert_eq!(args.output, Format::Json);
        assert_eq!(args.input.default_mode, ModeArg::Visibility);
    }

    #[test]
    fn simulate_needs_ends_or_matrix() {
        assert!(parse(&["simulate", "dir", "--from", "a/b"]).is_err());
        assert!(parse(&["simulate", "dir", "--matrix", "--from", "a/b"]).is_err());
        assert!(
            parse(&["simulate", "--matrix"]).is_err(),
            "a path is required"
        );
        let cli = parse(&[
            "simulate",
            "a",
            "b",
            "--matrix",
            "--ports",
            "80/TCP,53/udp",
            "--port",
            "81",
        ])
        .expect("parses");
        let Command::Simulate(args) = cli.command else {
            panic!("not simulate")
        };
        assert_eq!(args.input.paths.len(), 2);
        assert_eq!(args.ports.len(), 2);
        assert_eq!(args.port, vec![81]);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(parse(&["simulate", "d", "--matrix", "--protocol", "GRE"]).is_err());
        assert!(parse(&["simulate", "d", "--matrix", "--port", "70000"]).is_err());
        assert!(parse(&["simulate", "d", "--matrix", "--ports", "80/XTP"]).is_err());
        assert!(parse(&["compile", "d"]).is_err(), "--out is required");
        assert!(parse(&["compile", "d", "--out", "o", "--shards", "0"]).is_err());
    }

    #[test]
    fn compile_and_labels() {
        let cli = parse(&[
            "compile",
            "d",
            "--out",
            "o",
            "-o",
            "json",
            "--default-mode",
            "full",
        ])
        .expect("parses");
        let Command::Compile(args) = cli.command else {
            panic!("not compile")
        };
        assert_eq!(args.output, FileFormat::Json);
        assert_eq!(
            EnforcementMode::from(args.input.default_mode),
            EnforcementMode::Full
        );
        assert!(matches!(
            parse(&["labels", "d"]).expect("parses").command,
            Command::Labels(_)
        ));
    }
}
