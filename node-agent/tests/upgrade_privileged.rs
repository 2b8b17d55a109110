//! Issue 14, item 3: an upgrade across map layouts leaves no gap and no
//! stale enforcement. An agent of the layout before this one (the agent's
//! own programs, pinned under `v<LAYOUT_VERSION - 1>/` by a `LoadOptions`
//! with that version) is left attached to a pod's veth, as a killed or
//! stopped old agent leaves it, with a rule map that refuses UDP/5001.
//! The new datapath starts with a rule map that allows it; a prober sends
//! a datagram every 1 ms to an allowed port all through the upgrade.
//! Checks: no probe is lost, UDP/5001 goes through afterwards (it could not
//! if the old program still ran: on TCX a drop by either program is final),
//! the old layout's links and pins are gone, the new ones in place.
//! Root needed; fails, never skips, without it.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use bulkhead_agent::datapath::InterfaceConfig;
use bulkhead_agent::layout::LAYOUT_VERSION;
use bulkhead_agent::loader::LoadOptions;
use bulkhead_agent::{spec, Datapath, Desired};
use support::require_root;

const POD_NS: &str = "bhu-pod";
const VETH: &str = "bhu-a";
const HOST: &str = "10.97.0.1";
const POD: &str = "10.97.0.10";

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_pod(rest: &str) {
    let mut args = vec!["ip", "netns", "exec", POD_NS];
    args.extend(rest.split_whitespace());
    sh(&args);
}

/// The pod's namespace, its veth (host side in this namespace) and the
/// pin directories; all removed on drop.
struct Lab {
    pin_root: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        Command::new("ip")
            .args(["link", "del", VETH])
            .stderr(Stdio::null())
            .status()
            .ok();
        Command::new("ip")
            .args(["netns", "del", POD_NS])
            .stderr(Stdio::null())
            .status()
            .ok();
        std::fs::remove_dir_all(&self.pin_root).ok();
    }
}

fn build(pin_root: PathBuf) -> Lab {
    let lab = Lab { pin_root };
    drop(Lab {
        pin_root: lab.pin_root.clone(),
    }); // leftovers of an interrupted run
    sh(&["ip", "netns", "add", POD_NS]);
    sh(&[
        "ip", "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", POD_NS,
    ]);
    sh(&["ip", "addr", "add", &format!("{HOST}/32"), "dev", VETH]);
    sh(&["ip", "link", "set", VETH, "up"]);
    sh(&["ip", "route", "add", &format!("{POD}/32"), "dev", VETH]);
    in_pod("ip link set lo up");
    in_pod(&format!("ip addr add {POD}/32 dev eth0"));
    in_pod("ip link set eth0 up");
    in_pod(&format!("ip route add {HOST}/32 dev eth0 scope link"));
    lab
}

/// The host (500) and pod a (1000), both full mode: a may send UDP to the
/// host on `ports`, the host may receive it; nothing else is allowed.
fn desired(dir: &Path, name: &str, ports: &[u16]) -> Desired {
    let port_list: Vec<String> = ports
        .iter()
        .map(|p| format!("{{protocol: UDP, first: {p}, last: {p}}}"))
        .collect();
    let ports = port_list.join(", ");
    let yaml = format!(
        "apiVersion: bulkhead.dev/v1alpha1
kind: NodeRuleMap
metadata: {{name: bhu}}
spec:
  nodeKind: Node
  host: {{name: bhu, identity: 500, mode: full, addresses: [{HOST}]}}
  endpoints:
    - {{name: default/a, identity: 1000, mode: full, addresses: [{POD}]}}
  rules:
    - {{id: 1, policy: a-out, rule: udp, direction: egress, action: allow, subjects: [1000], peers: [1], ports: [{ports}]}}
    - {{id: 2, policy: host-in, rule: udp, direction: ingress, action: allow, subjects: [500], peers: [1000], ports: [{ports}]}}
"
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("writing the rule map");
    let rule_map = spec::read_rule_map(&path).expect("rule map");
    let ids = dir.join(format!("{name}-identities.yaml"));
    std::fs::write(
        &ids,
        format!(
            "shard: 0
shards: 1
identities:
  - {{id: 500, labels: {{role: node}}}}
  - {{id: 1000, labels: {{app: a}}}}
prefixes:
  - {{cidr: {POD}/32, identity: 1000}}
  - {{cidr: {HOST}/32, identity: 500}}
"
        ),
    )
    .expect("writing the identities");
    let ids = spec::read_identity_map(&ids).expect("identities");
    Desired::build(&rule_map, &[ids]).expect("valid rule map")
}

fn echo(port: u16) {
    let s = UdpSocket::bind((HOST, port)).unwrap_or_else(|e| panic!("bind {port}: {e}"));
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            s.send_to(&buf[..n], from).ok();
        }
    });
}

