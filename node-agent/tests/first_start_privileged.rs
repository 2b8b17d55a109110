//! Issue 14, item 3: on first start a node is never open. A pod's veth is
//! guarded from the moment it exists: the chained CNI plugin
//! (`bulkhead-cni`) attaches the agent's pinned programs at ADD and marks
//! the interface guarded, so the pod's packets are dropped (counted as
//! `unbound`) until its endpoint is in the rule map; with no agent yet,
//! ADD fails and the runtime never starts the pod.
//!
//! ```text
//!  bhf-a (10.96.50.10) ─ bhfv-a ┐ bhf-node: agent (standalone), UDP echo on
//!  bhf-b (10.96.51.10) ─ bhfv-b ┘ 10.96.50.1 / 10.96.51.1 (the host, full mode)
//! ```
//!
//! Real packets (scripts/traffic.py), the real agent and plugin binaries;
//! counters read from the pinned `bh_counters`. Root needed; fails, never
//! skips, without it.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aya::maps::{Map, MapData, PerCpuArray};
use bulkhead_agent::layout::{COUNTER_NAMES, LAYOUT_VERSION};
use bulkhead_agent::maps::guarded::Guarded;
use support::require_root;

const NODE: &str = "bhf-node";
const BPFFS: &str = "/run/bulkhead-first-start-bpffs";
const HOST_PORT: u16 = 5001;
const DENIED_PORT: u16 = 5003;

struct Pod {
    ns: &'static str,
    veth: &'static str,
    host: &'static str,
    addr: &'static str,
}
const A: Pod = Pod {
    ns: "bhf-a",
    veth: "bhfv-a",
    host: "10.96.50.1",
    addr: "10.96.50.10",
};
const B: Pod = Pod {
    ns: "bhf-b",
    veth: "bhfv-b",
    host: "10.96.51.1",
    addr: "10.96.51.10",
};

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, rest: &str) -> String {
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend(rest.split_whitespace());
    sh(&args)
}

fn pin_name() -> String {
    format!("bulkhead-first-start-{}", std::process::id())
}

fn pin_dir() -> PathBuf {
    Path::new(BPFFS)
        .join(pin_name())
        .join(format!("v{LAYOUT_VERSION}"))
}

fn traffic_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/traffic.py")
}

struct Lab {
    dir: PathBuf,
    agent: Option<Child>,
    server: Option<Child>,
}

