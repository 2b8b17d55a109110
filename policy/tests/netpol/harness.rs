//! Runs a case file through the compiler, as upstream runs it through a
//! cluster.
//!
//! ```text
//!  case.yaml ── pods, servers ──► Model (x, y, z; addresses per family; 3 nodes)
//!     │
//!     └─ steps ─► actions ─► Changes ─┬─► full compile of the step's snapshot ──┐
//!                                     └─► Compiler::apply, change by change ────┤
//!                                                                               ▼
//!        probes: every (from, to) of distinct pods ─► simulate ─► compare, print grids
//! ```
//!
//! Each case runs for IPv4 and for IPv6 pods, and (unless it says otherwise)
//! with and without segmentation labels: none of that may change a cell.
//! Loopback cells are not checked, as upstream does not check them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use bulkhead_api::policy::Protocol;
use bulkhead_api::{Labels, SegmentationPolicy};
use bulkhead_policy::convert;
use bulkhead_policy::snapshot::{NamedPort, Namespace, Node, Pod, PodKey};
use bulkhead_policy::{
    compile, simulate, Change, CompileOptions, Compiler, FlowEnd, FlowQuery, IdentityAllocation,
    Output, Snapshot, Verdict,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;

use crate::case::{self, Action, Case, SegmentationLabels};

/// Namespaces of every case, each labeled `ns: <name>`.
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];

/// Copies the pod label `pod` and the namespace label `ns` into
/// segmentation labels of the same names.
const MAPPING: &str = r#"
priority: 10
rules:
- match: {pods: {}}
  copyLabels:
  - {key: pod, fromLabel: pod}
  - {key: ns, fromLabel: ns, source: namespace}
"#;

/// Address family of the model's pods.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    V4,
    V6,
}

/// How one run of a case is set up.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub family: Family,
    pub segmentation_labels: bool,
}

impl Variant {
    /// The variants a case runs in.
    pub fn all_for(case: &Case) -> Vec<Variant> {
        let labels: &[bool] = match case.segmentation_labels {
            SegmentationLabels::Both => &[false, true],
            SegmentationLabels::Yes => &[true],
            SegmentationLabels::No => &[false],
        };
        [Family::V4, Family::V6]
            .into_iter()
            .flat_map(|family| {
                labels.iter().map(move |l| Variant {
                    family,
                    segmentation_labels: *l,
                })
            })
            .collect()
    }
}

/// The address of `x/a` (namespace and pod by their position).
pub fn address(family: Family, pod: &str) -> IpAddr {
    let (ns, name) = pod.split_once('/').expect("namespace/pod");
    let n = NAMESPACES
        .iter()
        .position(|x| *x == ns)
        .unwrap_or_else(|| panic!("namespace {ns} is not x, y or z"))
        + 1;
    let p = u32::from(name.bytes().next().expect("pod name")) - u32::from(b'a') + 1;
    let text = match family {
        Family::V4 => format!("10.0.{n}.{p}"),
        Family::V6 => format!("fd00::{n}:{p}"),
    };
    text.parse().expect("model address")
}

fn node_of(case: &Case, pod: &str) -> String {
    let i = case
        .pods
        .iter()
        .position(|p| p == pod)
        .expect("pod of the case");
    format!("n{}", i % 3 + 1)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The cluster a case starts from.
fn model(case: &Case, variant: Variant) -> Snapshot {
    let mut snap = Snapshot::default();
    for (i, node) in ["n1", "n2", "n3"].iter().enumerate() {
        let address = match variant.family {
            Family::V4 => format!("192.168.0.{}", i + 1),
            Family::V6 => format!("fd00:ffff::{}", i + 1),
        };
        let node_value = Node {
            labels: Labels::new(),
            addresses: vec![address.parse().expect("node address")],
        };
        snap.nodes.insert(node.to_string(), node_value);
    }
    for ns in NAMESPACES {
        let labels = labels(&[("ns", ns)]);
        snap.namespaces.insert(ns.to_string(), Namespace { labels });
    }
    let mut named_ports = std::collections::BTreeSet::new();
    for protocol in &case.servers.protocols {
        for port in &case.servers.ports {
            let lower = protocol_name(*protocol).to_ascii_lowercase();
            named_ports.insert(NamedPort {
                name: format!("serve-{port}-{lower}"),
                protocol: *protocol,
                port: *port,
            });
        }
    }
    for pod in &case.pods {
        let (ns, name) = pod.split_once('/').expect("namespace/pod");
        let value = Pod {
            labels: labels(&[("pod", name)]),
            node: Some(node_of(case, pod)),
            addresses: vec![address(variant.family, pod)],
            host_network: false,
            named_ports: named_ports.clone(),
        };
        snap.pods.insert(PodKey::new(ns, name), value);
    }
    if variant.segmentation_labels {
        let mapping = serde_yaml::from_str(MAPPING).expect("mapping");
        snap.mappings.insert("pod-and-ns".into(), mapping);
    }
    snap
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        Protocol::Icmp => "ICMP",
        Protocol::Icmpv6 => "ICMPv6",
    }
}

