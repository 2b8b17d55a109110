//! Datapath benchmark: per-packet run time and map programming time at N
//! rules, each printed beside a baseline measured in the same run. Root
//! needed. Prints a table; asserts nothing.
//!
//!   bulkhead-datapath-bench [--rules 10000] [--repeat 200000]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions};
use bulkhead_agent::loader::{LoadOptions, FROM_ENDPOINT};
use bulkhead_agent::{Datapath, Desired};
use bulkhead_api::policy::{Action, EnforcementMode, Protocol};
use bulkhead_api::rule_map::{
    CompiledRule, Direction, LocalEndpoint, NodeKind, NodeRuleMapSpec, PortRange,
};
use bulkhead_api::{IdentityMapSpec, PrefixEntry};

const SUBJECTS: u32 = 50;
const PEERS: u32 = 500;

fn arg(name: &str, default: u64) -> anyhow::Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context("missing value")?
            .parse()
            .context(name.to_string()),
        None => Ok(default),
    }
}

/// A deterministic rule set: subjects 1000.., peers 2000.., mixed actions,
/// protocols, single ports and ranges, some any-peer rules.
fn rules(n: u32) -> Vec<CompiledRule> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (1..=n)
        .map(|id| {
            let r = next();
            let first = (r % 60_000) as u16 + 1;
            let span = if r % 3 == 0 {
                (r >> 20) as u16 % 500
            } else {
                0
            };
            let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp][(r >> 8) as usize % 3];
            CompiledRule {
                id,
                policy: format!("p{}", id / 10),
                rule: format!("r{id}"),
                direction: if r & 1 == 0 {
                    Direction::Ingress
                } else {
                    Direction::Egress
                },
                action: [
                    Action::Allow,
                    Action::Allow,
                    Action::Deny,
                    Action::OverrideDeny,
                ][(r >> 4) as usize % 4],
                subjects: vec![1000 + (r >> 32) as u32 % SUBJECTS],
                any_peer: r % 50 == 0,
                peers: if r % 50 == 0 {
                    Default::default()
                } else {
                    vec![2000 + (r >> 40) as u32 % PEERS].into()
                },
                ports: vec![PortRange {
                    protocol,
                    first,
                    last: first.saturating_add(span),
                }],
            }
        })
        .collect()
}

fn spec(n: u32) -> (NodeRuleMapSpec, Vec<IdentityMapSpec>) {
    spec_in(n, EnforcementMode::Full)
}

/// The same node with every pod in `mode` (visibility: a new install).
fn spec_in(n: u32, mode: EnforcementMode) -> (NodeRuleMapSpec, Vec<IdentityMapSpec>) {
    let endpoint = |i: u32| LocalEndpoint {
        name: format!("default/p{i}"),
        addresses: vec![format!("10.98.{}.{}", i / 250, i % 250 + 1)],
        identity: 1000 + i,
        mode,
    };
    let rule_map = NodeRuleMapSpec {
        node_kind: NodeKind::Node,
        host: LocalEndpoint {
            name: "bench".into(),
            addresses: vec!["10.99.0.1".into()],
            identity: 500,
            mode: EnforcementMode::Full,
        },
        endpoints: (0..SUBJECTS).map(endpoint).collect(),
        rules: rules(n),
        failsafe_ports: vec![],
    };
    let prefixes = (0..PEERS)
        .map(|i| PrefixEntry {
            cidr: format!("10.97.{}.{}/32", i / 250, i % 250 + 1),
            identity: 2000 + i,
            owner: None,
        })
        .chain((0..SUBJECTS).map(|i| PrefixEntry {
            cidr: format!("10.98.{}.{}/32", i / 250, i % 250 + 1),
            identity: 1000 + i,
            owner: None,
        }))
        .collect();
    (
        rule_map,
        vec![IdentityMapSpec {
            shard: 0,
            shards: 1,
            identities: vec![],
            prefixes,
            ..IdentityMapSpec::default()
        }],
    )
}

fn packet(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut p = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    p.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    p
}