/// The one traffic program of every test (scripts/traffic.py).
fn prober() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/traffic.py")
}

/// How many of 20 datagrams to `port` came back.
fn echoed(port: u16) -> u32 {
    let out = Command::new("ip")
        .args(["netns", "exec", POD_NS, "python3"])
        .arg(prober())
        .args(["once", HOST, &port.to_string()])
        .output()
        .expect("prober once");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("prober once: {}", String::from_utf8_lossy(&out.stderr)))
}

fn links(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("links"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn upgrade_retires_the_older_layout_without_a_gap() {
    require_root();
    let old_version = LAYOUT_VERSION - 1;
    let base = LoadOptions {
        pin_name: format!("bulkhead-test-{}-upgrade", std::process::id()),
        ..LoadOptions::default()
    };
    let lab = build(base.pin_root());
    let tmp = std::env::temp_dir().join(format!("bhu-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    echo(5000);
    echo(5001);
    let interfaces = InterfaceConfig {
        endpoint_prefixes: vec![VETH.to_string()],
        host_interfaces: vec![],
    };

    // The old agent: programs, attaches, goes away (its links stay pinned).
    let old_opts = LoadOptions {
        layout_version: old_version,
        ..base.clone()
    };
    {
        let mut old = Datapath::open(&old_opts).expect("old layout");
        old.program(&desired(&tmp, "old", &[5000]))
            .expect("programming the old layout");
        old.sync_interfaces(&interfaces)
            .expect("attaching the old layout");
        let n = echoed(5000);
        eprintln!("old layout counters: {:?}", old.counters());
        assert_eq!(n, 20, "UDP/5000 is allowed by the old layout");
    }
    let old_dir = old_opts.pin_dir();
    assert_eq!(links(&old_dir).len(), 2, "old links pinned");
    assert_eq!(echoed(5000), 20, "UDP/5000 is allowed by the old layout");
    assert_eq!(echoed(5001), 0, "UDP/5001 is refused by the old layout");

    // The upgrade, under a 1 ms prober to the port both layouts allow.
    let mut probe = Command::new("ip")
        .args(["netns", "exec", POD_NS, "python3"])
        .arg(prober())
        .args(["gaps", HOST, "5000", "--interval-ms", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("prober");
    let mut lines = BufReader::new(probe.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("prober line").expect("prober output");
    assert_eq!(first, "ready", "prober: {first}");
    std::thread::sleep(std::time::Duration::from_millis(300)); // a baseline stretch before
    let t0 = Instant::now();
    let mut new = Datapath::open(&base).expect("new layout");
    let opened = t0.elapsed();
    new.program(&desired(&tmp, "new", &[5000, 5001]))
        .expect("programming the new layout");
    let programmed = t0.elapsed();
    new.sync_interfaces(&interfaces)
        .expect("attaching the new layout");
    let upgraded = t0.elapsed();
    std::thread::sleep(std::time::Duration::from_millis(300)); // and after
    probe.stdin.take().expect("stdin").write_all(b"").ok(); // closing it stops the prober
    let report = lines.next().expect("prober report").expect("prober output");
    probe.wait().ok();
    eprintln!(
        "upgrade v{old_version} -> v{LAYOUT_VERSION}: open {opened:?}, programmed {programmed:?}, \
         attached and old retired {upgraded:?}; prober: {report}"
    );
    let report: serde_json::Value = serde_json::from_str(&report).expect("prober JSON");
    assert!(report["sent"].as_u64().unwrap_or(0) > 300, "{report}");
    assert_eq!(
        report["lost"], 0,
        "allowed probes refused during the upgrade: {report}"
    );

    assert_eq!(
        echoed(5001),
        20,
        "UDP/5001 is allowed by the new layout alone"
    );
    assert_eq!(echoed(5000), 20, "UDP/5000 still allowed");
    assert!(
        !old_dir.exists(),
        "old layout's pins removed: {}",
        old_dir.display()
    );
    assert_eq!(links(&base.pin_dir()).len(), 2, "new links pinned");
    new.detach_all().expect("detach");
    std::fs::remove_dir_all(&tmp).ok();
    drop(lab);
}
