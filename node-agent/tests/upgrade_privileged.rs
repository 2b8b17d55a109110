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

/// One lab's names: the pod's namespace, its veth (host side in this
/// namespace) and the two addresses. Each test has its own, so they can run
/// in parallel.
#[derive(Clone, Copy)]
struct Names {
    ns: &'static str,
    veth: &'static str,
    host: &'static str,
    pod: &'static str,
}

const UPGRADE: Names = Names {
    ns: "bhu-pod",
    veth: "bhu-a",
    host: "10.97.0.1",
    pod: "10.97.0.10",
};
const RESTART: Names = Names {
    ns: "bhr-pod",
    veth: "bhr-a",
    host: "10.97.1.1",
    pod: "10.97.1.10",
};

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

/// The lab of `names` and its pin directories; all removed on drop.
struct Lab {
    names: Names,
    pin_root: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        Command::new("ip")
            .args(["link", "del", self.names.veth])
            .stderr(Stdio::null())
            .status()
            .ok();
        Command::new("ip")
            .args(["netns", "del", self.names.ns])
            .stderr(Stdio::null())
            .status()
            .ok();
        std::fs::remove_dir_all(&self.pin_root).ok();
    }
}

impl Lab {
    fn build(names: Names, pin_root: PathBuf) -> Lab {
        let lab = Lab { names, pin_root };
        drop(Lab {
            names,
            pin_root: lab.pin_root.clone(),
        }); // leftovers of an interrupted run
        let Names {
            ns,
            veth,
            host,
            pod,
        } = names;
        sh(&["ip", "netns", "add", ns]);
        sh(&[
            "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ]);
        sh(&["ip", "addr", "add", &format!("{host}/32"), "dev", veth]);
        sh(&["ip", "link", "set", veth, "up"]);
        sh(&["ip", "route", "add", &format!("{pod}/32"), "dev", veth]);
        lab.in_pod("ip link set lo up");
        lab.in_pod(&format!("ip addr add {pod}/32 dev eth0"));
        lab.in_pod("ip link set eth0 up");
        lab.in_pod(&format!("ip route add {host}/32 dev eth0 scope link"));
        lab
    }

    fn in_pod(&self, rest: &str) {
        let mut args = vec!["ip", "netns", "exec", self.names.ns];
        args.extend(rest.split_whitespace());
        sh(&args);
    }

    fn interfaces(&self) -> InterfaceConfig {
        InterfaceConfig {
            endpoint_prefixes: vec![self.names.veth.to_string()],
            host_interfaces: vec![],
        }
    }

    /// The host (500) and pod a (1000), both full mode: a may send UDP to
    /// the host on `ports`, the host may receive it; nothing else is allowed.
    fn desired(&self, dir: &Path, name: &str, ports: &[u16]) -> Desired {
        let Names { host, pod, .. } = self.names;
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
  host: {{name: bhu, identity: 500, mode: full, addresses: [{host}]}}
  endpoints:
    - {{name: default/a, identity: 1000, mode: full, addresses: [{pod}]}}
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
  - {{cidr: {pod}/32, identity: 1000}}
  - {{cidr: {host}/32, identity: 500}}
"
            ),
        )
        .expect("writing the identities");
        let ids = spec::read_identity_map(&ids).expect("identities");
        Desired::build(&rule_map, &[ids]).expect("valid rule map")
    }

    /// An echo server on the host side.
    fn echo(&self, port: u16) {
        let s =
            UdpSocket::bind((self.names.host, port)).unwrap_or_else(|e| panic!("bind {port}: {e}"));
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                s.send_to(&buf[..n], from).ok();
            }
        });
    }

    /// How many of 20 datagrams to `port` came back.
    fn echoed(&self, port: u16) -> u32 {
        echoed_of(self.names, port, 20)
    }

    /// A prober sending to `port` every 1 ms until [`Probe::report`].
    fn probe(&self, port: u16) -> Probe {
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.names.ns, "python3"])
            .arg(prober())
            .args([
                "gaps",
                self.names.host,
                &port.to_string(),
                "--interval-ms",
                "1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("prober");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().expect("prober line").expect("prober output");
        assert_eq!(first, "ready", "prober: {first}");
        Probe { child, lines }
    }
}