fn teardown() {
    for ns in [NODE, A.ns, B.ns] {
        Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status()
            .ok();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in [self.agent.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            let mut child = child;
            Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status()
                .ok();
            child.kill().ok();
            child.wait().ok();
        }
        teardown();
        std::fs::remove_dir_all(Path::new(BPFFS).join(pin_name())).ok();
        Command::new("umount")
            .arg(BPFFS)
            .stderr(Stdio::null())
            .status()
            .ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// A pod namespace and its veth into the node, as a main CNI plugin makes them.
fn add_pod(pod: &Pod) {
    sh(&["ip", "netns", "add", pod.ns]);
    in_ns(
        NODE,
        &format!(
            "ip link add {} type veth peer name eth0 netns {}",
            pod.veth, pod.ns
        ),
    );
    in_ns(
        NODE,
        &format!("ip addr add {}/32 dev {}", pod.host, pod.veth),
    );
    in_ns(NODE, &format!("ip link set {} up", pod.veth));
    in_ns(
        NODE,
        &format!("ip route add {}/32 dev {}", pod.addr, pod.veth),
    );
    in_ns(pod.ns, "ip link set lo up");
    in_ns(pod.ns, &format!("ip addr add {}/32 dev eth0", pod.addr));
    in_ns(pod.ns, "ip link set eth0 up");
    in_ns(
        pod.ns,
        &format!("ip route add {}/32 dev eth0 scope link", pod.host),
    );
}

fn ifindex(pod: &Pod) -> u32 {
    in_ns(NODE, &format!("cat /sys/class/net/{}/ifindex", pod.veth))
        .trim()
        .parse()
        .expect("ifindex")
}

/// The rule map: the host in full mode, taking UDP/HOST_PORT from pod a's
/// identity; with `with_a`, pod a (full mode) allowed to send it.
fn write_inputs(dir: &Path, with_a: bool) {
    let endpoints = if with_a {
        format!(
            "  endpoints:\n    - {{name: default/a, identity: 1000, mode: full, addresses: [{}]}}\n",
            A.addr
        )
    } else {
        "  endpoints: []\n".to_string()
    };
    let yaml = format!(
        "apiVersion: bulkhead.dev/v1alpha1
kind: NodeRuleMap
metadata: {{name: bhf}}
spec:
  nodeKind: Node
  host: {{name: bhf, identity: 500, mode: full, addresses: [{}, {}]}}
{endpoints}  rules:
    - {{id: 1, policy: a-out, rule: udp, direction: egress, action: allow, subjects: [1000], peers: [1], ports: [{{protocol: UDP, first: {HOST_PORT}, last: {HOST_PORT}}}]}}
    - {{id: 2, policy: host-in, rule: udp, direction: ingress, action: allow, subjects: [500], peers: [1000], ports: [{{protocol: UDP, first: {HOST_PORT}, last: {HOST_PORT}}}]}}
",
        A.host, B.host
    );
    let tmp = dir.join("rule-map.tmp");
    std::fs::write(&tmp, yaml).expect("rule map");
    std::fs::rename(&tmp, dir.join("rule-map.yaml")).expect("rule map");
    std::fs::write(
        dir.join("identities.yaml"),
        format!(
            "shard: 0\nshards: 1\nidentities:\n  - {{id: 500, labels: {{role: node}}}}\n  - {{id: 1000, labels: {{app: a}}}}\nprefixes:\n  - {{cidr: {}/32, identity: 1000}}\n",
            A.addr
        ),
    )
    .expect("identities");
}

fn spawn_agent(dir: &Path) -> Child {
    Command::new("ip")
        .args(["netns", "exec", NODE, env!("CARGO_BIN_EXE_bulkhead-agent")])
        .arg("--rule-map")
        .arg(dir.join("rule-map.yaml"))
        .arg("--identities")
        .arg(dir.join("identities.yaml"))
        .args(["--bpffs", BPFFS, "--pin-name", &pin_name()])
        .args(["--endpoint-prefix", "bhfv", "--poll-interval-ms", "100"])
        .arg("--status-file")
        .arg(dir.join("status.json"))
        .arg("--spool-dir")
        .arg(dir.join("spool"))
        .arg("--detach-on-exit")
        .spawn()
        .expect("agent")
}

fn status(dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("status.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// Runs the plugin in the node's namespace, as the runtime would: the exit
/// status and what it printed.
fn cni(command: &str, pod: &Pod) -> (bool, serde_json::Value) {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "bhf",
        "type": "bulkhead-cni",
        "bpffs": BPFFS,
        "pinName": pin_name(),
        "endpointPrefixes": ["bhfv"],
        "prevResult": {
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": pod.veth},
                {"name": "eth0", "sandbox": format!("/run/netns/{}", pod.ns)},
            ],
            "ips": [{"address": format!("{}/32", pod.addr), "interface": 1}],
        },
    });
    let mut child = Command::new("ip")
        .args(["netns", "exec", NODE, env!("CARGO_BIN_EXE_bulkhead-cni")])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", format!("c-{}", pod.ns))
        .env("CNI_NETNS", format!("/run/netns/{}", pod.ns))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bulkhead-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("stdin");
    let out = child.wait_with_output().expect("bulkhead-cni");
    let text = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(text.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.success(), doc)
}

/// The TCX programs on a veth of the node: (hook, program name), asked of
/// the kernel from a thread in the node's network namespace (bpftool 7.1
/// does not list TCX).
fn tcx_programs(pod: &Pod) -> Vec<(String, String)> {
    use aya::programs::{SchedClassifier, TcAttachType};
    let veth = pod.veth;
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/run/netns/{NODE}")).expect("node netns");
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        let mut out = Vec::new();
        for (hook, attach) in [
            ("tcx/ingress", TcAttachType::Ingress),
            ("tcx/egress", TcAttachType::Egress),
        ] {
            let (_, progs) = SchedClassifier::query_tcx(veth, attach).expect("query TCX");
            for p in progs {
                let name = p.name_as_str().unwrap_or("?").to_string();
                out.push((hook.to_string(), name));
            }
        }
        out
    })
    .join()
    .expect("TCX query thread")
}

