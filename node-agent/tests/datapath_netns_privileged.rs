//! Real packets between network namespaces through the attached programs
//! (root needed; fails, never skips, without eBPF or netns).
//!
//! ```text
//!  bht-a (10.98.0.10, fd98::10, full)        ┐
//!  bht-b (10.98.0.11, fd98::11, selective)   ├─ veths bhtv-{a,b,c} ─ bht-node (agent; host 10.99.0.1, fd99::1)
//!  bht-c (10.98.0.12, fd98::12, visibility)  ┘                           │ bhtup (host interface)
//!                                             bht-w: 10.99.0.254 world, 10.99.0.200 CIDR id 3000, 10.99.0.4 remote node
//! ```
//!
//! The agent runs in standalone mode on `tests/fixtures/*.yaml`. Expected
//! verdicts: every managed side of a connection must allow it, each side's
//! verdict given by the compiler's verdict function (`support::side_verdict`).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead_agent::spec;
use bulkhead_api::flow::{EndpointKind, FlowReason, FlowRecord, FlowVerdict};
use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::policy::Protocol;
use bulkhead_api::rule_map::{Direction, NodeRuleMapSpec};
use bulkhead_api::IdentityMapSpec;
use bulkhead_policy::verdict::Verdict;
use support::*;

const NODE: &str = "bht-node";
const WORLD: &str = "bht-w";
const PODS: [(&str, &str, &str); 3] = [
    ("bht-a", "10.98.0.10", "fd98::10"),
    ("bht-b", "10.98.0.11", "fd98::11"),
    ("bht-c", "10.98.0.12", "fd98::12"),
];

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip_cmd(ns: &str, rest: &str) {
    let mut args = vec!["ip", "-n", ns];
    args.extend(rest.split_whitespace());
    sh(&args);
}

fn mac(ns: &str, dev: &str) -> String {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "cat",
        &format!("/sys/class/net/{dev}/address"),
    ])
    .trim()
    .to_string()
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The one traffic program of every test (scripts/traffic.py).
fn traffic_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/traffic.py")
}

struct Lab {
    children: Vec<Child>,
    agent: Option<Child>,
    dir: PathBuf,
}

fn teardown_namespaces() {
    for ns in [NODE, WORLD, PODS[0].0, PODS[1].0, PODS[2].0] {
        Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status()
            .ok();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(agent) = &mut self.agent {
            // SIGTERM so the agent detaches (--detach-on-exit) and removes its pins.
            Command::new("kill")
                .arg(agent.id().to_string())
                .status()
                .ok();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(agent.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            agent.kill().ok();
            agent.wait().ok();
        }
        for c in &mut self.children {
            c.kill().ok();
            c.wait().ok();
        }
        teardown_namespaces();
        Command::new("umount")
            .arg(BPFFS)
            .stderr(Stdio::null())
            .status()
            .ok();
    }
}

fn build_topology() {
    teardown_namespaces();
    sh(&["ip", "netns", "add", NODE]);
    sh(&["ip", "netns", "add", WORLD]);
    ip_cmd(NODE, "link set lo up");
    for (k, v) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
    ] {
        sh(&[
            "ip",
            "netns",
            "exec",
            NODE,
            "sysctl",
            "-qw",
            &format!("{k}={v}"),
        ]);
    }
    ip_cmd(
        NODE,
        &format!("link add bhtup type veth peer name eth0 netns {WORLD}"),
    );
    ip_cmd(NODE, "addr add 10.99.0.1/24 dev bhtup");
    ip_cmd(NODE, "-6 addr add fd99::1/64 dev bhtup nodad");
    ip_cmd(NODE, "link set bhtup up");
    ip_cmd(WORLD, "link set lo up");
    for a in ["10.99.0.254/24", "10.99.0.200/24", "10.99.0.4/24"] {
        ip_cmd(WORLD, &format!("addr add {a} dev eth0"));
    }
    for a in ["fd99::fe/64", "fd99::c8/64", "fd99::4/64"] {
        ip_cmd(WORLD, &format!("-6 addr add {a} dev eth0 nodad"));
    }
    ip_cmd(WORLD, "link set eth0 up");
    ip_cmd(
        WORLD,
        "route add 10.98.0.0/24 via 10.99.0.1 src 10.99.0.254",
    );
    ip_cmd(WORLD, "-6 route add fd98::/64 via fd99::1 src fd99::fe");
    for (ns, v4, v6) in PODS {
        let veth = format!("bhtv-{}", &ns[4..]);
        sh(&["ip", "netns", "add", ns]);
        ip_cmd(
            NODE,
            &format!("link add {veth} type veth peer name eth0 netns {ns}"),
        );
        ip_cmd(NODE, &format!("link set {veth} up"));
        ip_cmd(ns, "link set lo up");
        ip_cmd(ns, "link set eth0 up");
        ip_cmd(ns, &format!("addr add {v4}/32 dev eth0"));
        ip_cmd(ns, &format!("-6 addr add {v6}/128 dev eth0 nodad"));
        let (node_mac, pod_mac) = (mac(NODE, &veth), mac(ns, "eth0"));
        ip_cmd(ns, "route add 169.254.1.1 dev eth0 scope link");
        ip_cmd(ns, "route add default via 169.254.1.1 dev eth0");
        ip_cmd(
            ns,
            &format!("neigh add 169.254.1.1 lladdr {node_mac} dev eth0 nud permanent"),
        );
        ip_cmd(ns, "-6 route add default via fe80::1 dev eth0");
        ip_cmd(
            ns,
            &format!("-6 neigh add fe80::1 lladdr {node_mac} dev eth0 nud permanent"),
        );
        ip_cmd(NODE, &format!("route add {v4}/32 dev {veth}"));
        ip_cmd(NODE, &format!("-6 route add {v6}/128 dev {veth}"));
        ip_cmd(
            NODE,
            &format!("neigh add {v4} lladdr {pod_mac} dev {veth} nud permanent"),
        );
        ip_cmd(
            NODE,
            &format!("-6 neigh add {v6} lladdr {pod_mac} dev {veth} nud permanent"),
        );
    }
}

