//! Kubernetes NetworkPolicy conformance with real packets (root needed): the
//! cases under `policy/tests/netpol/` (the upstream e2e suite's, and ours),
//! replayed in one lab through `kubectl`, the operator (`--network-policies`)
//! and the agents' eBPF datapath. The compiler half is
//! `policy/tests/netpol_conformance.rs`; both read the same files.
//!
//! ```text
//!  namespaces x, y, z (label ns=<name>); pods a, b, c in each (label pod=<name>)
//!  node-1: x/a y/a z/a    node-2: x/b y/b z/b    node-3: x/c y/c z/c
//!  every pod answers on ports 53, 80, 81 over TCP, UDP and SCTP, and names
//!  them serve-<port>-<protocol> in its Pod spec (what named ports resolve to)
//!  Service <ns>/svc-<pod> in front of each pod, on the same ports; the real
//!  kube-proxy (iptables mode) on every node, the real EndpointSlice controller
//! ```
//!
//! A case starts from a clean cluster (no policies, the base labels, every
//! pod reaching every other), then runs its steps: the actions with kubectl,
//! then every cell of every probe table among the case's pods, over IPv4,
//! until all cells match or `STEP_TIMEOUT` passes. The agents program
//! asynchronously, so before probing the runner waits for an operator to
//! have published every change the step made (its
//! `published_resource_version` gauges reach the changed objects' versions)
//! and for every agent to report its rule map's generation programmed; a table
//! is accepted only when all of its cells match at once. Failures are
//! collected, so one report names every case that failed and the cells.
//!
//! Every cell is probed twice in the same round, as the upstream suite
//! reaches pods: to the pod's address, and to the ClusterIP of the Service
//! in front of it (kube-proxy's DNAT picks the pod). Both must give the
//! cell's verdict: egress is judged on the backend, not on the Service
//! address (docs/policy-semantics.md, "Services").

mod support;

#[path = "../../policy/tests/netpol/case.rs"]
#[allow(dead_code)]
mod case;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use bulkhead_api::policy::Protocol;
use bulkhead_e2e::kubelet::{self, ContainerPort};
use bulkhead_e2e::lab::{Barrier, Probe, ServiceSpec};
use bulkhead_e2e::services::ProxyMode;
use bulkhead_e2e::topology::node_name;
use bulkhead_e2e::{Lab, LabSpec, Proto, Workload};
use case::{Action, Case, SegmentationLabels};
use support::*;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
/// Every port any case serves; every pod serves all of them.
const PORTS: [u16; 3] = [53, 80, 81];
const PROTOCOLS: [(Proto, &str); 3] = [
    (Proto::Tcp, "TCP"),
    (Proto::Udp, "UDP"),
    (Proto::Sctp, "SCTP"),
];

/// How long one table may take to match after its step's actions.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// How many upstream `It`s the replay must cover (see `netpol/README.md`).
const UPSTREAM_CASES: usize = 48;

/// The label a pod's Service selects it by: no case sets or clears it, and
/// the reset between cases keeps it.
const BACKEND_LABEL: &str = "netpol-backend";

/// Pod key (`ns/pod`) -> the ClusterIP of the Service in front of it.
type Vips = BTreeMap<String, IpAddr>;

/// The LabelMapping of cases with `segmentationLabels: yes` (the same
/// rules the compiler's harness uses).
const MAPPING: &str = r#"
apiVersion: bulkhead.dev/v1alpha1
kind: LabelMapping
metadata: {name: pod-and-ns}
spec:
  priority: 10
  rules:
  - match: {pods: {}}
    copyLabels:
    - {key: pod, fromLabel: pod}
    - {key: ns, fromLabel: ns, source: namespace}
"#;

fn cases_dir(suite: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../policy/tests/netpol")
        .join(suite)
}

