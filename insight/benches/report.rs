//! Report benchmark (a harness that prints a table): `report::build` over the
//! store benchmark's generated history (insight/benches/common/history.rs: 2,000
//! workloads, 10,000 edges, one record per active edge and day, as the
//! collector's day tier holds them), for a 30-day and the full 400-day
//! window, against a compiled 2,000-pod cluster with 100 policies.
//!
//! Baseline in the same run: `insight::aggregate` by source.app,destination.app
//! over the same records (the top-talkers group-by the collector already
//! answers). Figures: median of 3 runs after a warm-up; peak memory is the
//! process's high-water mark (VmHWM) after each step.
//!
//! `cargo bench -p bulkhead-insight --bench report` (BENCH_WORKLOADS to change the size).

#[path = "common/history.rs"]
mod history;

use std::time::Instant;

use bulkhead_api::flow::FlowRecord;
use bulkhead_api::{LabelMappingSpec, SegmentationPolicySpec};
use bulkhead_insight::exposure::{exposure, ExposureOptions};
use bulkhead_insight::report::{self, ReportOptions, Window};
use bulkhead_insight::unlabeled::unlabeled_endpoints;
use bulkhead_insight::{aggregate, GroupBy};
use bulkhead_policy::snapshot::{Namespace, Node, Pod, PodKey};
use bulkhead_policy::{compile, CompileOptions, IdentityAllocation, Output, Snapshot};
use history::{active, counters, edge, workload, PEERS};
use jiff::{SignedDuration, Timestamp};

const NOW: &str = "2026-06-15T00:00:00Z";
/// Per mille of (edge, day) pairs active: the store benchmark's day tier.
const DAY_RATE: i64 = 500;

fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// This process's user + system CPU time in ms (`/proc/self/stat`, 100 ticks
/// a second): on a shared machine it says what a step costs when the wall
/// clock also counts other programs' turns.
fn cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks * 10.0)
        })
        .unwrap_or(f64::NAN)
}

fn cluster(workloads: u32) -> Output {
    let mut s = Snapshot::default();
    for n in 0..50 {
        s.nodes.insert(
            format!("node{n}"),
            Node {
                addresses: vec![format!("172.16.{n}.1").parse().expect("ip")],
                ..Node::default()
            },
        );
    }
    for w in 0..workloads {
        let e = workload(w);
        let ns = e.namespace.clone().expect("namespace");
        s.namespaces
            .entry(ns.clone())
            .or_insert_with(Namespace::default);
        let name = e
            .name
            .as_deref()
            .and_then(|n| n.split('/').nth(1))
            .expect("name");
        s.pods.insert(
            PodKey::new(ns, name),
            Pod {
                labels: e.labels.clone(),
                node: Some(format!("node{}", w % 50)),
                addresses: vec![e.address],
                ..Pod::default()
            },
        );
    }
    let mapping: LabelMappingSpec = serde_yaml::from_str(
        "rules:\n- match: {pods: {}}\n  copyLabels: [{key: app, fromLabel: app}, {key: env, fromLabel: env}, {key: role, fromLabel: role}]\n",
    )
    .expect("mapping");
    s.mappings.insert("labels".into(), mapping);
    for i in 0..100 {
        let mode = ["full", "selective", "visibility"][i % 3];
        let yaml = format!(
            "scope: {{selector: {{matchLabels: {{app: app{i}}}}}}}\nenforcement: {mode}\ningress:\n\
             - {{name: from-prod, action: allow, peers: [{{selector: {{matchLabels: {{env: prod}}}}}}], ports: [{{protocol: TCP, port: 443}}, {{protocol: TCP, port: 8000, endPort: 8100}}]}}\n\
             - {{name: no-dev-db, action: deny, peers: [{{selector: {{matchLabels: {{env: dev}}}}}}], ports: [{{protocol: TCP, port: 5432}}]}}\n\
             - {{name: never-ssh, action: overrideDeny, peers: [{{selector: {{matchLabels: {{role: role{}}}}}}}], ports: [{{protocol: TCP, port: 22}}]}}\n",
            i % 20
        );
        let spec: SegmentationPolicySpec = serde_yaml::from_str(&yaml).expect("policy");
        s.policies.insert(format!("p{i}"), spec);
    }
    compile(
        &s,
        &CompileOptions::default(),
        &IdentityAllocation::default(),
    )
}