/// The changes one action makes to `snap`.
fn changes(action: &Action, snap: &Snapshot, family: Family) -> Vec<Change> {
    match action {
        Action::Apply(manifest) => {
            let mut manifest = manifest.clone();
            case::substitute(&mut manifest, &|pod| address(family, pod));
            let kind = manifest.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            match kind {
                "NetworkPolicy" => {
                    let obj: NetworkPolicy =
                        serde_yaml::from_value(manifest).expect("NetworkPolicy manifest");
                    let (key, policy) = convert::network_policy(&obj)
                        .unwrap_or_else(|e| panic!("fixture policy does not convert: {e}"));
                    vec![Change::UpsertNetworkPolicy(key, policy)]
                }
                "SegmentationPolicy" => {
                    let obj: SegmentationPolicy =
                        serde_yaml::from_value(manifest).expect("SegmentationPolicy manifest");
                    let (name, spec) = convert::segmentation_policy(&obj).expect("converts");
                    vec![Change::UpsertPolicy(name, spec)]
                }
                other => panic!("cannot apply kind {other:?}"),
            }
        }
        Action::DeleteNetworkPolicy(key) => {
            let (ns, name) = key.split_once('/').expect("namespace/name");
            let key = bulkhead_policy::netpol::NetworkPolicyKey::new(ns, name);
            vec![Change::DeleteNetworkPolicy(key)]
        }
        Action::DeleteAllNetworkPolicies(all) => {
            assert!(*all, "deleteAllNetworkPolicies: true");
            let keys = snap.network_policies.keys().cloned();
            keys.map(Change::DeleteNetworkPolicy).collect()
        }
        Action::DeleteSegmentationPolicy(name) => vec![Change::DeletePolicy(name.clone())],
        Action::AddNamespaceLabels { namespace, labels } => {
            let mut ns = snap.namespaces.get(namespace).cloned().unwrap_or_default();
            ns.labels.extend(labels.clone());
            vec![Change::UpsertNamespace(namespace.clone(), ns)]
        }
        Action::AddPodLabels { pod, labels } => {
            let (ns, name) = pod.split_once('/').expect("namespace/pod");
            let key = PodKey::new(ns, name);
            let mut value = snap.pods.get(&key).cloned().expect("pod of the case");
            value.labels.extend(labels.clone());
            vec![Change::UpsertPod(key, value)]
        }
    }
}

/// Counts of what a run checked.
#[derive(Debug, Default)]
pub struct Checked {
    pub cells: usize,
    pub flows: usize,
}

/// Runs one case in one variant; returns what it checked, or a report of
/// every cell that differs.
pub fn run(name: &str, case: &Case, variant: Variant) -> Result<Checked, String> {
    let options = CompileOptions {
        network_policies: true,
        ..CompileOptions::default()
    };
    let mut snap = model(case, variant);
    let mut compiler = Compiler::new(options.clone(), IdentityAllocation::default());
    compiler.load(snap.clone());
    let mut report = String::new();
    let mut checked = Checked::default();
    for (i, step) in case.steps.iter().enumerate() {
        for action in &step.actions {
            for change in changes(action, &snap, variant.family) {
                // Incremental == whole, after every change: the compiler's
                // own invariant, checked on every fixture for free.
                let before = compiler.output().allocation.clone();
                snap.apply(change.clone());
                compiler.apply(change.clone());
                if compiler.output() != &compile(&snap, &options, &before) {
                    let _ = writeln!(
                        report,
                        "\n=== {name} [{variant:?}] step {i}: after {change:?} the \
                         incremental output differs from a whole compile ==="
                    );
                }
            }
        }
        let full = compile(&snap, &options, &IdentityAllocation::default());
        let title = step.title.as_deref().unwrap_or("");
        let outputs: [(&str, &Output); 2] = [("full", &full), ("incremental", compiler.output())];
        for (how, out) in outputs {
            let at = format!(
                "{name} ({}) [{variant:?}, {how}] step {i} {title:?}",
                case.source.describe()
            );
            for probe in &step.probes {
                let grid = Grid::observe(&case.pods, out, probe.protocol, probe.port);
                checked.cells += grid.cells.len();
                let wrong = grid.cells.iter().filter(|((f, t), seen)| {
                    **seen != probe.expected(&case.pods[*f], &case.pods[*t])
                });
                if wrong.count() > 0 {
                    let _ = writeln!(
                        report,
                        "\n=== {at}: {}/{} differs ===",
                        probe.port,
                        protocol_name(probe.protocol)
                    );
                    report.push_str(&grid.summary(&case.pods, |f, t| probe.expected(f, t)));
                }
            }
            for flow in &step.flows {
                let family = match variant.family {
                    Family::V4 => "v4",
                    Family::V6 => "v6",
                };
                if flow.family.as_deref().is_some_and(|f| f != family) {
                    continue;
                }
                checked.flows += 1;
                let end = |text: &str| flow_end(case, text, variant.family);
                let query = FlowQuery {
                    from: end(&flow.from),
                    to: end(&flow.to),
                    protocol: flow.protocol,
                    port: flow.port,
                };
                let got = simulate(out, &query).map(|v| v.verdict == Verdict::Allow);
                if got != Ok(flow.reachable) {
                    let _ = writeln!(
                        report,
                        "\n=== {at}: flow {} -> {} {}/{}: expected reachable={}, got {:#?}",
                        flow.from,
                        flow.to,
                        flow.port,
                        protocol_name(flow.protocol),
                        flow.reachable,
                        simulate(out, &query)
                    );
                }
            }
        }
    }
    if report.is_empty() {
        Ok(checked)
    } else {
        Err(report)
    }
}