struct Probe {
    child: std::process::Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Probe {
    /// Stops the prober; its JSON report.
    fn report(mut self) -> serde_json::Value {
        self.child.stdin.take().expect("stdin").write_all(b"").ok(); // closing it stops the prober
        let report = self
            .lines
            .next()
            .expect("prober report")
            .expect("prober output");
        self.child.wait().ok();
        serde_json::from_str(&report).unwrap_or_else(|e| panic!("prober JSON {report}: {e}"))
    }
}

/// How many of `count` datagrams (10 ms apart) from the pod of `names` to
/// `port` on the host came back.
fn echoed_of(names: Names, port: u16, count: u32) -> u32 {
    let out = Command::new("ip")
        .args(["netns", "exec", names.ns, "python3"])
        .arg(prober())
        .args(["once", names.host, &port.to_string()])
        .args(["--count", &count.to_string()])
        .output()
        .expect("prober once");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("prober once: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The one traffic program of every test (scripts/traffic.py).
fn prober() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/traffic.py")
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
    let lab = Lab::build(UPGRADE, base.pin_root());
    let tmp = std::env::temp_dir().join(format!("bhu-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    lab.echo(5000);
    lab.echo(5001);
    let interfaces = lab.interfaces();

    // The old agent: programs, attaches, goes away (its links stay pinned).
    let old_opts = LoadOptions {
        layout_version: old_version,
        ..base.clone()
    };
    {
        let mut old = Datapath::open(&old_opts).expect("old layout");
        old.program(&lab.desired(&tmp, "old", &[5000]))
            .expect("programming the old layout");
        old.sync_interfaces(&interfaces)
            .expect("attaching the old layout");
        let n = lab.echoed(5000);
        eprintln!("old layout counters: {:?}", old.counters());
        assert_eq!(n, 20, "UDP/5000 is allowed by the old layout");
    }
    let old_dir = old_opts.pin_dir();
    assert_eq!(links(&old_dir).len(), 2, "old links pinned");
    assert_eq!(
        lab.echoed(5000),
        20,
        "UDP/5000 is allowed by the old layout"
    );
    assert_eq!(lab.echoed(5001), 0, "UDP/5001 is refused by the old layout");

    // The upgrade, under a 1 ms prober to the port both layouts allow.
    let probe = lab.probe(5000);
    std::thread::sleep(std::time::Duration::from_millis(300)); // a baseline stretch before
    let t0 = Instant::now();
    let mut new = Datapath::open(&base).expect("new layout");
    let opened = t0.elapsed();
    new.program(&lab.desired(&tmp, "new", &[5000, 5001]))
        .expect("programming the new layout");
    let programmed = t0.elapsed();
    new.sync_interfaces(&interfaces)
        .expect("attaching the new layout");
    let upgraded = t0.elapsed();
    std::thread::sleep(std::time::Duration::from_millis(300)); // and after
    let report = probe.report();
    eprintln!(
        "upgrade v{old_version} -> v{LAYOUT_VERSION}: open {opened:?}, programmed {programmed:?}, \
         attached and old retired {upgraded:?}; prober: {report}"
    );
    assert!(report["sent"].as_u64().unwrap_or(0) > 300, "{report}");
    assert_eq!(
        report["lost"], 0,
        "allowed probes refused during the upgrade: {report}"
    );

    assert_eq!(
        lab.echoed(5001),
        20,
        "UDP/5001 is allowed by the new layout alone"
    );
    assert_eq!(lab.echoed(5000), 20, "UDP/5000 still allowed");
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

/// CVE-2023-27595 (Cilium GHSA-r5x6-w42p-jhpp): after a start, the programs
/// were not attached for a moment, and nothing was enforced. Ours: the
/// links and maps are pinned, so an agent that dies (dropped without
/// detaching, as SIGKILL leaves it) keeps enforcing with no agent at all,
/// and the next one takes the pins over in place. Through the whole
/// window (agent gone 200 ms, then open, program, attach) a 1 ms prober to
/// the allowed port loses nothing, and datagrams to the refused port (one
/// every 10 ms, until the next agent is attached) never come back. bench/restart.sh does the same with real
/// SIGKILLs of the agent binary under TCP load.
#[test]
fn cve_2023_27595_a_restart_leaves_no_window_without_enforcement_privileged() {
    require_root();
    let opts = LoadOptions {
        pin_name: format!("bulkhead-test-{}-restart", std::process::id()),
        ..LoadOptions::default()
    };
    let lab = Lab::build(RESTART, opts.pin_root());
    let tmp = std::env::temp_dir().join(format!("bhr-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    lab.echo(5000);
    lab.echo(5001);
    let interfaces = lab.interfaces();
    let desired = lab.desired(&tmp, "restart", &[5000]);
    {
        let mut first = Datapath::open(&opts).expect("first agent");
        first.program(&desired).expect("programming");
        first.sync_interfaces(&interfaces).expect("attaching");
    } // killed: nothing detached
    assert_eq!(lab.echoed(5000), 20, "UDP/5000 is allowed");
    assert_eq!(lab.echoed(5001), 0, "UDP/5001 is refused");

    let probe = lab.probe(5000);
    // The refused port, 20 datagrams 10 ms apart per round, until the
    // next agent is attached: (rounds, datagrams that came back).
    let names = lab.names;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let denied = {
        let done = done.clone();
        std::thread::spawn(move || {
            let (mut rounds, mut back) = (0u32, 0u32);
            while rounds == 0 || !done.load(std::sync::atomic::Ordering::SeqCst) {
                back += echoed_of(names, 5001, 20);
                rounds += 1;
            }
            (rounds, back)
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200)); // no agent at all
    let t0 = Instant::now();
    let mut next = Datapath::open(&opts).expect("next agent");
    next.program(&desired).expect("programming again");
    next.sync_interfaces(&interfaces).expect("attaching again");
    let restarted = t0.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (rounds, through) = denied.join().expect("denied prober");
    let report = probe.report();
    eprintln!("restart: open, program and attach {restarted:?}; prober: {report}; refused port echoed {through} of {}", rounds * 20);
    assert!(report["sent"].as_u64().unwrap_or(0) > 300, "{report}");
    assert_eq!(
        report["lost"], 0,
        "allowed probes lost across the restart: {report}"
    );
    assert_eq!(
        through, 0,
        "datagrams to the refused port came back during the restart"
    );
    assert_eq!(links(&opts.pin_dir()).len(), 2, "the same two links pinned");
    next.detach_all().expect("detach");
    std::fs::remove_dir_all(&tmp).ok();
    drop(lab);
}