fn history(workloads: u32, now: Timestamp, days: i64) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    let today = now.as_second().div_euclid(86_400);
    for i in 0..workloads * PEERS {
        let template = edge(i, workloads);
        for k in today - days..today {
            if !active(i64::from(i), k, DAY_RATE) {
                continue;
            }
            let (flows, packets, bytes) = counters(i64::from(i), k);
            let mut r = template.clone();
            r.start = Timestamp::from_second(k * 86_400).expect("time");
            r.end = Timestamp::from_second((k + 1) * 86_400).expect("time");
            r.flows = flows as u64;
            r.packets = packets as u64;
            r.bytes = bytes as u64;
            out.push(r);
        }
    }
    out
}

/// Median wall time and median CPU time of `runs` runs after a warm-up.
fn median_ms(runs: usize, mut f: impl FnMut() -> usize) -> (String, usize) {
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    let mut n = 0;
    for run in 0..=runs {
        let (t, c) = (Instant::now(), cpu_ms());
        n = f();
        if run > 0 {
            wall.push(t.elapsed().as_secs_f64() * 1000.0);
            cpu.push(cpu_ms() - c);
        }
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let figure = format!(
        "{:.0} ms (CPU {:.0} ms)",
        wall[wall.len() / 2],
        cpu[cpu.len() / 2]
    );
    (figure, n)
}

fn main() {
    let workloads: u32 = std::env::var("BENCH_WORKLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let now: Timestamp = NOW.parse().expect("now");
    let mut rows: Vec<(String, String, String)> = Vec::new();

    let t = Instant::now();
    let out = cluster(workloads);
    rows.push((
        "compile the cluster (setup)".into(),
        format!("{:.0} ms", t.elapsed().as_secs_f64() * 1000.0),
        format!("{:.0} MiB", peak_mib()),
    ));
    let (ms, sources) = median_ms(3, || {
        exposure(&out, &ExposureOptions::default()).sources as usize
    });
    rows.push((
        format!(
            "exposure alone: {} endpoints × {sources} sources, all ports + 11 risky",
            out.endpoints.len()
        ),
        ms,
        format!("{:.0} MiB", peak_mib()),
    ));
    let unlabeled = unlabeled_endpoints(&out);
    let by = GroupBy::parse("source.app,destination.app").expect("group-by");
    for days in [30, 400] {
        let t = Instant::now();
        let records = history(workloads, now, days);
        let gen_ms = t.elapsed().as_secs_f64() * 1000.0;
        let after_records = peak_mib();
        rows.push((
            format!("{days} d: generate {} records (setup)", records.len()),
            format!("{gen_ms:.0} ms"),
            format!("{after_records:.0} MiB"),
        ));
        let (ms, groups) = median_ms(3, || aggregate(&records, &by).len());
        rows.push((
            format!(
                "{days} d: baseline, aggregate by source.app,destination.app ({groups} groups)"
            ),
            ms,
            format!("{:.0} MiB", peak_mib()),
        ));
        let window = Window {
            since: now - SignedDuration::from_hours(24 * days),
            until: now,
        };
        let mut html_bytes = 0;
        let (ms, _) = median_ms(3, || {
            let r = report::build(
                &records,
                &out,
                &unlabeled,
                window.clone(),
                &ReportOptions::default(),
            );
            let html = report::html::render(&r);
            let json = serde_json::to_string(&r).expect("json");
            html_bytes = html.len();
            json.len()
        });
        rows.push((
            format!(
                "{days} d: report (build + HTML + JSON; page {} KiB)",
                html_bytes / 1024
            ),
            ms,
            format!("{:.0} MiB", peak_mib()),
        ));
    }
    println!("Report benchmark: {workloads} workloads, {} edges, {} endpoints compiled, history at {NOW}", workloads * PEERS, out.endpoints.len());
    println!();
    println!("| step | median time | peak memory (VmHWM so far) |");
    println!("|---|---|---|");
    for (what, time, mem) in rows {
        println!("| {what} | {time} | {mem} |");
    }
}