fn spawn_in(ns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {args:?} in {ns}: {e}"))
}

fn status(dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(dir.join("status.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// The two tests share namespace names: one lab at a time.
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh temp dir holding copies of the rule map and identity shards.
fn input_dir(name: &str, rule_map: &Path, identities: &[PathBuf]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bht-{}-{name}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(rule_map, dir.join("rule-map.yaml")).expect("copy");
    for (i, p) in identities.iter().enumerate() {
        std::fs::copy(p, dir.join(format!("identities-{i}.yaml"))).expect("copy");
    }
    dir
}

fn identity_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("identities-"))
        })
        .collect();
    v.sort();
    v
}

/// bpffs for the agent, mounted in this (the root) mount namespace: `ip netns
/// exec` hides /sys/fs/bpf, and pins must outlive one agent process for the
/// restart check, as they do on a real node.
const BPFFS: &str = "/run/bulkhead-test-bpffs";

fn mount_bpffs() {
    std::fs::create_dir_all(BPFFS).expect("bpffs dir");
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    if !mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(BPFFS))
    {
        sh(&["mount", "-t", "bpf", "bpf", BPFFS]);
    }
}

fn spawn_agent(dir: &Path) -> Child {
    let mut agent = Command::new("ip");
    agent
        .args(["netns", "exec", NODE, env!("CARGO_BIN_EXE_bulkhead-agent")])
        .args([
            "--rule-map",
            dir.join("rule-map.yaml").to_str().expect("path"),
        ])
        .args(["--bpffs", BPFFS]);
    for p in identity_files(dir) {
        agent.args(["--identities", p.to_str().expect("path")]);
    }
    agent
        .args(["--host-interface", "bhtup", "--endpoint-prefix", "bhtv"])
        .args([
            "--pin-name",
            &format!("bulkhead-netns-{}", std::process::id()),
        ])
        .args([
            "--flow-log",
            dir.join("flows.jsonl").to_str().expect("path"),
        ])
        .args([
            "--status-file",
            dir.join("status.json").to_str().expect("path"),
        ])
        .args([
            "--poll-interval-ms",
            "100",
            "--flow-interval-ms",
            "200",
            "--detach-on-exit",
        ])
        .spawn()
        .expect("agent")
}