fn flow_end(case: &Case, text: &str, family: Family) -> FlowEnd {
    if let Some(pod) = text.strip_prefix("node-of:") {
        return FlowEnd::Host(node_of(case, pod));
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return FlowEnd::Address(address);
    }
    if let Some(rest) = text.strip_prefix("address-of:") {
        return FlowEnd::Address(address(family, rest));
    }
    match text.split_once('/') {
        Some((ns, name)) => FlowEnd::Pod(PodKey::new(ns, name)),
        None => FlowEnd::Host(text.to_string()),
    }
}

/// Observed reachability of one probe: (from, to) indexes of distinct pods.
struct Grid {
    cells: BTreeMap<(usize, usize), bool>,
}

impl Grid {
    fn observe(pods: &[String], out: &Output, protocol: Protocol, port: u16) -> Self {
        let mut cells = BTreeMap::new();
        for (f, from) in pods.iter().enumerate() {
            for (t, to) in pods.iter().enumerate() {
                if f == t {
                    continue;
                }
                let pod = |s: &String| {
                    let (ns, name) = s.split_once('/').expect("namespace/pod");
                    FlowEnd::Pod(PodKey::new(ns, name))
                };
                let query = FlowQuery {
                    from: pod(from),
                    to: pod(to),
                    protocol,
                    port,
                };
                let verdict = simulate(out, &query)
                    .unwrap_or_else(|e| panic!("simulate {from} -> {to}: {e}"))
                    .verdict;
                cells.insert((f, t), verdict == Verdict::Allow);
            }
        }
        Self { cells }
    }

    /// Expected, observed and comparison grids, `.` reachable, `X` not,
    /// `-` loopback (unchecked); rows are clients, columns servers.
    fn summary(&self, pods: &[String], expected: impl Fn(&str, &str) -> bool) -> String {
        let width = pods.iter().map(String::len).max().unwrap_or(3) + 1;
        let mut s = String::new();
        for title in ["expected", "observed", "comparison"] {
            let _ = write!(s, "{title:<w$}   ", w = width * (pods.len() + 1));
        }
        s.push('\n');
        for _ in 0..3 {
            let _ = write!(s, "{:width$}", "");
            for to in pods {
                let _ = write!(s, "{to:<width$}");
            }
            s.push_str("   ");
        }
        s.push('\n');
        for (f, from) in pods.iter().enumerate() {
            for grid in 0..3 {
                let _ = write!(s, "{from:<width$}");
                for (t, to) in pods.iter().enumerate() {
                    let mark = match self.cells.get(&(f, t)) {
                        None => '-',
                        Some(seen) => {
                            let want = expected(from, to);
                            match grid {
                                0 => mark(want),
                                1 => mark(*seen),
                                _ if want == *seen => '.',
                                _ => 'X',
                            }
                        }
                    };
                    let _ = write!(s, "{mark:<width$}");
                }
                s.push_str("   ");
            }
            s.push('\n');
        }
        s
    }
}

fn mark(reachable: bool) -> char {
    if reachable {
        '.'
    } else {
        'X'
    }
}