fn counter(name: &str) -> u64 {
    let index = COUNTER_NAMES
        .iter()
        .position(|n| *n == name)
        .expect("counter") as u32;
    let data = MapData::from_pin(pin_dir().join("bh_counters")).expect("bh_counters pin");
    let map: PerCpuArray<_, u64> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).expect("per-CPU array");
    map.get(&index, 0).expect("read").iter().sum()
}

fn guarded(index: u32) -> bool {
    Guarded::from_pin(&pin_dir())
        .expect("bh_guarded pin")
        .contains(index)
        .expect("read")
}

/// Whether a UDP datagram from `pod` to its host address on `port` was echoed.
fn udp(pod: &Pod, port: u16) -> bool {
    Command::new("ip")
        .args(["netns", "exec", pod.ns, "python3"])
        .arg(traffic_py())
        .args([
            "probe",
            "udp",
            pod.host,
            &port.to_string(),
            "--timeout",
            "0.5",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("probe")
        .success()
}

fn link_pins(pod: &Pod) -> usize {
    std::fs::read_dir(pin_dir().join("links"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{}_", pod.veth))
                })
                .count()
        })
        .unwrap_or(0)
}

fn start() -> Lab {
    require_root();
    teardown();
    std::fs::create_dir_all(BPFFS).expect("bpffs dir");
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .expect("mounts")
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(BPFFS));
    if !mounted {
        sh(&["mount", "-t", "bpf", "bpf", BPFFS]);
    }
    let dir = std::env::temp_dir().join(format!("bhf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut lab = Lab {
        dir,
        agent: None,
        server: None,
    };
    sh(&["ip", "netns", "add", NODE]);
    in_ns(NODE, "ip link set lo up");
    let mut server = Command::new("ip")
        .args(["netns", "exec", NODE, "python3"])
        .arg(traffic_py())
        .args([
            "serve",
            "--udp",
            &format!("{HOST_PORT},{DENIED_PORT}"),
            "--tcp",
            "5002",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("server ready");
    assert_eq!(line.trim(), "ready");
    lab.server = Some(server);
    lab
}

#[test]
fn first_start_a_pod_veth_is_guarded_from_creation_privileged() {
    let mut lab = start();
    write_inputs(&lab.dir, false);

    // (a) No agent has run: the plugin refuses the pod, naming what is missing.
    add_pod(&B);
    let (ok, err) = cni("ADD", &B);
    assert!(
        !ok,
        "ADD must fail before the agent pinned its programs: {err}"
    );
    assert_eq!(err["code"], 11, "{err}");
    let missing = pin_dir().join("progs/bh_from_endpoint");
    assert!(
        err["msg"]
            .as_str()
            .is_some_and(|m| m.contains(&missing.display().to_string())),
        "the error names {}: {err}",
        missing.display()
    );
    assert!(
        tcx_programs(&B).is_empty(),
        "nothing attached by a failed ADD"
    );

    // The agent starts with a rule map that has no endpoint yet.
    lab.agent = Some(spawn_agent(&lab.dir));
    wait_for("the agent to program, attach and pin its programs", || {
        status(&lab.dir)["programmed"].as_u64() == Some(1)
            && pin_dir().join("progs/bh_to_endpoint").exists()
            && tcx_programs(&B).len() == 2
    });

    // (c) A veth the agent attached itself, whose pod is in no rule map: closed.
    wait_for("the agent to guard bhfv-b", || guarded(ifindex(&B)));
    let unbound = counter("unbound");
    assert!(!udp(&B, HOST_PORT), "pod b is in no rule map: dropped");
    assert!(counter("unbound") > unbound, "counted as unbound");

    // (b) A new pod while the agent cannot poll (stopped): the plugin's ADD
    // alone attaches and guards its veth.
    let agent = lab.agent.as_ref().expect("agent").id().to_string();
    sh(&["kill", "-STOP", &agent]);
    add_pod(&A);
    let (ok, result) = cni("ADD", &A);
    assert!(ok, "ADD with the agent's programs pinned: {result}");
    assert_eq!(
        result["ips"][0]["address"],
        format!("{}/32", A.addr),
        "prevResult passed through"
    );
    let mut progs = tcx_programs(&A);
    progs.sort();
    assert_eq!(
        progs,
        vec![
            ("tcx/egress".to_string(), "bh_to_endpoint".to_string()),
            // The kernel keeps 15 characters of a name.
            ("tcx/ingress".to_string(), "bh_from_endpoin".to_string()),
        ],
        "attached by ADD, before any poll of the agent"
    );
    assert!(guarded(ifindex(&A)), "guarded by ADD");
    assert_eq!(link_pins(&A), 2, "links pinned where the agent adopts them");
    let unbound = counter("unbound");
    assert!(
        !udp(&A, HOST_PORT),
        "pod a is not in the rule map yet: dropped"
    );
    assert!(counter("unbound") > unbound, "counted as unbound");
    assert!(cni("CHECK", &A).0, "CHECK agrees");

    // The agent wakes up, adopts the plugin's links: one program per hook.
    sh(&["kill", "-CONT", &agent]);
    wait_for("the agent to see bhfv-a", || {
        status(&lab.dir)["interfaces"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i == A.veth))
    });
    // Its next polls would attach a second program if it had not adopted.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        tcx_programs(&A).len(),
        2,
        "no duplicate attachment: {:?}",
        tcx_programs(&A)
    );
    assert_eq!(link_pins(&A), 2);

    // Pod a's endpoint reaches the rule map: its policy applies.
    write_inputs(&lab.dir, true);
    wait_for("the agent to program pod a", || {
        status(&lab.dir)["programmed"].as_u64() == Some(2)
    });
    let (unbound, denied) = (counter("unbound"), counter("denied"));
    assert!(udp(&A, HOST_PORT), "allowed by pod a's policy");
    assert!(
        !udp(&A, DENIED_PORT),
        "denied by pod a's policy (full mode)"
    );
    assert_eq!(counter("unbound"), unbound, "pod a is bound now");
    assert!(counter("denied") > denied, "a policy deny");
    assert!(!udp(&B, HOST_PORT), "pod b is still in no rule map");

    // DEL forgets the guard, and says so again when there is nothing to do.
    sh(&["kill", "-STOP", &agent]);
    let index = ifindex(&A);
    assert!(cni("DEL", &A).0, "DEL");
    assert!(!guarded(index), "DEL removed bh_guarded[{index}]");
    assert!(cni("DEL", &A).0, "DEL again: idempotent");
    sh(&["kill", "-CONT", &agent]);
    // The main plugin deletes the veth; the agent drops its pins.
    sh(&["ip", "netns", "del", A.ns]);
    wait_for("the agent to remove the gone veth's pins", || {
        link_pins(&A) == 0
    });
    assert!(!guarded(index));

    let version = Command::new(env!("CARGO_BIN_EXE_bulkhead-cni"))
        .env("CNI_COMMAND", "VERSION")
        .output()
        .expect("VERSION");
    let v: serde_json::Value = serde_json::from_slice(&version.stdout).expect("VERSION JSON");
    assert!(v["supportedVersions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "1.0.0")));
}