fn start(dir: &Path) -> (Lab, NodeRuleMapSpec, Vec<IdentityMapSpec>) {
    require_root();
    let dir = dir.to_path_buf();
    let rule_map = spec::read_rule_map(&dir.join("rule-map.yaml")).expect("fixture");
    let shards: Vec<IdentityMapSpec> = identity_files(&dir)
        .iter()
        .map(|p| spec::read_identity_map(p).expect("fixture"))
        .collect();

    build_topology();
    mount_bpffs();
    let mut lab = Lab {
        children: Vec::new(),
        agent: None,
        dir: dir.clone(),
    };
    for ns in [NODE, WORLD, PODS[0].0, PODS[1].0, PODS[2].0] {
        let mut child = spawn_in(
            ns,
            &[python(), traffic_py().to_str().expect("path"), "serve"],
        );
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("server ready");
        assert_eq!(line.trim(), "ready", "traffic server in {ns}");
        lab.children.push(child);
    }
    // BHT_NO_AGENT=1: the topology alone, to tell a lab problem from a datapath one.
    if std::env::var_os("BHT_NO_AGENT").is_some() {
        return (lab, rule_map, shards);
    }
    lab.agent = Some(spawn_agent(&dir));
    wait_for(
        "the agent to program and attach",
        Duration::from_secs(20),
        || {
            let s = status(&dir);
            s["programmed"].as_u64() == Some(1)
                && s["interfaces"].as_array().is_some_and(|a| a.len() == 4)
        },
    );
    (lab, rule_map, shards)
}