fn bpf_stats(id: u32) -> anyhow::Result<(u64, u64)> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string(), "--json"])
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("bpftool json")?;
    Ok((
        v["run_time_ns"].as_u64().unwrap_or(0),
        v["run_cnt"].as_u64().unwrap_or(0),
    ))
}

struct Run {
    test_run_ns: f64,
    stats_ns: f64,
    /// Ring-buffer events per packet, emitted or lost.
    events_per_packet: f64,
}

fn measure(dp: &mut Datapath, pkt: &[u8], repeat: u32) -> anyhow::Result<Run> {
    dp.maps.conntrack.clear()?;
    let prog: &SchedClassifier = dp
        .loaded()
        .endpoint
        .program(FROM_ENDPOINT)
        .context("program")?
        .try_into()?;
    let id = prog.info()?.id();
    let lost = |dp: &Datapath| -> anyhow::Result<u64> {
        Ok(dp.counters()?.get("events_lost").copied().unwrap_or(0))
    };
    let lost0 = lost(dp)?;
    let (t0, c0) = bpf_stats(id)?;
    let mut out = vec![0u8; pkt.len() + 64];
    let res = prog.test_run(TestRunOptions {
        data_in: Some(pkt),
        data_out: Some(&mut out),
        repeat,
        ..TestRunOptions::default()
    })?;
    let (t1, c1) = bpf_stats(id)?;
    let stats_ns = if c1 > c0 {
        (t1 - t0) as f64 / (c1 - c0) as f64
    } else {
        f64::NAN
    };
    // The kernel reports the mean duration of one run.
    let mut events = bulkhead_agent::flows::FlowAggregator::default();
    dp.read_flows(&mut events);
    let emitted = events.events() + lost(dp)?.saturating_sub(lost0);
    Ok(Run {
        test_run_ns: res.duration.as_nanos() as f64,
        stats_ns,
        events_per_packet: emitted as f64 / f64::from(repeat.max(1)),
    })
}

fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Duration)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed()))
}

