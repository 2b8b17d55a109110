//! The reachability-matrix harness, after the upstream Kubernetes network
//! policy e2e tests (`test/e2e/network/netpol`): namespaces x, y, z with
//! pods a, b, c; ports 80 and 81; TCP, UDP and SCTP.
//!
//! ```text
//!   Case ── steps ──► Step { changes, expected Truth, extra flows }
//!     │                          │
//!     │  changes applied to      ├─► full compile of the step's snapshot ─┐
//!     │  a running snapshot      └─► Compiler::apply, change by change ───┤
//!     ▼                                                                  ▼
//!   Model (cluster, mapping)            every cell: simulate(from, to, proto, port)
//!                                                                        │
//!                    expected matrix (default + exceptions) ◄── compare ─┘
//! ```
//!
//! A case states only the exceptions to a default (everything allowed, or
//! everything denied); on a mismatch it prints the whole expected and
//! observed matrix, `.` allowed and `X` denied, with a third grid marking
//! the cells that differ, as upstream's `Reachability.PrintSummary` does.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bulkhead_api::policy::Protocol::{self, Sctp, Tcp, Udp};
use bulkhead_api::SegmentationPolicySpec;
use bulkhead_policy::snapshot::{Namespace, Pod, PodKey};
use bulkhead_policy::{
    compile, simulate, Change, CompileOptions, Compiler, FlowQuery, IdentityAllocation, Output,
    Snapshot, Verdict,
};

use crate::support::{end, labels, World};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
pub const PORTS: [u16; 2] = [80, 81];
pub const PROTOCOLS: [Protocol; 3] = [Tcp, Udp, Sctp];

/// Copies the pod label `pod` and the namespace label `ns` into
/// segmentation labels of the same names.
pub const MATRIX_MAPPING: &str = r#"
priority: 10
rules:
- match: {pods: {}}
  copyLabels:
  - {key: pod, fromLabel: pod}
  - {key: ns, fromLabel: ns, source: namespace}
"#;

/// Address families of the model's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Dual,
}

/// The cluster every case starts from.
#[derive(Clone, Debug)]
pub struct Model {
    world: World,
}

impl Model {
    /// x, y, z × a, b, c on three nodes, IPv4 `10.0.<ns>.<pod>`.
    pub fn standard() -> Self {
        Self::with_family(Family::V4)
    }

    /// The standard model with `fd00::<ns>:<pod>` addresses (only, or as well).
    pub fn with_family(family: Family) -> Self {
        let mut w = World::new()
            .node("n1", "192.168.0.1", &[])
            .node("n2", "192.168.0.2", &[])
            .node("n3", "192.168.0.3", &[])
            .mapping("pod-and-ns", MATRIX_MAPPING);
        let mut i = 0;
        for (n, ns) in NAMESPACES.iter().enumerate() {
            w = w.ns(ns, &[("ns", ns)]);
            for (p, pod) in PODS.iter().enumerate() {
                let v4 = format!("10.0.{}.{}", n + 1, p + 1);
                let v6 = format!("fd00::{}:{}", n + 1, p + 1);
                let addresses = match family {
                    Family::V4 => v4,
                    Family::V6 => v6,
                    Family::Dual => format!("{v4},{v6}"),
                };
                let node = format!("n{}", i % 3 + 1);
                w = w.pod(ns, pod, &node, &addresses, &[("pod", pod)]);
                i += 1;
            }
        }
        Self { world: w }
    }

    /// Adds a namespace.
    pub fn ns(mut self, name: &str, l: &[(&str, &str)]) -> Self {
        self.world = self.world.ns(name, l);
        self
    }

    /// Adds a pod; it becomes a row and a column of the matrix.
    pub fn pod(mut self, key: &str, node: &str, addresses: &str, l: &[(&str, &str)]) -> Self {
        let (ns, name) = split(key);
        self.world = self.world.pod(ns, name, node, addresses, l);
        self
    }
}

/// Which traffic an expectation is about: a union of (protocol, port)
/// patterns, `None` meaning any.
#[derive(Clone, Debug)]
pub struct Traffic(Vec<(Option<Protocol>, Option<u16>)>);

/// Every protocol and port.
pub fn any() -> Traffic {
    Traffic(vec![(None, None)])
}

/// One protocol on one port.
pub fn on(port: u16, protocol: Protocol) -> Traffic {
    Traffic(vec![(Some(protocol), Some(port))])
}

/// One port, any protocol.
pub fn port(port: u16) -> Traffic {
    Traffic(vec![(None, Some(port))])
}

/// One protocol, any port.
pub fn proto(protocol: Protocol) -> Traffic {
    Traffic(vec![(Some(protocol), None)])
}