fn start_lab() -> Lab {
    let mut spec = LabSpec::new(3);
    spec.operator_args = vec!["--network-policies".into()];
    spec.services = Some(ProxyMode::Iptables);
    spec.listen = PORTS.to_vec();
    spec.listen_sctp = true;
    for ns in NAMESPACES {
        spec.namespaces
            .push((ns.into(), kubelet::labels([("ns", ns)])));
    }
    let ports: Vec<ContainerPort> = PORTS
        .iter()
        .flat_map(|port| {
            PROTOCOLS
                .iter()
                .map(move |(proto, protocol)| ContainerPort {
                    name: format!("serve-{port}-{}", proto.name()),
                    port: *port,
                    protocol: (*protocol).to_owned(),
                })
        })
        .collect();
    for (i, (ns, pod)) in all_pods().into_iter().enumerate() {
        let node = node_name(u8::try_from(i % 3).unwrap_or(0) + 1);
        spec.workloads.push(
            Workload::new(ns, pod, &node, &[("pod", pod), (BACKEND_LABEL, pod)])
                .with_ports(ports.clone()),
        );
    }
    start(spec)
}

/// A Service per pod on every port and protocol the pods serve; their
/// ClusterIPs once every node's kube-proxy translates them.
fn services(lab: &Lab) -> Vips {
    all_pods()
        .into_iter()
        .map(|(ns, pod)| {
            let name = format!("svc-{pod}");
            let spec = ServiceSpec::on_ports(ns, &name, &[(BACKEND_LABEL, pod)], &PORTS);
            ok(lab.add_service(&spec), "creating a Service");
            let key = format!("{ns}/{pod}");
            let vip = ok(
                lab.wait_service(ns, &name, &[key.as_str()]),
                "waiting for a Service",
            );
            (key, IpAddr::V4(vip))
        })
        .collect()
}

fn all_pods() -> Vec<(&'static str, &'static str)> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |pod| (*ns, *pod)))
        .collect()
}

fn proto_of(protocol: Protocol) -> Proto {
    match protocol {
        Protocol::Tcp => Proto::Tcp,
        Protocol::Udp => Proto::Udp,
        Protocol::Sctp => Proto::Sctp,
        other => panic!("the fixtures probe TCP, UDP and SCTP only, not {other:?}"),
    }
}

/// Why the lab cannot replay a case, if it cannot.
fn unsupported(case: &Case) -> Option<String> {
    let flows: usize = case.steps.iter().map(|s| s.flows.len()).sum();
    if flows > 0 {
        return Some(format!(
            "{flows} single flows to nodes or outside addresses (the lab runs listeners in pods only)"
        ));
    }
    let unserved: Vec<u16> = case
        .servers
        .ports
        .iter()
        .copied()
        .filter(|p| !PORTS.contains(p))
        .collect();
    (!unserved.is_empty()).then(|| format!("ports {unserved:?} are not served"))
}

/// What replaying the cases checked.
#[derive(Default)]
struct Tally {
    passed: Vec<String>,
    failed: Vec<String>,
    not_replayed: Vec<String>,
    steps: usize,
    cells: usize,
    report: String,
}

fn replay(lab: &Lab, vips: &Vips, suite: &str, tally: &mut Tally) {
    for (path, case) in case::load_dir(&cases_dir(suite)) {
        let name = format!(
            "{suite}/{}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("?")
        );
        if let Some(why) = unsupported(&case) {
            tally.not_replayed.push(format!("{name}: {why}"));
            continue;
        }
        let started = Instant::now();
        match run_case(lab, vips, &case, tally) {
            Ok(()) => {
                eprintln!(
                    "netpol lab: {name} passed ({:.1}s)",
                    started.elapsed().as_secs_f64()
                );
                tally.passed.push(name);
            }
            Err(report) => {
                eprintln!("netpol lab: {name} FAILED\n{report}");
                let _ = writeln!(
                    tally.report,
                    "\n{name} ({}):\n{report}",
                    case.source.describe()
                );
                tally.failed.push(name);
            }
        }
    }
}

fn run_case(lab: &Lab, vips: &Vips, case: &Case, tally: &mut Tally) -> Result<(), String> {
    reset(
        lab,
        vips,
        case.segmentation_labels == SegmentationLabels::Yes,
    )?;
    for (i, step) in case.steps.iter().enumerate() {
        let title = step.title.clone().unwrap_or_default();
        let step_name = format!("step {} ({title})", i + 1);
        let before = lab.barrier().map_err(|e| format!("{step_name}: {e}"))?;
        for action in &step.actions {
            act(lab, action).map_err(|e| format!("{step_name}: {e}"))?;
        }
        settle(lab, &before).map_err(|e| format!("{step_name}: {e}"))?;
        for table in &step.probes {
            let proto = proto_of(table.protocol);
            let mut expected = Vec::new();
            for from in &case.pods {
                for to in case.pods.iter().filter(|to| *to != from) {
                    expected.push((
                        Probe::new(from, to, proto, table.port),
                        table.expected(from, to),
                    ));
                }
            }
            tally.cells += expected.len();
            expect_table(lab, vips, &expected).map_err(|wrong| {
                format!("{step_name}, {} {}:\n{wrong}", proto.name(), table.port)
            })?;
        }
        tally.steps += 1;
    }
    Ok(())
}