fn main() -> anyhow::Result<()> {
    let n = arg("--rules", 10_000)? as u32;
    let repeat = arg("--repeat", 200_000)? as u32;
    if std::fs::read_to_string("/proc/self/status")?
        .lines()
        .any(|l| l.starts_with("Uid:") && !l.contains("\t0\t"))
    {
        bail!("run as root");
    }
    let stats_path = "/proc/sys/kernel/bpf_stats_enabled";
    let stats_before = std::fs::read_to_string(stats_path).unwrap_or_default();
    std::fs::write(stats_path, "1").context("enabling kernel.bpf_stats_enabled")?;

    let opts = LoadOptions {
        pin_name: format!("bulkhead-bench-{}", std::process::id()),
        ..LoadOptions::default()
    };
    let pin_root = opts.bpffs.join(&opts.pin_name);
    let result = (|| -> anyhow::Result<()> {
        let mut dp = Datapath::open(&opts)?;
        let (empty_map, empty_ids) = spec(0);
        let (full_map, full_ids) = spec(n);
        let (empty, t_build_empty) = timed(|| Ok(Desired::build(&empty_map, &empty_ids)?))?;
        let (full, t_build_full) = timed(|| Ok(Desired::build(&full_map, &full_ids)?))?;

        let mut rows: Vec<(String, String, String)> = Vec::new();
        let (_, t_prog_empty) = timed(|| Ok(dp.program(&empty)?))?;
        // Per-packet figures with 0 rules first: the baseline.
        let src = [10, 98, 0, 1]; // endpoint 0, identity 1000, full mode
        let denied = packet(src, [10, 97, 0, 1], 1); // a peer no rule names at this port: full policy walk, deny
        let outsider = packet([10, 96, 0, 1], [10, 97, 0, 1], 1); // not a local endpoint: parse + one lookup
        let allowed_flow_port = full_map
            .rules
            .iter()
            .find(|r| {
                r.subjects == [1000]
                    && r.action == Action::Allow
                    && r.direction == Direction::Egress
                    && !r.any_peer
            })
            .map(|r| (r.peers[0], r.ports[0].first));
        let base_deny = measure(&mut dp, &denied, repeat)?;
        let base_out = measure(&mut dp, &outsider, repeat)?;

        let (stats_full, t_prog_full) = timed(|| Ok(dp.program(&full)?))?;
        // A pass writes the slot not in force: fill the other slot too, so
        // the next passes are diffs against the same rule map.
        dp.program(&full)?;
        let (stats_again, t_prog_again) = timed(|| Ok(dp.program(&full)?))?;
        let mut one_less = full_map.clone();
        one_less.rules.remove(n as usize / 2);
        let less = Desired::build(&one_less, &full_ids)?;
        let (stats_less, t_prog_less) = timed(|| Ok(dp.program(&less)?))?;
        dp.program(&full)?;

        let deny = measure(&mut dp, &denied, repeat)?;
        let out = measure(&mut dp, &outsider, repeat)?;
        let est = match allowed_flow_port {
            Some((peer, port)) => {
                let p = peer - 2000;
                let pkt = packet(src, [10, 97, (p / 250) as u8, (p % 250 + 1) as u8], port);
                Some(measure(&mut dp, &pkt, repeat)?)
            }
            None => None,
        };

        // Visibility mode, no matching rule (a new install's default state):
        // every packet of the flow is a would-be deny.
        let (vis_map, vis_ids) = spec_in(n, EnforcementMode::Visibility);
        dp.program(&Desired::build(&vis_map, &vis_ids)?)?;
        let vis_est = measure(&mut dp, &denied, repeat)?;
        dp.program(&full)?;

        println!("\n# Bulkhead datapath benchmark: {n} rules ({} policy-map entries), {repeat} runs per figure\n", full.policy.len());
        println!(
            "{:<52} {:>14} {:>14} {:>16}",
            "per packet (bh_from_endpoint)", "test_run ns", "bpf_stats ns", "events/packet"
        );
        let row = |name: &str, r: &Run| {
            println!(
                "{:<52} {:>14.1} {:>14.1} {:>16.6}",
                name, r.test_run_ns, r.stats_ns, r.events_per_packet
            )
        };
        row("baseline: not a local endpoint, 0 rules", &base_out);
        row(&format!("not a local endpoint, {n} rules"), &out);
        row("baseline: new flow, denied by default, 0 rules", &base_deny);
        row(
            &format!("new flow, policy walk + deny event, {n} rules"),
            &deny,
        );
        if let Some(e) = &est {
            row(&format!("established flow (conntrack hit), {n} rules"), e);
        }
        row(
            &format!("visibility, established would-be deny, {n} rules"),
            &vis_est,
        );
        println!();
        println!("{:<52} {:>14} {:>14}", "programming", "time", "map writes");
        rows.push((
            "build Desired (validate + flatten), 0 rules".into(),
            format!("{t_build_empty:.2?}"),
            "-".into(),
        ));
        rows.push((
            format!("build Desired (validate + flatten), {n} rules"),
            format!("{t_build_full:.2?}"),
            "-".into(),
        ));
        rows.push((
            "baseline: program 0 rules into empty maps".into(),
            format!("{t_prog_empty:.2?}"),
            "-".into(),
        ));
        rows.push((
            format!("program {n} rules into the maps (from 0)"),
            format!("{t_prog_full:.2?}"),
            stats_full.policy.touched().to_string(),
        ));
        rows.push((
            format!("program {n} rules again (no change: diff only)"),
            format!("{t_prog_again:.2?}"),
            stats_again.policy.touched().to_string(),
        ));
        rows.push((
            "program with one rule removed (diff)".into(),
            format!("{t_prog_less:.2?}"),
            stats_less.policy.touched().to_string(),
        ));
        for (a, b, c) in rows {
            println!("{a:<52} {b:>14} {c:>14}");
        }
        let counts: BTreeMap<_, _> = dp.counters()?.into_iter().filter(|(_, v)| *v > 0).collect();
        println!("\ncounters: {counts:?}");
        dp.detach_all()?;
        Ok(())
    })();
    std::fs::write(stats_path, stats_before.trim()).ok();
    std::fs::remove_dir_all(&pin_root).ok();
    result
}
