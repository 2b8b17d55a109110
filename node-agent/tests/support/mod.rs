//! Shared by the privileged tests: packets, a reference model of who is who,
//! and a datapath in a private pin directory.
#![allow(dead_code)]

use std::net::IpAddr;

use bulkhead_agent::loader::LoadOptions;
use bulkhead_agent::Datapath;
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::{Direction, NodeRuleMapSpec};
use bulkhead_api::IdentityMapSpec;
use bulkhead_policy::verdict::{deciding_rule, enforced, Verdict};
use ipnet::IpNet;

/// Fails (never skips) when the test cannot run.
pub fn require_root() {
    // SAFETY-free check: /proc/self/status says the effective uid.
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("Uid line");
    assert_eq!(
        euid, "0",
        "privileged test: run as root (eBPF and netns need CAP_SYS_ADMIN/CAP_NET_ADMIN)"
    );
}

/// A datapath with its maps pinned in a directory of its own, removed on drop.
pub struct TestDatapath {
    pub dp: Datapath,
    pub dir: std::path::PathBuf,
}

impl TestDatapath {
    pub fn open(name: &str) -> Self {
        Self::open_with(name, LoadOptions::default())
    }

    /// With load-time settings of the test's own (the pin name is replaced).
    pub fn open_with(name: &str, opts: LoadOptions) -> Self {
        require_root();
        let opts = LoadOptions {
            pin_name: format!("bulkhead-test-{}-{name}", std::process::id()),
            ..opts
        };
        let dir = opts.bpffs.join(&opts.pin_name);
        let dp = Datapath::open(&opts).unwrap_or_else(|e| panic!("loading the datapath: {e}"));
        TestDatapath { dp, dir }
    }
}

impl Drop for TestDatapath {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The reference: identity of an address as the node sees it.
pub fn peer_identity(rule_map: &NodeRuleMapSpec, shards: &[IdentityMapSpec], addr: IpAddr) -> u32 {
    if rule_map
        .host
        .addresses
        .iter()
        .any(|a| a.parse::<IpAddr>().ok() == Some(addr))
    {
        return bulkhead_api::identity::HOST;
    }
    shards
        .iter()
        .flat_map(|s| s.prefixes.iter())
        .filter_map(|p| p.cidr.parse::<IpNet>().ok().map(|n| (n, p.identity)))
        .filter(|(n, _)| n.contains(&addr))
        .max_by_key(|(n, _)| n.prefix_len())
        .map_or(bulkhead_api::identity::WORLD, |(_, id)| id)
}

/// The local endpoint owning `addr`: (identity, mode, is host).
pub fn local(rule_map: &NodeRuleMapSpec, addr: IpAddr) -> Option<(u32, EnforcementMode, bool)> {
    let owns = |addrs: &[String]| addrs.iter().any(|a| a.parse::<IpAddr>().ok() == Some(addr));
    if owns(&rule_map.host.addresses) {
        return Some((rule_map.host.identity, rule_map.host.mode, true));
    }
    rule_map
        .endpoints
        .iter()
        .find(|e| owns(&e.addresses))
        .map(|e| (e.identity, e.mode, false))
}

/// One side's enforced verdict per the compiler's verdict function, with failsafe ports.
pub fn side_verdict(
    rule_map: &NodeRuleMapSpec,
    shards: &[IdentityMapSpec],
    local_addr: IpAddr,
    peer_addr: IpAddr,
    direction: Direction,
    protocol: Protocol,
    port: u16,
) -> Verdict {
    let Some((identity, mode, is_host)) = local(rule_map, local_addr) else {
        return Verdict::Allow;
    };
    if is_host
        && rule_map
            .failsafe_ports
            .iter()
            .any(|f| f.protocol == protocol && f.port == port && f.direction == direction)
    {
        return Verdict::Allow;
    }
    let peer = peer_identity(rule_map, shards, peer_addr);
    let rule = deciding_rule(&rule_map.rules, identity, direction, peer, protocol, port);
    enforced(mode, rule.map(|r| r.action))
}

/// The full-mode ("would be") verdict of one side.
pub fn side_would(
    rule_map: &NodeRuleMapSpec,
    shards: &[IdentityMapSpec],
    local_addr: IpAddr,
    peer_addr: IpAddr,
    direction: Direction,
    protocol: Protocol,
    port: u16,
) -> Verdict {
    let Some((identity, _, _)) = local(rule_map, local_addr) else {
        return Verdict::Allow;
    };
    let peer = peer_identity(rule_map, shards, peer_addr);
    let rule = deciding_rule(&rule_map.rules, identity, direction, peer, protocol, port);
    enforced(EnforcementMode::Full, rule.map(|r| r.action))
}

/// What `program` returns for a packet, per the programs' contract: the
/// sides it judges (the verdict function's), from an interface no endpoint
/// is bound to.
pub fn expected(
    rule_map: &NodeRuleMapSpec,
    shards: &[IdentityMapSpec],
    program: &str,
    src: IpAddr,
    dst: IpAddr,
    protocol: Protocol,
    port: u16,
) -> u32 {
    let is_host = |a| local(rule_map, a).is_some_and(|l| l.2);
    // Anti-spoofing (tests/spoofing_privileged.rs has the whole contract):
    // these packets come from an interface no endpoint is bound to, so
    // only a claimed host address is spoofed there; a host interface never
    // sees a local pod's address as a source.
    match program {
        bulkhead_agent::loader::FROM_ENDPOINT if is_host(src) => return DROP,
        bulkhead_agent::loader::HOST_INGRESS if local(rule_map, src).is_some_and(|l| !l.2) => {
            return DROP
        }
        _ => {}
    }
    let egress = || {
        side_verdict(
            rule_map,
            shards,
            src,
            dst,
            Direction::Egress,
            protocol,
            port,
        )
    };
    let ingress = || {
        side_verdict(
            rule_map,
            shards,
            dst,
            src,
            Direction::Ingress,
            protocol,
            port,
        )
    };
    let sides: Vec<Verdict> = match program {
        bulkhead_agent::loader::FROM_ENDPOINT if local(rule_map, src).is_none() => vec![],
        bulkhead_agent::loader::TO_ENDPOINT if local(rule_map, dst).is_none() => vec![],
        bulkhead_agent::loader::FROM_ENDPOINT => {
            let mut v = vec![egress()];
            if is_host(dst) {
                v.push(ingress());
            }
            v
        }
        bulkhead_agent::loader::TO_ENDPOINT => {
            let mut v = vec![ingress()];
            if is_host(src) {
                v.push(egress());
            }
            v
        }
        bulkhead_agent::loader::HOST_INGRESS => {
            if is_host(dst) {
                vec![ingress()]
            } else {
                vec![]
            }
        }
        bulkhead_agent::loader::HOST_EGRESS => {
            if is_host(src) {
                vec![egress()]
            } else {
                vec![]
            }
        }
        _ => unreachable!(),
    };
    if sides.contains(&Verdict::Deny) {
        DROP
    } else {
        PASS
    }
}

// ---- packets -------------------------------------------------------------

pub const ETH_IP: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;

pub fn eth(ethertype: u16) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    p.extend_from_slice(&ethertype.to_be_bytes());
    p
}