impl Traffic {
    /// This traffic or that.
    pub fn or(mut self, other: Traffic) -> Traffic {
        self.0.extend(other.0);
        self
    }

    fn covers(&self, protocol: Protocol, port: u16) -> bool {
        self.0
            .iter()
            .any(|(p, n)| p.is_none_or(|p| p == protocol) && n.is_none_or(|n| n == port))
    }
}

/// `*`, `x/*`, `*/a`, `x/a`, or several of these separated by commas.
fn pattern_matches(pattern: &str, pod: &str) -> bool {
    let (ns, name) = split(pod);
    pattern.split(',').map(str::trim).any(|p| {
        if p == "*" {
            return true;
        }
        let (pns, pname) = split(p);
        (pns == "*" || pns == ns) && (pname == "*" || pname == name)
    })
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/')
        .unwrap_or_else(|| panic!("{key:?} is not namespace/pod"))
}

#[derive(Clone, Debug)]
enum Exception {
    Cells {
        from: String,
        to: String,
        traffic: Traffic,
        allowed: bool,
    },
    Table {
        traffic: Traffic,
        cells: BTreeMap<(String, String), bool>,
    },
}

/// The expected matrix: a default, then exceptions applied in order (a later
/// one overrides an earlier one on the cells both cover).
#[derive(Clone, Debug)]
pub struct Truth {
    default: bool,
    exceptions: Vec<Exception>,
}

impl Truth {
    /// Everything reaches everything, unless said otherwise.
    pub fn allow_all() -> Self {
        Self {
            default: true,
            exceptions: Vec::new(),
        }
    }

    /// Nothing reaches anything, unless said otherwise.
    pub fn deny_all() -> Self {
        Self {
            default: false,
            exceptions: Vec::new(),
        }
    }

    fn cells(mut self, from: &str, to: &str, traffic: Traffic, allowed: bool) -> Self {
        self.exceptions.push(Exception::Cells {
            from: from.into(),
            to: to.into(),
            traffic,
            allowed,
        });
        self
    }

    /// `from` reaches `to` with this traffic (patterns as in `x/*`).
    pub fn allow(self, from: &str, to: &str, traffic: Traffic) -> Self {
        self.cells(from, to, traffic, true)
    }

    /// `from` does not reach `to` with this traffic.
    pub fn deny(self, from: &str, to: &str, traffic: Traffic) -> Self {
        self.cells(from, to, traffic, false)
    }

    /// Nobody reaches `to` with this traffic.
    pub fn deny_to(self, to: &str, traffic: Traffic) -> Self {
        self.deny("*", to, traffic)
    }

    /// `from` reaches nobody with this traffic.
    pub fn deny_from(self, from: &str, traffic: Traffic) -> Self {
        self.deny(from, "*", traffic)
    }

    /// Everybody reaches `to` with this traffic.
    pub fn allow_to(self, to: &str, traffic: Traffic) -> Self {
        self.allow("*", to, traffic)
    }

    /// `from` reaches everybody with this traffic.
    pub fn allow_from(self, from: &str, traffic: Traffic) -> Self {
        self.allow(from, "*", traffic)
    }

    /// A literal table for this traffic, upstream `TruthTable` style: a header
    /// of destination pods, then one row per source pod of `.` (reaches)
    /// and `X` (does not). Rows and columns left out keep their values.
    pub fn table(mut self, traffic: Traffic, text: &str) -> Self {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let header: Vec<&str> = lines
            .next()
            .expect("table header")
            .split_whitespace()
            .collect();
        let mut cells = BTreeMap::new();
        for line in lines {
            let mut tokens = line.split_whitespace();
            let from = tokens.next().expect("row label");
            let row: Vec<&str> = tokens.collect();
            assert_eq!(
                row.len(),
                header.len(),
                "table row {from:?} has the wrong width"
            );
            for (to, cell) in header.iter().zip(row) {
                let allowed = match cell {
                    "." => true,
                    "X" => false,
                    other => panic!("table cell {other:?} for {from} -> {to}: use . or X"),
                };
                cells.insert((from.to_string(), to.to_string()), allowed);
            }
        }
        self.exceptions.push(Exception::Table { traffic, cells });
        self
    }

    fn expected(&self, from: &str, to: &str, protocol: Protocol, port: u16) -> bool {
        let mut allowed = self.default;
        for e in &self.exceptions {
            match e {
                Exception::Cells {
                    from: f,
                    to: t,
                    traffic,
                    allowed: a,
                } => {
                    if pattern_matches(f, from)
                        && pattern_matches(t, to)
                        && traffic.covers(protocol, port)
                    {
                        allowed = *a;
                    }
                }
                Exception::Table { traffic, cells } => {
                    if traffic.covers(protocol, port) {
                        if let Some(a) = cells.get(&(from.to_string(), to.to_string())) {
                            allowed = *a;
                        }
                    }
                }
            }
        }
        allowed
    }
}

