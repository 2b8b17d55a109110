//! What the agent spends per flow between the ring buffer and an exported
//! batch, on one core: events aggregated per edge (ephemeral port dropped),
//! named by the resolver, and serialized as the flow/v1 JSON the spool and
//! the collector take. Beside it, in the same run, the baseline: reading
//! every event once, the least any consumer does. The ring-buffer read
//! itself (a syscall-free mmap copy) is not in either figure.
//!
//! `cargo bench -p bulkhead-agent --bench flow_export [-- FLOWS]` (default
//! 100,000 new flows over 2,000 edges). Prints a table; asserts nothing.

use std::time::{Duration, Instant};

use bulkhead_agent::flows::aggregate::{EVENT_NEW, EVENT_REPORT};
use bulkhead_agent::flows::{FlowAggregator, Resolver};
use bulkhead_agent::layout::{self, FlowEvent};
use bulkhead_api::flow::FlowBatch;
use bulkhead_api::identity_map::{IdentityEntry, PrefixEntry};
use bulkhead_api::rule_map::{LocalEndpoint, NodeKind, NodeRuleMapSpec};
use bulkhead_api::IdentityMapSpec;

const PODS: u32 = 200;
const EDGES: u32 = 2_000;

fn world() -> (NodeRuleMapSpec, Vec<IdentityMapSpec>) {
    let pod = |i: u32| format!("10.98.{}.{}", i / 250, i % 250 + 1);
    let rule_map = NodeRuleMapSpec {
        node_kind: NodeKind::Node,
        host: LocalEndpoint {
            name: "bench-node".into(),
            addresses: vec!["10.99.0.1".into()],
            identity: 500,
            mode: bulkhead_api::policy::EnforcementMode::Full,
        },
        endpoints: (0..PODS / 2)
            .map(|i| LocalEndpoint {
                name: format!("ns-{}/pod-{i}", i % 10),
                addresses: vec![pod(i)],
                identity: 1000 + i,
                mode: bulkhead_api::policy::EnforcementMode::Visibility,
            })
            .collect(),
        rules: vec![],
        failsafe_ports: vec![],
    };
    let shard = IdentityMapSpec {
        shard: 0,
        shards: 1,
        identities: (0..PODS)
            .map(|i| IdentityEntry {
                id: 1000 + i,
                labels: [
                    ("app".to_string(), format!("app-{}", i % 20)),
                    (
                        "env".to_string(),
                        if i % 2 == 0 { "prod" } else { "dev" }.into(),
                    ),
                ]
                .into_iter()
                .collect(),
            })
            .collect(),
        prefixes: (0..PODS)
            .map(|i| PrefixEntry {
                cidr: format!("{}/32", pod(i)),
                identity: 1000 + i,
                owner: Some(format!("ns-{}/pod-{i}", i % 10)),
            })
            .collect(),
        ..IdentityMapSpec::default()
    };
    (rule_map, vec![shard])
}

/// `flows` new flows over `EDGES` edges, each followed by one report.
fn events(flows: u32) -> Vec<FlowEvent> {
    let mut out = Vec::with_capacity(2 * flows as usize);
    for f in 0..flows {
        let edge = f % EDGES;
        let (src, dst) = (
            edge % (PODS / 2),
            PODS / 2 + edge / (EDGES / (PODS / 2)) % (PODS / 2),
        );
        let mut e = FlowEvent {
            timestamp_ns: u64::from(f) * 1_000,
            packets: 1,
            bytes: 74,
            flow_ns: u64::from(f) * 1_000,
            local_identity: 1000 + src,
            peer_identity: 1000 + dst,
            sport_be: (32_768 + (f / EDGES) as u16).to_be(),
            dport_be: 8080u16.to_be(),
            family: layout::FAMILY_V4,
            protocol: 6,
            direction: layout::DIR_EGRESS,
            event: EVENT_NEW,
            verdict: layout::VERDICT_ALLOW,
            would_verdict: layout::VERDICT_DENY,
            mode: layout::MODE_VISIBILITY,
            reason: 1,
            ..FlowEvent::default()
        };
        e.saddr[..4].copy_from_slice(&[10, 98, (src / 250) as u8, (src % 250 + 1) as u8]);
        e.daddr[..4].copy_from_slice(&[10, 98, (dst / 250) as u8, (dst % 250 + 1) as u8]);
        out.push(e);
        e.event = EVENT_REPORT;
        e.packets = 12;
        e.bytes = 4_000;
        out.push(e);
    }
    out
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        last = Some(v);
    }
    (best, last.expect("at least one run"))
}

fn main() {
    let flows: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let (rule_map, shards) = world();
    let resolver = Resolver::new("bench-node", &rule_map, &shards);
    let evs = events(flows);
    let (base, n) = best_of(5, || {
        evs.iter()
            .map(|e| std::hint::black_box(*e))
            .filter(|e| e.event != 0)
            .count()
    });
    assert_eq!(n, evs.len());
    let (pipeline, out) = best_of(5, || {
        let mut agg = FlowAggregator::default();
        for e in &evs {
            agg.add(std::hint::black_box(e));
        }
        let t = jiff::Timestamp::now();
        let records: Vec<_> = agg
            .drain(u64::MAX)
            .iter()
            .filter_map(|(edge, counts)| resolver.record(edge, counts, t, t))
            .collect();
        let batch = FlowBatch {
            node: "bench-node".into(),
            batch_id: "bench".into(),
            records,
            losses: vec![],
        };
        let json = serde_json::to_vec(&batch).expect("serialize");
        (batch.records.len(), json.len())
    });
    let per_flow = |d: Duration| d.as_nanos() as f64 / f64::from(flows);
    println!("flow export, one core: {flows} new flows (+1 report each) over {EDGES} edges");
    println!("| step | time | per flow | flows/s | CPU per 1k flows | one core at 10k flows/s |");
    println!("|---|---|---|---|---|---|");
    for (name, d) in [
        ("baseline: copy events out", base),
        ("aggregate + name + flow/v1 JSON", pipeline),
    ] {
        let ns = per_flow(d);
        println!(
            "| {name} | {:.1} ms | {ns:.0} ns | {:.0} | {:.1} µs | {:.2} % |",
            d.as_secs_f64() * 1e3,
            1e9 / ns,
            ns,
            ns * 10_000.0 / 1e9 * 100.0
        );
    }
    println!("records: {}, batch JSON: {} bytes", out.0, out.1);
}