/// The L4 header of `protocol` with `sport`, `dport` (for ICMP: type in
/// dport's low byte, identifier = sport).
pub fn l4(protocol: Protocol, sport: u16, dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    match protocol {
        Protocol::Tcp => {
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        }
        Protocol::Udp => {
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&[0, 8, 0, 0]);
        }
        Protocol::Sctp => {
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&dport.to_be_bytes());
            h.extend_from_slice(&[0; 8]);
            h.extend_from_slice(&[1, 0, 0, 20]); // INIT chunk header
            h.extend_from_slice(&[0; 16]);
        }
        Protocol::Icmp | Protocol::Icmpv6 => {
            h.extend_from_slice(&[dport as u8, 0, 0, 0]);
            h.extend_from_slice(&sport.to_be_bytes());
            h.extend_from_slice(&[0, 1]);
        }
    }
    h
}

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, frag_off: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = eth(ETH_IP);
    let len = (20 + payload.len()) as u16;
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&frag_off.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

pub fn ipv6(src: [u8; 16], dst: [u8; 16], next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = eth(ETH_IPV6);
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// A whole packet between two addresses of the same family.
pub fn packet(src: IpAddr, dst: IpAddr, protocol: Protocol, sport: u16, dport: u16) -> Vec<u8> {
    let payload = l4(protocol, sport, dport);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ipv4(s.octets(), d.octets(), protocol.number(), 0, &payload)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let number = if protocol == Protocol::Icmp {
                Protocol::Icmpv6.number()
            } else {
                protocol.number()
            };
            ipv6(s.octets(), d.octets(), number, &payload)
        }
        _ => panic!("mixed families"),
    }
}

/// What a TC program returns to let a packet on (TC_ACT_UNSPEC, -1: TCX_NEXT).
pub const PASS: u32 = u32::MAX;
/// What it returns to drop one (TC_ACT_SHOT).
pub const DROP: u32 = 2;

/// Runs `program` (of the endpoint object, or the host one for
/// `HOST_INGRESS`) on `packet` with `BPF_PROG_TEST_RUN`: its return value.
/// The loaded program `program` (a host program or an endpoint program).
pub fn classifier<'a>(t: &'a TestDatapath, program: &str) -> &'a aya::programs::SchedClassifier {
    use bulkhead_agent::loader::{HOST_EGRESS, HOST_INGRESS};
    let loaded = t.dp.loaded();
    let ebpf = if program == HOST_INGRESS || program == HOST_EGRESS {
        &loaded.host
    } else {
        &loaded.endpoint
    };
    ebpf.program(program)
        .unwrap_or_else(|| panic!("no program {program}"))
        .try_into()
        .expect("a TC classifier")
}

pub fn run(t: &TestDatapath, program: &str, packet: &[u8]) -> u32 {
    use aya::programs::{TestRun, TestRunOptions};
    let mut out = vec![0u8; packet.len() + 256];
    let opts = TestRunOptions {
        data_in: Some(packet),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    classifier(t, program)
        .test_run(opts)
        .unwrap_or_else(|e| panic!("test_run {program}: {e:?}"))
        .return_value
}

/// A datapath in its own pin directory, programmed with the fixture rule
/// map and identities (`tests/fixtures/rule-map.yaml`, `identities.yaml`).
pub fn programmed_fixture(name: &str, opts: LoadOptions) -> TestDatapath {
    use bulkhead_agent::{spec, Desired};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let rule_map = spec::read_rule_map(&dir.join("rule-map.yaml")).expect("rule map");
    let ids = spec::read_identity_map(&dir.join("identities.yaml")).expect("identities");
    let desired = Desired::build(&rule_map, &[ids]).expect("valid fixture");
    let mut t = TestDatapath::open_with(name, opts);
    t.dp.program(&desired).expect("programming");
    t
}