/// Probes until every cell matches at once, to the pod and through its
/// ClusterIP; the cells still wrong at the deadline otherwise.
fn expect_table(lab: &Lab, vips: &Vips, expected: &[(Probe, bool)]) -> Result<(), String> {
    let mut probes: Vec<(Probe, Option<IpAddr>)> = Vec::with_capacity(2 * expected.len());
    let mut wants = Vec::with_capacity(2 * expected.len());
    for (p, want) in expected {
        let vip = vips
            .get(&p.to)
            .ok_or_else(|| format!("no Service in front of {}", p.to))?;
        probes.push((p.clone(), None));
        wants.push(*want);
        probes.push((p.clone(), Some(*vip)));
        wants.push(*want);
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let results = lab
            .probe_all_via(&probes)
            .map_err(|e| format!("probing: {e}"))?;
        let wrong: Vec<String> = probes
            .iter()
            .zip(&wants)
            .zip(&results)
            .filter(|((_, want), got)| got.answered != **want)
            .map(|(((p, via), want), got)| {
                let to = match via {
                    Some(vip) => format!("{} (through ClusterIP {vip})", p.to),
                    None => p.to.clone(),
                };
                format!(
                    "  {} -> {to}: expected {}, saw {} ({})",
                    p.from,
                    if *want { "an answer" } else { "no answer" },
                    if got.answered { "an answer" } else { "none" },
                    got.detail
                )
            })
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {} probes wrong after {}s:\n{}",
                wrong.len(),
                probes.len(),
                STEP_TIMEOUT.as_secs(),
                wrong.join("\n")
            ));
        }
        sleep(Duration::from_millis(250));
    }
}

/// Waits out the control loop: an operator has published every change
/// since `before`, then every agent has programmed its rule map.
fn settle(lab: &Lab, before: &Barrier) -> Result<(), String> {
    lab.wait_published(before, SETTLE)
        .map_err(|e| format!("waiting for the operator: {e}"))?;
    lab.sync_agents(SETTLE)
        .map_err(|e| format!("waiting for the agents: {e}"))
}

/// No policies, no mapping (unless the case wants one), base labels; then
/// waits until every pod reaches every other again.
fn reset(lab: &Lab, vips: &Vips, segmentation_labels: bool) -> Result<(), String> {
    let kubectl = lab.kubectl();
    let before = lab
        .barrier()
        .map_err(|e| format!("resetting the cluster: {e}"))?;
    let run = |args: &[&str]| {
        kubectl
            .run(args)
            .map(drop)
            .map_err(|e| format!("resetting the cluster: {e}"))
    };
    run(&["delete", "networkpolicies", "--all", "--all-namespaces"])?;
    run(&["delete", "segmentationpolicies", "--all"])?;
    run(&["delete", "labelmappings", "--all"])?;
    for ns in NAMESPACES {
        kubelet::set_labels(
            &kubectl,
            &["namespace", ns],
            &kubelet::labels([("ns", ns)]),
            &["kubernetes.io/metadata.name"],
        )
        .map_err(|e| format!("resetting namespace {ns}: {e}"))?;
    }
    for (ns, pod) in all_pods() {
        kubelet::set_labels(
            &kubectl,
            &["pod", "-n", ns, pod],
            &kubelet::labels([("pod", pod)]),
            &[BACKEND_LABEL],
        )
        .map_err(|e| format!("resetting pod {ns}/{pod}: {e}"))?;
    }
    if segmentation_labels {
        kubectl
            .apply(MAPPING)
            .map_err(|e| format!("applying the LabelMapping: {e}"))?;
    }
    settle(lab, &before)?;
    let everyone: Vec<(Probe, bool)> = all_pods()
        .iter()
        .flat_map(|(fns, fpod)| {
            all_pods()
                .into_iter()
                .filter(move |(tns, tpod)| (tns, tpod) != (fns, fpod))
                .map(move |(tns, tpod)| {
                    (
                        Probe::tcp(&format!("{fns}/{fpod}"), &format!("{tns}/{tpod}"), 80),
                        true,
                    )
                })
        })
        .collect();
    expect_table(lab, vips, &everyone).map_err(|e| format!("after the reset, before step 1: {e}"))
}