fn probe(
    ns: &str,
    proto: &str,
    src: Option<IpAddr>,
    dst: IpAddr,
    port: u16,
    extra: &[&str],
) -> bool {
    let dst = dst.to_string();
    let port = port.to_string();
    let mut args = vec![
        "netns",
        "exec",
        ns,
        python(),
        traffic_py().to_str().expect("path").to_string().leak(),
    ];
    args.extend(["probe", proto, dst.as_str(), port.as_str()]);
    let src_s = src.map(|s| s.to_string());
    if let Some(s) = &src_s {
        args.extend(["--src", s.as_str()]);
    }
    args.extend(extra);
    let t0 = Instant::now();
    let out = Command::new("ip").args(&args).output().expect("probe");
    if std::env::var_os("BHT_DEBUG").is_some() {
        // BHT_DEBUG=1 with --nocapture: every probe, its exit code and time.
        eprintln!(
            "probe {args:?} -> {:?} in {:?} {}",
            out.status.code(),
            t0.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Every managed side must allow it (the reply rides on conntrack).
fn expect(
    rule_map: &NodeRuleMapSpec,
    shards: &[IdentityMapSpec],
    src: IpAddr,
    dst: IpAddr,
    proto: Protocol,
    port: u16,
) -> bool {
    let egress = side_verdict(rule_map, shards, src, dst, Direction::Egress, proto, port);
    let ingress = side_verdict(rule_map, shards, dst, src, Direction::Ingress, proto, port);
    egress == Verdict::Allow && ingress == Verdict::Allow
}

fn flows(dir: &Path) -> Vec<FlowRecord> {
    std::fs::read_to_string(dir.join("flows.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

type Pair = (&'static str, &'static str);
type Case = (Pair, Pair, Protocol, u16);

const A: Pair = ("10.98.0.10", "fd98::10");
const B: Pair = ("10.98.0.11", "fd98::11");
const C: Pair = ("10.98.0.12", "fd98::12");
const HOST: Pair = ("10.99.0.1", "fd99::1");
const WORLD_IP: Pair = ("10.99.0.254", "fd99::fe");
const CIDR: Pair = ("10.99.0.200", "fd99::c8");
const REMOTE: Pair = ("10.99.0.4", "fd99::4");

/// (src, dst, protocol, port); each runs over IPv4 and IPv6.
fn cases() -> Vec<Case> {
    use Protocol::*;
    vec![
        (A, B, Tcp, 8000),
        (A, B, Tcp, 8080),
        (A, B, Udp, 6005),
        (A, B, Sctp, 3868),
        (A, B, Sctp, 3869),
        (B, A, Tcp, 7000),
        (WORLD_IP, B, Tcp, 7000),
        (B, WORLD_IP, Udp, 80),
        (A, CIDR, Udp, 5353),
        (A, WORLD_IP, Udp, 5353),
        (A, CIDR, Tcp, 9000),
        (A, REMOTE, Tcp, 22),
        (A, WORLD_IP, Tcp, 22),
        (WORLD_IP, A, Tcp, 80),
        (CIDR, A, Tcp, 80),
        (A, HOST, Tcp, 443),
        (B, HOST, Tcp, 443),
        (A, HOST, Icmp, 8),
        (WORLD_IP, HOST, Tcp, 22),
        (WORLD_IP, HOST, Tcp, 23),
        (HOST, WORLD_IP, Udp, 5000),
        (HOST, WORLD_IP, Udp, 5001),
        (HOST, WORLD_IP, Udp, 53),
        (HOST, B, Tcp, 7000),
        (WORLD_IP, C, Udp, 9999),
        (A, C, Udp, 9999),
        (WORLD_IP, B, Icmp, 8),
        (B, WORLD_IP, Icmp, 8),
        (A, B, Icmp, 8),
    ]
}

fn ns_of(addr: &str) -> &'static str {
    if let Some(p) = PODS.iter().find(|p| p.1 == addr || p.2 == addr) {
        return p.0;
    }
    if addr == HOST.0 || addr == HOST.1 {
        NODE
    } else {
        WORLD
    }
}

/// Sends every case for real; returns the mismatches with `expect`.
fn run_cases(expect: impl Fn(IpAddr, IpAddr, Protocol, u16) -> bool) -> Vec<String> {
    let mut failures = Vec::new();
    let (mut allowed, mut denied) = (0, 0);
    for (src, dst, proto, port) in cases() {
        for v6 in [false, true] {
            let (s, d) = if v6 { (src.1, dst.1) } else { (src.0, dst.0) };
            let (si, di): (IpAddr, IpAddr) = (s.parse().expect("ip"), d.parse().expect("ip"));
            let (proto, port) = match (proto, v6) {
                (Protocol::Icmp, true) => (Protocol::Icmpv6, 128),
                other => (other.0, port),
            };
            let want = expect(si, di, proto, port);
            let name = match proto {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
                Protocol::Icmp | Protocol::Icmpv6 => "icmp",
            };
            let got = probe(ns_of(s), name, Some(si), di, port, &[]);
            if got {
                allowed += 1
            } else {
                denied += 1
            }
            if got != want {
                failures.push(format!(
                    "{s} -> {d} {proto:?}/{port}: expected {}, got {}",
                    ok(want),
                    ok(got)
                ));
            }
        }
    }
    assert!(
        allowed >= 15 && denied >= 15,
        "both verdicts exercised: {allowed} allowed, {denied} denied"
    );
    failures
}

#[test]
fn real_packets_follow_the_rule_map() {
    let _one_lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let dir = input_dir(
        "rulemap",
        &fixtures().join("rule-map.yaml"),
        &[fixtures().join("identities.yaml")],
    );
    let (mut lab, rule_map, shards) = start(&dir);
    let failures = run_cases(|s, d, proto, port| expect(&rule_map, &shards, s, d, proto, port));
    assert!(
        failures.is_empty(),
        "verdicts differ from the verdict function:\n{}",
        failures.join("\n")
    );
    check_flow_records(&lab);
    check_forged_sources_are_dropped(&lab);
    check_policy_change_stops_established(&lab);
    check_bad_input_keeps_enforcing(&lab);
    check_restart_keeps_enforcing(&mut lab);
}

/// kubectl-bulkhead, built from this workspace (`make test-datapath` builds it).
fn kubectl_bulkhead() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBECTL_BULKHEAD") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/kubectl-bulkhead");
    assert!(
        bin.exists(),
        "{} missing: cargo build -p kubectl-bulkhead (or set KUBECTL_BULKHEAD)",
        bin.display()
    );
    bin
}

/// The endpoint name simulate knows an address by (pods and nodes), or the address.
fn simulate_name(addr: IpAddr) -> String {
    let a = addr.to_string();
    for (name, pair) in [
        ("default/a", A),
        ("default/b", B),
        ("default/c", C),
        ("bht-node", HOST),
        ("bht-remote", REMOTE),
    ] {
        if a == pair.0 || a == pair.1 {
            return name.to_string();
        }
    }
    a
}

#[test]
fn real_packets_match_kubectl_bulkhead_simulate() {
    let _one_lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = fixtures().join("cluster");
    let out = std::env::temp_dir().join(format!("bht-{}-compiled", std::process::id()));
    std::fs::remove_dir_all(&out).ok();
    let compiled = Command::new(kubectl_bulkhead())
        .arg("compile")
        .arg(&cluster)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("kubectl-bulkhead compile");
    assert!(
        compiled.status.success(),
        "compile: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
    let shards: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("identitymap-"))
        })
        .collect();
    let dir = input_dir("simulate", &out.join("noderulemap-bht-node.yaml"), &shards);
    let (_lab, _, _) = start(&dir);
    let simulate = |s: IpAddr, d: IpAddr, proto: Protocol, port: u16| -> bool {
        let proto_name = match proto {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
            Protocol::Icmp => "ICMP",
            Protocol::Icmpv6 => "ICMPv6",
        };
        let out = Command::new(kubectl_bulkhead())
            .arg("simulate")
            .arg(&cluster)
            .args(["--from", &simulate_name(s), "--to", &simulate_name(d)])
            .args([
                "--port",
                &port.to_string(),
                "--protocol",
                proto_name,
                "-o",
                "json",
            ])
            .output()
            .expect("kubectl-bulkhead simulate");
        assert!(
            out.status.success(),
            "simulate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("simulate json");
        match v["verdict"].as_str() {
            Some("allow") => true,
            Some("deny") => false,
            other => panic!("simulate verdict {other:?}"),
        }
    };
    let failures = run_cases(simulate);
    assert!(
        failures.is_empty(),
        "verdicts differ from kubectl-bulkhead simulate:\n{}",
        failures.join("\n")
    );
}

fn ok(b: bool) -> &'static str {
    if b {
        "allow"
    } else {
        "deny"
    }
}

/// GHSA-pfhr-pccp-hwmh with real packets: pod C (visibility mode) writes
/// packets on a raw socket claiming A's addresses (an allowed sender) and a
/// world address (no endpoint). Each is dropped and logged as spoofed from
/// C, with the forged address; C's own traffic still flows.
fn check_forged_sources_are_dropped(lab: &Lab) {
    std::fs::remove_file(lab.dir.join("flows.jsonl")).ok();
    let forged: [(&str, &str, &str, u16); 5] = [
        ("udp", A.0, B.0, 5000),
        ("tcp", A.0, B.0, 8000),
        ("udp", A.1, B.1, 5000),
        ("tcp", A.1, B.1, 8000),
        ("udp", "10.99.0.254", "10.99.0.200", 53),
    ];
    for (proto, src, dst, port) in forged {
        let script = traffic_py();
        let port = port.to_string();
        sh(&[
            "ip",
            "netns",
            "exec",
            PODS[2].0,
            python(),
            script.to_str().expect("path"),
            "forge",
            proto,
            src,
            dst,
            &port,
        ]);
    }
    let c_own: IpAddr = C.0.parse().expect("ip");
    let b: IpAddr = B.0.parse().expect("ip");
    assert!(
        probe(PODS[2].0, "tcp", Some(c_own), b, 7000, &[]),
        "C's own traffic"
    );
    let spoofed = |records: &[FlowRecord]| -> Vec<FlowRecord> {
        records
            .iter()
            .filter(|r| r.reason == FlowReason::Spoofed)
            .cloned()
            .collect()
    };
    wait_for("five spoofed flow records", Duration::from_secs(5), || {
        spoofed(&flows(&lab.dir)).len() >= 5
    });
    let records = spoofed(&flows(&lab.dir));
    for r in &records {
        assert_eq!(
            r.source.name.as_deref(),
            Some("default/c"),
            "from C's interface: {r:?}"
        );
        assert_eq!(r.verdict, FlowVerdict::Deny, "{r:?}");
        assert_eq!(
            r.mode,
            EnforcementMode::Visibility,
            "dropped in visibility mode: {r:?}"
        );
    }
    for (_, src, dst, port) in forged {
        assert!(
            records.iter().any(|r| r.source.address.to_string() == src
                && r.destination.address.to_string() == dst
                && r.port == port),
            "{src} -> {dst}:{port} logged as spoofed: {records:?}"
        );
    }
}

fn check_flow_records(lab: &Lab) {
    // Three datagrams of one UDP flow from the world to C (visibility, no
    // rule): one would-be-denied flow, all delivered. Two datagrams of one
    // flow from A to the world: one denied flow of two packets.
    let world: IpAddr = "10.99.0.254".parse().expect("ip");
    let c: IpAddr = "10.98.0.12".parse().expect("ip");
    let a: IpAddr = "10.98.0.10".parse().expect("ip");
    std::fs::remove_file(lab.dir.join("flows.jsonl")).ok();
    assert!(probe(
        WORLD,
        "udp",
        Some(world),
        c,
        9999,
        &["--count", "3", "--sport", "31000"]
    ));
    assert!(!probe(
        PODS[0].0,
        "udp",
        Some(a),
        world,
        7777,
        &["--count", "2", "--sport", "31001", "--timeout", "0.3"]
    ));
    let find = |records: &[FlowRecord], dst: IpAddr, port: u16| {
        records
            .iter()
            .filter(|r| r.destination.address == dst && r.port == port)
            .fold((0, 0), |(f, p), r| (f + r.flows, p + r.packets))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = flows(&lab.dir);
        let (would, denied) = (find(&records, c, 9999), find(&records, world, 7777));
        if would.0 == 1 && denied == (1, 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flow records: would-deny to C {would:?} (want 1 flow), denied to the world {denied:?} \
             (want 1 flow of 2 packets), in:\n{}",
            std::fs::read_to_string(lab.dir.join("flows.jsonl")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let records = flows(&lab.dir);
    for r in &records {
        assert_eq!(r.schema, "flow/v1");
        assert_eq!(r.node, "bh-node");
        assert!(r.end >= r.start);
    }
    let w = records
        .iter()
        .find(|r| r.destination.address == c && r.port == 9999)
        .expect("would-deny record");
    assert_eq!(
        (
            w.source.identity,
            w.destination.identity,
            w.destination.name.as_deref(),
            w.verdict,
            w.would_verdict,
            w.mode,
            w.direction,
        ),
        (
            2,
            1002,
            Some("default/c"),
            FlowVerdict::Allow,
            FlowVerdict::Deny,
            EnforcementMode::Visibility,
            Direction::Ingress
        )
    );
    assert_eq!(w.source.kind, EndpointKind::World);
    let d = records
        .iter()
        .find(|r| r.destination.address == world && r.port == 7777)
        .expect("deny record");
    assert_eq!(
        (
            d.source.identity,
            d.source.name.as_deref(),
            d.destination.identity,
            d.direction,
            d.reason,
            d.verdict,
        ),
        (
            1000,
            Some("default/a"),
            2,
            Direction::Egress,
            FlowReason::Default,
            FlowVerdict::Deny
        )
    );
    // An allowed flow carries its deciding rule by name: A -> B tcp/8000 (rule 1).
    let b: IpAddr = "10.98.0.11".parse().expect("ip");
    assert!(probe(PODS[0].0, "tcp", Some(a), b, 8000, &[]));
    wait_for("the allowed flow's records", Duration::from_secs(5), || {
        flows(&lab.dir)
            .iter()
            .any(|r| r.destination.address == b && r.port == 8000)
    });
    let records = flows(&lab.dir);
    let egress = records
        .iter()
        .find(|r| r.destination.address == b && r.port == 8000 && r.direction == Direction::Egress)
        .expect("A's egress view");
    let rule = egress.rule.as_ref().expect("deciding rule");
    assert_eq!(
        (rule.policy.as_str(), rule.name.as_str(), rule.id),
        ("a-out", "to-b", 1)
    );
    assert!(egress.counts() && egress.flows == 1);
    let ingress = records
        .iter()
        .find(|r| r.destination.address == b && r.port == 8000 && r.direction == Direction::Ingress)
        .expect("B's ingress view: both local endpoints report");
    assert!(!ingress.counts(), "counted once, through the source's view");
}

fn check_policy_change_stops_established(lab: &Lab) {
    let mut hold = spawn_in(
        PODS[0].0,
        &[
            python(),
            traffic_py().to_str().expect("path"),
            "hold",
            "10.98.0.11",
            "8000",
        ],
    );
    // Lines arrive on a channel, so a stuck exchange fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = hold.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a line from the hold client")
    };
    let mut stdin = hold.stdin.take().expect("stdin");
    assert_eq!(next_line().trim(), "ok", "established A -> B tcp/8000");
    let generation = status(&lab.dir)["generation"].as_u64().expect("generation");
    let text = std::fs::read_to_string(lab.dir.join("rule-map.yaml")).expect("read");
    let without_rule_1: String = text
        .lines()
        .scan(false, |skip, l| {
            if l.contains("{id: 1,") {
                *skip = true;
                return Some(None);
            }
            if *skip {
                *skip = false;
                return Some(None);
            }
            Some(Some(l.to_string()))
        })
        .flatten()
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(lab.dir.join("rule-map.yaml"), without_rule_1).expect("write");
    wait_for("the agent to reload", Duration::from_secs(10), || {
        status(&lab.dir)["generation"]
            .as_u64()
            .is_some_and(|g| g > generation)
    });
    writeln!(stdin, "again").expect("stdin");
    assert_eq!(
        next_line().trim(),
        "fail",
        "the established connection must stop after rule 1 is removed"
    );
    drop(stdin);
    hold.kill().ok();
    hold.wait().ok();
    wait_for("a reevalDeny record", Duration::from_secs(5), || {
        flows(&lab.dir)
            .iter()
            .any(|r| r.reason == FlowReason::Reevaluated && r.port == 8000)
    });
}

fn check_bad_input_keeps_enforcing(lab: &Lab) {
    let before = status(&lab.dir)["generation"].as_u64().expect("generation");
    std::fs::write(
        lab.dir.join("rule-map.yaml"),
        "spec: [this is not a rule map",
    )
    .expect("write");
    wait_for("the reload error", Duration::from_secs(10), || {
        status(&lab.dir)["error"]
            .as_str()
            .is_some_and(|e| e.contains("rule-map.yaml"))
    });
    assert_eq!(
        status(&lab.dir)["generation"].as_u64(),
        Some(before),
        "nothing reprogrammed"
    );
    // Still enforcing the last good map (rule 1 removed, rule 2 present).
    let (a, b): (IpAddr, IpAddr) = (
        "10.98.0.10".parse().expect("ip"),
        "10.98.0.11".parse().expect("ip"),
    );
    assert!(
        !probe(PODS[0].0, "tcp", Some(a), b, 8080, &[]),
        "override deny still enforced"
    );
    assert!(
        probe(PODS[0].0, "sctp", Some(a), b, 3868, &[]),
        "rule 10 still allows"
    );
}

/// A killed agent leaves its programs attached (pinned TCX links) and its
/// maps in place; a new agent takes them over without a second attachment.
fn check_restart_keeps_enforcing(lab: &mut Lab) {
    let (a, b): (IpAddr, IpAddr) = (
        "10.98.0.10".parse().expect("ip"),
        "10.98.0.11".parse().expect("ip"),
    );
    let mut old = lab.agent.take().expect("agent");
    old.kill().expect("SIGKILL the agent");
    old.wait().ok();
    assert!(
        !probe(PODS[0].0, "tcp", Some(a), b, 8080, &[]),
        "no agent: still enforcing the override deny"
    );
    assert!(
        probe(PODS[0].0, "sctp", Some(a), b, 3868, &[]),
        "no agent: still allowing"
    );
    // The last good rule map is back in place for the new agent.
    std::fs::remove_file(lab.dir.join("status.json")).ok();
    std::fs::copy(
        fixtures().join("rule-map.yaml"),
        lab.dir.join("rule-map.yaml"),
    )
    .expect("copy");
    lab.agent = Some(spawn_agent(&lab.dir));
    wait_for("the restarted agent", Duration::from_secs(20), || {
        let s = status(&lab.dir);
        s["programmed"].as_u64() == Some(1)
            && s["interfaces"].as_array().is_some_and(|a| a.len() == 4)
    });
    assert!(
        !probe(PODS[0].0, "tcp", Some(a), b, 8080, &[]),
        "restarted: override deny"
    );
    assert!(
        probe(PODS[0].0, "tcp", Some(a), b, 8000, &[]),
        "restarted: rule 1 is back"
    );
    // The new agent re-used the 8 pinned links (bhtup and three veths, two
    // hooks each) by swapping their program, instead of adding new ones.
    let links = Path::new(BPFFS).join(format!(
        "bulkhead-netns-{}/v{}/links",
        std::process::id(),
        bulkhead_agent::layout::LAYOUT_VERSION
    ));
    let pins = std::fs::read_dir(&links).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        pins,
        8,
        "one pinned TCX link per interface and hook in {}",
        links.display()
    );
    // (bpftool 7.1 prints TCX links as "type 11  prog N", without names.)
    let progs = sh(&["bpftool", "prog", "show"]);
    let ids: Vec<String> = progs
        .lines()
        .filter(|l| l.contains(" name bh_"))
        .filter_map(|l| l.split(':').next().map(|id| format!("prog {id} ")))
        .collect();
    let all_links = sh(&["bpftool", "link", "show"]);
    let ours = all_links
        .lines()
        .filter(|l| ids.iter().any(|id| format!("{l} ").contains(id.as_str())))
        .count();
    assert_eq!(ours, 8, "kernel links running bh_* programs:\n{all_links}");
}

/// How many connections the cross-CPU test opens (`BHT_CT_CONNECTIONS`).
fn cross_cpu_connections() -> u64 {
    std::env::var("BHT_CT_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// Bytes each connection sends and gets echoed (`BHT_CT_BYTES`).
fn cross_cpu_bytes() -> u64 {
    std::env::var("BHT_CT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_384)
}

/// The conntrack hang: client a pinned to CPU 0 and server b to CPU 1, both
/// in full mode, a new connection per exchange. The client's packets are
/// judged on CPU 0 and the replies on CPU 1, so both CPUs refresh the same
/// entries all the time. Before the fix, 2 to 4 connections in every 10 s
/// stalled because a live entry was aged with a wrapped unsigned difference
/// and deleted; the reply was then denied as a new flow.
#[test]
fn conntrack_survives_two_cpus_touching_one_entry() {
    let _one_lab = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus >= 2,
        "needs two CPUs to put the client and the server on different ones (has {cpus})"
    );
    let dir = input_dir(
        "cross-cpu",
        &fixtures().join("rule-map-full-pair.yaml"),
        &[fixtures().join("identities.yaml")],
    );
    let (lab, _, _) = start(&dir);
    let server = lab.children[3].id().to_string(); // [NODE, WORLD, a, b, c]
    sh(&["taskset", "-a", "-p", "-c", "1", &server]);
    let connections = cross_cpu_connections();
    let out = Command::new("ip")
        .args(["netns", "exec", PODS[0].0, "taskset", "-c", "0", python()])
        .arg(traffic_py())
        .args(["churn", "10.98.0.11", "8000"])
        .args(["--count", &connections.to_string(), "--timeout", "3"])
        .args(["--bytes", &cross_cpu_bytes().to_string()])
        .output()
        .expect("churn client");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "churn summary ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("cross-CPU churn: {summary}");

    // A denied marker flow last: once its record is in the log, every deny
    // before it (ring buffer order) has been written too.
    let (a, c): (IpAddr, IpAddr) = (
        "10.98.0.10".parse().expect("ip"),
        "10.98.0.12".parse().expect("ip"),
    );
    assert!(!probe(
        PODS[0].0,
        "udp",
        Some(a),
        c,
        9999,
        &["--sport", "31999", "--timeout", "0.3"]
    ));
    wait_for("the marker's deny record", Duration::from_secs(5), || {
        flows(&lab.dir)
            .iter()
            .any(|r| r.verdict == FlowVerdict::Deny && r.port == 9999 && r.destination.address == c)
    });
    let pair = |r: &FlowRecord| {
        let ends = [
            r.source.address.to_string(),
            r.destination.address.to_string(),
        ];
        ends.contains(&"10.98.0.10".to_string()) && ends.contains(&"10.98.0.11".to_string())
    };
    let denied: u64 = flows(&lab.dir)
        .iter()
        .filter(|r| pair(r) && r.verdict == FlowVerdict::Deny)
        .map(|r| r.packets)
        .sum();
    assert_eq!(
        (
            summary["done"].as_u64(),
            summary["stalled"].as_u64(),
            denied
        ),
        (Some(connections), Some(0), 0),
        "connections done, stalled, and packets of the pair denied: {summary}"
    );
}