/// One flow checked besides the matrix: to or from an address, a node...
#[derive(Clone, Debug)]
struct Flow {
    from: String,
    to: String,
    protocol: Protocol,
    port: u16,
    expected: Verdict,
}

#[derive(Clone, Debug)]
struct Step {
    title: String,
    changes: Vec<Change>,
    truth: Option<Truth>,
    flows: Vec<Flow>,
}

/// A named case: a model, then steps of changes, each with what it expects.
#[derive(Debug)]
pub struct Case {
    name: String,
    base: Snapshot,
    options: CompileOptions,
    current: Snapshot,
    steps: Vec<Step>,
}

impl Case {
    /// A case over the standard model.
    pub fn new(name: &str) -> Self {
        Self::on(name, Model::standard())
    }

    /// A case over another model.
    pub fn on(name: &str, model: Model) -> Self {
        let base = model.world.snap.clone();
        Self {
            name: name.into(),
            current: base.clone(),
            base,
            options: model.world.options,
            steps: vec![Step {
                title: "initial".into(),
                changes: Vec::new(),
                truth: None,
                flows: Vec::new(),
            }],
        }
    }

    fn step(&mut self) -> &mut Step {
        self.steps.last_mut().expect("a case always has a step")
    }

    fn change(mut self, change: Change) -> Self {
        self.current.apply(change.clone());
        self.step().changes.push(change);
        self
    }

    /// Starts the next step: what follows changes the cluster of the previous one.
    pub fn then(mut self, title: &str) -> Self {
        assert!(
            self.step().truth.is_some(),
            "step {:?} has no expectation",
            self.step().title
        );
        self.steps.push(Step {
            title: title.into(),
            changes: Vec::new(),
            truth: None,
            flows: Vec::new(),
        });
        self
    }

    /// Adds or replaces a policy.
    pub fn policy(self, name: &str, yaml: &str) -> Self {
        let spec: SegmentationPolicySpec =
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("policy {name}: {e}"));
        self.change(Change::UpsertPolicy(name.into(), spec))
    }

    /// Deletes a policy.
    pub fn delete_policy(self, name: &str) -> Self {
        self.change(Change::DeletePolicy(name.into()))
    }

    /// Replaces a pod's Kubernetes labels.
    pub fn relabel_pod(self, key: &str, l: &[(&str, &str)]) -> Self {
        let (ns, name) = split(key);
        let key = PodKey::new(ns, name);
        let pod = Pod {
            labels: labels(l),
            ..self.current.pods[&key].clone()
        };
        self.change(Change::UpsertPod(key, pod))
    }

    /// Replaces a namespace's Kubernetes labels.
    pub fn relabel_ns(self, name: &str, l: &[(&str, &str)]) -> Self {
        self.change(Change::UpsertNamespace(
            name.into(),
            Namespace { labels: labels(l) },
        ))
    }

    /// Deletes a pod (its row and column become `-`, not checked).
    pub fn delete_pod(self, key: &str) -> Self {
        let (ns, name) = split(key);
        self.change(Change::DeletePod(PodKey::new(ns, name)))
    }

    /// What this step expects of every cell.
    pub fn expect(mut self, truth: Truth) -> Self {
        self.step().truth = Some(truth);
        self
    }

    /// A flow checked besides the matrix; `from` and `to` as in
    /// `kubectl bulkhead simulate`: `ns/pod`, a node name, or an address.
    pub fn flow(
        mut self,
        from: &str,
        to: &str,
        protocol: Protocol,
        port: u16,
        expected: Verdict,
    ) -> Self {
        self.step().flows.push(Flow {
            from: from.into(),
            to: to.into(),
            protocol,
            port,
            expected,
        });
        self
    }

    /// Compiles every step, in full and incrementally, and checks every cell.
    pub fn run(self) {
        let mut snapshot = self.base.clone();
        let mut compiler = Compiler::new(self.options.clone(), IdentityAllocation::default());
        let mut report = String::new();
        let mut cells_checked = 0;
        for (i, step) in self.steps.iter().enumerate() {
            for change in &step.changes {
                snapshot.apply(change.clone());
            }
            if i == 0 {
                compiler.load(snapshot.clone());
            } else {
                for change in &step.changes {
                    compiler.apply(change.clone());
                }
            }
            let truth = step.truth.as_ref().unwrap_or_else(|| {
                panic!(
                    "case {:?}, step {:?}: no expectation",
                    self.name, step.title
                )
            });
            let full = compile(&snapshot, &self.options, &IdentityAllocation::default());
            let pods: Vec<String> = snapshot.pods.keys().map(ToString::to_string).collect();
            let expected = Matrix::expected(&pods, truth);
            let ways: [(&str, &Output); 2] =
                [("full compile", &full), ("incremental", compiler.output())];
            let mut seen: Vec<Matrix> = Vec::new();
            for (how, out) in ways {
                let observed = Matrix::observed(&pods, out);
                cells_checked += observed.cells.len();
                if observed != expected && !seen.contains(&observed) {
                    let _ = writeln!(
                        report,
                        "\n=== step {i} {:?}, {how}: matrix differs ===",
                        step.title
                    );
                    report.push_str(&expected.summary(&observed));
                    seen.push(observed);
                }
                for flow in &step.flows {
                    let q = FlowQuery {
                        from: end(&flow.from),
                        to: end(&flow.to),
                        protocol: flow.protocol,
                        port: flow.port,
                    };
                    match simulate(out, &q) {
                        Ok(v) if v.verdict == flow.expected => {}
                        got => {
                            let _ = writeln!(
                                report,
                                "\n=== step {i} {:?}, {how}: flow {} -> {} {:?}/{}: expected {:?}, got {got:#?}",
                                step.title, flow.from, flow.to, flow.protocol, flow.port, flow.expected
                            );
                        }
                    }
                }
            }
        }
        assert!(report.is_empty(), "case {:?} failed:{report}", self.name);
        assert!(cells_checked > 0);
    }
}