fn act(lab: &Lab, action: &Action) -> Result<(), String> {
    let kubectl = lab.kubectl();
    let failed = |what: &str| {
        let what = what.to_owned();
        move |e: bulkhead_e2e::Error| format!("{what}: {e}")
    };
    match action {
        Action::Apply(manifest) => {
            let mut manifest = manifest.clone();
            case::substitute(&mut manifest, &|pod| address_of(lab, pod));
            // As JSON: kubectl reads YAML 1.1, where the namespace name `y`
            // written back unquoted would be a boolean.
            let text = serde_json::to_string(&manifest).map_err(|e| e.to_string())?;
            kubectl
                .apply(&text)
                .map(drop)
                .map_err(failed("kubectl apply"))
        }
        Action::DeleteNetworkPolicy(key) => {
            let (ns, name) = key.split_once('/').ok_or("not namespace/name")?;
            kubectl
                .run(&["delete", "networkpolicy", "-n", ns, name])
                .map(drop)
                .map_err(failed("deleting a NetworkPolicy"))
        }
        Action::DeleteAllNetworkPolicies(_) => kubectl
            .run(&["delete", "networkpolicies", "--all", "--all-namespaces"])
            .map(drop)
            .map_err(failed("deleting NetworkPolicies")),
        Action::DeleteSegmentationPolicy(name) => kubectl
            .run(&["delete", "segmentationpolicy", name])
            .map(drop)
            .map_err(failed("deleting a SegmentationPolicy")),
        Action::AddNamespaceLabels { namespace, labels } => {
            let changes: Vec<(&str, Option<&str>)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect();
            kubelet::relabel(&kubectl, &["namespace", namespace], &changes)
                .map_err(failed("labelling a namespace"))
        }
        Action::AddPodLabels { pod, labels } => {
            let (ns, name) = pod.split_once('/').ok_or("not namespace/name")?;
            let changes: Vec<(&str, Option<&str>)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect();
            kubelet::relabel(&kubectl, &["pod", "-n", ns, name], &changes)
                .map_err(failed("labelling a pod"))
        }
    }
}

fn address_of(lab: &Lab, key: &str) -> IpAddr {
    let (ns, name) = key
        .split_once('/')
        .expect("placeholders name namespace/pod");
    let pod = lab
        .pod(ns, name)
        .unwrap_or_else(|e| panic!("placeholder names {key}: {e}"));
    IpAddr::V4(pod.address)
}

#[test]
fn network_policy_cases_hold_with_real_packets() {
    let lab = start_lab();
    let vips = services(&lab);
    let started = Instant::now();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for suite in ["upstream", "bulkhead"] {
        let tally = tallies.entry(suite).or_default();
        replay(&lab, &vips, suite, tally);
    }
    let mut summary = String::new();
    for (suite, t) in &tallies {
        let _ = writeln!(
            summary,
            "{suite}: {} passed, {} failed, {} not replayed ({} steps, {} cells)",
            t.passed.len(),
            t.failed.len(),
            t.not_replayed.len(),
            t.steps,
            t.cells
        );
        for why in &t.not_replayed {
            let _ = writeln!(summary, "  not replayed: {why}");
        }
    }
    eprintln!(
        "netpol lab, {:.0}s:\n{summary}",
        started.elapsed().as_secs_f64()
    );
    let failures: String = tallies.values().map(|t| t.report.as_str()).collect();
    assert!(failures.is_empty(), "{summary}{failures}");
    let upstream = &tallies["upstream"];
    assert_eq!(
        upstream.passed.len(),
        UPSTREAM_CASES,
        "every upstream case must be replayed:\n{summary}"
    );
}
