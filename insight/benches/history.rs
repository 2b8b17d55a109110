//! `recommend` and `what-if` over the store benchmark's history: 2,000
//! workloads, five peers each (10,000 edges), 400 days of day-tier records
//! (an edge is active on half of the days, as in collector/benches/store.rs),
//! about two million records. A harness, not criterion: one run is seconds.
//!
//! Baseline, in the same run: the top-talkers group-by (`aggregate` by
//! source.app, destination.app, port), one pass over the same records.
//! Peak memory is the process's peak RSS (VmHWM, reset before each step)
//! above the resident size with the history loaded.
//!
//!   cargo bench -p bulkhead-insight --bench history
//!
//! Env: `BENCH_WORKLOADS` (2000), `BENCH_DAYS` (400), `BENCH_RUNS` (3).

#[path = "common/history.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use bulkhead_api::flow::FlowRecord;
use bulkhead_insight::recommend::{recommend, Layer, RecommendOptions};
use bulkhead_insight::whatif::{what_if, Draft, WhatIfOptions};
use bulkhead_insight::{aggregate, GroupBy};
use bulkhead_policy::snapshot::Snapshot;
use bulkhead_policy::CompileOptions;
use common::{active, edge, PEERS};
use jiff::{SignedDuration, Timestamp};

const NOW: &str = "2026-06-15T00:00:00Z";
fn env_u(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn history(workloads: u32, days: i64, now: Timestamp) -> Vec<FlowRecord> {
    let day = SignedDuration::from_hours(24);
    let edges: Vec<FlowRecord> = (0..workloads * PEERS).map(|i| edge(i, workloads)).collect();
    let mut out = Vec::new();
    for k in 0..days {
        let start = now - day * (days - k) as i32;
        for (i, e) in edges.iter().enumerate() {
            if active(i as i64, k, 500) {
                let mut r = e.clone();
                r.start = start;
                r.end = start + day;
                r.flows = 1 + (i as u64 + k as u64) % 5;
                r.packets = r.flows * 10;
                r.bytes = r.packets * 100;
                out.push(r);
            }
        }
    }
    out
}

/// Peak and current resident size in KiB, from /proc/self/status.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets the peak RSS to the current one (Linux: clear_refs 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Row {
    what: String,
    median_s: f64,
    min_s: f64,
    peak_mib: f64,
}

fn measure<T>(
    what: &str,
    runs: usize,
    mut f: impl FnMut() -> T,
    check: impl Fn(&T) -> String,
) -> (Row, String) {
    let mut times = Vec::new();
    let mut peak = 0u64;
    let mut note = String::new();
    for _ in 0..runs {
        reset_peak();
        let (_, before) = rss();
        let t = Instant::now();
        let out = f();
        times.push(t.elapsed().as_secs_f64());
        let (hwm, _) = rss();
        peak = peak.max(hwm.saturating_sub(before));
        note = check(&out);
        drop(out);
    }
    times.sort_by(f64::total_cmp);
    (
        Row {
            what: what.to_string(),
            median_s: times[times.len() / 2],
            min_s: times[0],
            peak_mib: peak as f64 / 1024.0,
        },
        note,
    )
}

fn main() {
    let workloads = env_u("BENCH_WORKLOADS", 2000) as u32;
    let days = env_u("BENCH_DAYS", 400) as i64;
    let runs = env_u("BENCH_RUNS", 3) as usize;
    let now: Timestamp = NOW.parse().expect("now");
    let since = now - SignedDuration::from_hours(24 * days);
    let t = Instant::now();
    let records = history(workloads, days, now);
    let (_, loaded) = rss();
    println!(
        "history: {} workloads, {} days, {} records, generated in {:.1} s, {:.0} MiB resident",
        workloads,
        days,
        records.len(),
        t.elapsed().as_secs_f64(),
        loaded as f64 / 1024.0
    );
    let mut rows = Vec::new();
    let mut notes = Vec::new();

    let group = GroupBy::parse("source.app,destination.app,port").expect("group-by");
    let (row, note) = measure(
        "baseline: top talkers (aggregate by app pair and port)",
        runs,
        || aggregate(records.iter(), &group),
        |g| format!("{} groups", g.len()),
    );
    rows.push(row);
    notes.push(note);

    for layer in [Layer::Env, Layer::App, Layer::Role] {
        let options = RecommendOptions::new(layer, since, now);
        let (row, note) = measure(
            &format!("recommend --layer {}", layer.as_str()),
            runs,
            || recommend(&records, &options).expect("recommends"),
            |r| {
                let rules: usize = r
                    .policies
                    .iter()
                    .map(|p| p.spec.ingress.len() + p.spec.egress.len())
                    .sum();
                format!("{} policies, {rules} rules", r.policies.len())
            },
        );
        rows.push(row);
        notes.push(note);
    }

    // Today: the role-layer recommendation; the draft: the same, enforced,
    // minus one policy deleted, judged as enforced.
    let role =
        recommend(&records, &RecommendOptions::new(Layer::Role, since, now)).expect("recommends");
    let mut today = Snapshot::default();
    for p in &role.policies {
        today.policies.insert(p.name.clone(), p.spec.clone());
    }
    let mut policies: BTreeMap<_, _> = role
        .policies
        .iter()
        .skip(1)
        .map(|p| (p.name.clone(), p.spec.clone()))
        .collect();
    // And one policy loses its first ingress rule.
    if let Some(spec) = policies.values_mut().find(|s| !s.ingress.is_empty()) {
        spec.ingress.remove(0);
    }
    let draft = Draft {
        policies,
        network_policies: BTreeMap::new(),
        delete: vec![role.policies[0].name.clone()],
    };
    let options = WhatIfOptions {
        since,
        until: now,
        as_enforced: true,
        compile: CompileOptions::default(),
    };
    let (row, note) = measure(
        &format!(
            "what-if --as-enforced ({} policies, 1 deleted, 1 rule removed)",
            role.policies.len()
        ),
        runs,
        || what_if(&today, &draft, &records, &options).expect("replays"),
        |w| {
            format!(
                "{} records, {} newly denied, {} newly allowed",
                w.records,
                w.newly_denied.len(),
                w.newly_allowed.len()
            )
        },
    );
    rows.push(row);
    notes.push(note);

    println!(
        "\n| what | median (s) | min (s) | peak memory above the loaded history (MiB) | result |"
    );
    println!("|---|---:|---:|---:|---|");
    for (r, n) in rows.iter().zip(&notes) {
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {} |",
            r.what, r.median_s, r.min_s, r.peak_mib, n
        );
    }
}