/// Reachability of every (from, to, protocol, port).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Matrix {
    pods: Vec<String>,
    cells: BTreeMap<(usize, usize, Protocol, u16), bool>,
}

impl Matrix {
    fn expected(pods: &[String], truth: &Truth) -> Self {
        Self::build(pods, |from, to, protocol, port| {
            truth.expected(from, to, protocol, port)
        })
    }

    fn observed(pods: &[String], out: &Output) -> Self {
        Self::build(pods, |from, to, protocol, port| {
            let q = FlowQuery {
                from: end(from),
                to: end(to),
                protocol,
                port,
            };
            simulate(out, &q)
                .unwrap_or_else(|e| panic!("simulate {from} -> {to}: {e}"))
                .verdict
                == Verdict::Allow
        })
    }

    fn build(pods: &[String], mut reach: impl FnMut(&str, &str, Protocol, u16) -> bool) -> Self {
        let mut cells = BTreeMap::new();
        for (f, from) in pods.iter().enumerate() {
            for (t, to) in pods.iter().enumerate() {
                for protocol in PROTOCOLS {
                    for port in PORTS {
                        cells.insert((f, t, protocol, port), reach(from, to, protocol, port));
                    }
                }
            }
        }
        Self {
            pods: pods.to_vec(),
            cells,
        }
    }

    /// Expected, observed and the cells that differ, per protocol and port.
    fn summary(&self, observed: &Matrix) -> String {
        let mut s = String::new();
        let width = self.pods.iter().map(String::len).max().unwrap_or(3) + 1;
        let grid_width = width * (self.pods.len() + 1);
        for protocol in PROTOCOLS {
            for port in PORTS {
                let mismatches = (0..self.pods.len())
                    .flat_map(|f| (0..self.pods.len()).map(move |t| (f, t)))
                    .filter(|(f, t)| {
                        self.cells[&(*f, *t, protocol, port)]
                            != observed.cells[&(*f, *t, protocol, port)]
                    })
                    .count();
                let _ = writeln!(
                    s,
                    "\n{protocol:?}/{port}: {mismatches} cell(s) differ (rows: from, columns: to)"
                );
                let titles = ["expected", "observed", "comparison"];
                for title in titles {
                    let _ = write!(s, "{title:<grid_width$}   ");
                }
                s.push('\n');
                for grid in 0..3 {
                    let _ = write!(s, "{:width$}", "");
                    for to in &self.pods {
                        let _ = write!(s, "{to:<width$}");
                    }
                    if grid < 2 {
                        s.push_str("   ");
                    }
                }
                s.push('\n');
                for (f, from) in self.pods.iter().enumerate() {
                    for grid in 0..3 {
                        let _ = write!(s, "{from:<width$}");
                        for t in 0..self.pods.len() {
                            let key = (f, t, protocol, port);
                            let (e, o) = (self.cells[&key], observed.cells[&key]);
                            let c = match grid {
                                0 => mark(e),
                                1 => mark(o),
                                _ if e == o => '.',
                                _ => 'X',
                            };
                            let _ = write!(s, "{c:<width$}");
                        }
                        if grid < 2 {
                            s.push_str("   ");
                        }
                    }
                    s.push('\n');
                }
            }
        }
        s
    }
}

fn mark(allowed: bool) -> char {
    if allowed {
        '.'
    } else {
        'X'
    }
}
