//! `recommend` on 120 days of history generated from a known ground-truth
//! policy (see ground_truth/mod.rs): every observed flow is allowed, nothing
//! the truth denies is, the monthly batch and the quarterly DR test are
//! `periodic`, and each layer's agreement with the truth is measured.

mod ground_truth;

use std::collections::BTreeSet;
use std::net::IpAddr;

use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::SegmentationPolicySpec;
use bulkhead_insight::recommend::{recommend, Layer, RecommendOptions, Recommendation};
use bulkhead_insight::whatif::{what_if, Draft, WhatIfOptions};
use bulkhead_policy::snapshot::Snapshot;
use bulkhead_policy::{compile, CompileOptions, FlowEnd, FlowQuery, IdentityAllocation, Verdict};
use ground_truth::{cluster, day, edges, history, truth, workloads, Dest, DAYS};

type Cell = (String, String, Protocol, u16);

fn options(layer: Layer) -> RecommendOptions {
    RecommendOptions::new(layer, day(0), day(DAYS))
}

/// The policies as they would be enforced (full mode).
fn enforced(rec: &Recommendation) -> std::collections::BTreeMap<String, SegmentationPolicySpec> {
    rec.policies
        .iter()
        .map(|p| {
            let mut spec = p.spec.clone();
            spec.enforcement = Some(EnforcementMode::Full);
            (p.name.clone(), spec)
        })
        .collect()
}

/// Every (client pod, server, protocol, port) the policies let through, over
/// every workload pair and the world addresses and ports that matter.
fn allowed_cells(
    policies: std::collections::BTreeMap<String, SegmentationPolicySpec>,
) -> BTreeSet<Cell> {
    let mut snapshot: Snapshot = cluster();
    snapshot.policies = policies;
    let out = compile(
        &snapshot,
        &CompileOptions::default(),
        &IdentityAllocation::default(),
    );
    let ports: [u16; 11] = [8080, 5432, 8443, 443, 21, 40017, 50000, 5433, 22, 53, 80];
    let worlds: [IpAddr; 3] =
        ["203.0.113.15", "203.0.113.99", "198.51.100.7"].map(|a| a.parse().expect("address"));
    let mut dests: Vec<(String, FlowEnd)> = workloads()
        .iter()
        .map(|w| (w.pod().to_string(), FlowEnd::Pod(w.pod())))
        .collect();
    dests.extend(worlds.iter().map(|a| (a.to_string(), FlowEnd::Address(*a))));
    let mut cells = BTreeSet::new();
    for src in workloads() {
        for (name, dst) in &dests {
            for port in ports {
                let q = FlowQuery {
                    from: FlowEnd::Pod(src.pod()),
                    to: dst.clone(),
                    protocol: Protocol::Tcp,
                    port,
                };
                let v = bulkhead_policy::simulate(&out, &q).expect("both ends exist");
                if v.verdict == Verdict::Allow && *name != src.pod().to_string() {
                    cells.insert((src.pod().to_string(), name.clone(), Protocol::Tcp, port));
                }
            }
        }
    }
    cells
}

fn observed() -> BTreeSet<Cell> {
    history()
        .iter()
        .map(|r| {
            let to = match r.destination.kind {
                bulkhead_api::flow::EndpointKind::World => r.destination.address.to_string(),
                _ => r.destination.name.clone().expect("pods are named"),
            };
            (
                r.source.name.clone().expect("named"),
                to,
                r.protocol,
                r.port,
            )
        })
        .collect()
}

/// A cell seen at a layer's grain: the layer's labels of both ends (world
/// addresses as their /24), and the port only at `role`.
fn project(cells: &BTreeSet<Cell>, layer: Layer) -> BTreeSet<Cell> {
    let labels: std::collections::BTreeMap<String, String> = workloads()
        .iter()
        .map(|w| {
            let l = w.labels();
            let cut: Vec<&str> = layer
                .keys()
                .iter()
                .filter_map(|k| l.get(*k).map(String::as_str))
                .collect();
            (w.pod().to_string(), cut.join("/"))
        })
        .collect();
    let grain = |end: &str| {
        labels.get(end).cloned().unwrap_or_else(|| {
            let a: IpAddr = end.parse().expect("a world address");
            ipnet::IpNet::new(a, 24)
                .expect("prefix")
                .trunc()
                .to_string()
        })
    };
    cells
        .iter()
        .map(|(a, b, p, port)| {
            (
                grain(a),
                grain(b),
                *p,
                if layer == Layer::Role { *port } else { 0 },
            )
        })
        .collect()
}

fn jaccard<T: Ord>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> f64 {
    a.intersection(b).count() as f64 / a.union(b).count() as f64
}

#[test]
fn recommendations_allow_what_was_seen_and_agree_with_the_ground_truth() {
    let records = history();
    let truth_cells = allowed_cells(truth());
    let seen = observed();
    let mut out = Vec::new();
    for layer in [Layer::Env, Layer::App, Layer::Role] {
        let rec = recommend(&records, &options(layer)).expect("recommends");
        assert!(rec.warnings.is_empty(), "{layer:?}: {:?}", rec.warnings);
        assert!(rec.unlabeled.is_empty());
        assert!(
            rec.policies
                .iter()
                .all(|p| p.spec.enforcement == Some(EnforcementMode::Visibility)),
            "visibility unless asked otherwise"
        );
        let rules: usize = rec
            .policies
            .iter()
            .map(|p| p.spec.ingress.len() + p.spec.egress.len())
            .sum();
        let cells = allowed_cells(enforced(&rec));
        // Every observed flow (the ephemeral ports and world addresses
        // sampled in `allowed_cells` stand for the ones seen) is allowed,
        // judged on today's pods...
        let sampled_seen: BTreeSet<&Cell> =
            seen.iter().filter(|c| truth_cells.contains(*c)).collect();
        assert!(!sampled_seen.is_empty());
        for c in &sampled_seen {
            assert!(
                cells.contains(*c),
                "{layer:?}: observed {c:?} is not allowed"
            );
        }
        // ... and, through what-if, on every recorded flow by its labels.
        let replay = what_if(
            &Snapshot::default(),
            &Draft {
                policies: enforced(&rec),
                ..Draft::default()
            },
            &records,
            &WhatIfOptions {
                since: day(0),
                until: day(DAYS),
                as_enforced: true,
                compile: CompileOptions::default(),
            },
        )
        .expect("replays");
        assert_eq!(replay.records, records.len());
        assert!(
            replay.newly_denied.is_empty(),
            "{layer:?}: {:?}",
            replay.newly_denied.first()
        );
        let extra = cells.difference(&truth_cells).count();
        let j = jaccard(&project(&cells, layer), &project(&truth_cells, layer));
        let cell_j = jaccard(&cells, &truth_cells);
        out.push(format!(
            "{layer:?}: {} policies, {rules} rules, edge jaccard at the layer's grain {j:.3}; \
             pod-pair-port cells: jaccard {cell_j:.3} ({} allowed, {} by the truth, {extra} beyond it)",
            rec.policies.len(),
            cells.len(),
            truth_cells.len()
        ));
        assert!(j >= 0.95, "{layer:?}: edge jaccard {j}");
        if layer == Layer::Role {
            assert_eq!(extra, 0, "role layer allows nothing the truth denies");
            assert!(cell_j >= 0.95, "role layer cell jaccard {cell_j}");
        }
    }
    for line in &out {
        println!("{line}");
    }
}

#[test]
fn the_monthly_batch_and_the_quarterly_dr_test_are_periodic() {
    let rec = recommend(&history(), &options(Layer::Role)).expect("recommends");
    let periodic: BTreeSet<(String, String)> = rec
        .policies
        .iter()
        .flat_map(|p| {
            p.evidence
                .iter()
                .filter(|(_, e)| e.periodic)
                .map(|(r, _)| (p.name.clone(), r.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("recommended-role-prod-billing-batch", "egress-1-periodic"),
        ("recommended-role-prod-billing-db", "ingress-2-periodic"),
        ("recommended-role-prod-pay-db", "egress-1-periodic"),
        (
            "recommended-role-staging-ledger-dr-replica",
            "ingress-1-periodic",
        ),
    ]
    .iter()
    .map(|(p, r)| (p.to_string(), r.to_string()))
    .collect();
    assert_eq!(periodic, expected);
    let batch = &rec
        .policies
        .iter()
        .find(|p| p.name == "recommended-role-prod-billing-batch")
        .expect("batch")
        .evidence["egress-1-periodic"];
    assert_eq!(batch.days_seen, 4);
    let dr = &rec
        .policies
        .iter()
        .find(|p| p.name == "recommended-role-prod-pay-db")
        .expect("dr")
        .evidence["egress-1-periodic"];
    assert_eq!(
        (dr.days_seen, dr.first_seen),
        (2, day(15) + jiff::SignedDuration::from_hours(1))
    );
    // Daily edges never are.
    assert!(
        edges()
            .iter()
            .filter(|e| e.days.is_none() && matches!(e.to, Dest::Workload(_)))
            .count()
            > 20
    );
}

#[test]
fn the_indexed_judge_agrees_with_simulate_on_every_record() {
    use bulkhead_insight::replay::{HistoryCluster, PolicySet};
    let records = history();
    let cluster = HistoryCluster::new(&cluster(), &records);
    let mut sets = vec![truth()];
    for layer in [Layer::Env, Layer::Role] {
        let rec = recommend(&records, &options(layer)).expect("recommends");
        sets.push(
            rec.policies
                .iter()
                .map(|p| (p.name.clone(), p.spec.clone()))
                .collect(),
        );
        sets.push(enforced(&rec));
    }
    // Selective mode with a deny and an overrideDeny on top of the truth.
    let mut mixed = truth();
    for (i, spec) in mixed.values_mut().enumerate() {
        spec.enforcement = Some(
            [
                EnforcementMode::Selective,
                EnforcementMode::Full,
                EnforcementMode::Visibility,
            ][i % 3],
        );
        if i % 4 == 0 {
            let mut deny = spec
                .ingress
                .first()
                .cloned()
                .unwrap_or_else(|| spec.egress[0].clone());
            deny.action = if i % 8 == 0 {
                bulkhead_api::policy::Action::OverrideDeny
            } else {
                bulkhead_api::policy::Action::Deny
            };
            deny.ports.clear();
            spec.ingress.push(deny);
        }
    }
    sets.push(mixed);
    let mut denied = 0;
    for policies in sets {
        let out = cluster.compile(
            &PolicySet {
                policies,
                ..PolicySet::default()
            },
            &CompileOptions::default(),
        );
        let replay = cluster.judge(&out);
        for r in &records {
            let v = replay.verdict(r);
            assert_eq!(v, replay.simulated(r), "{r:?}");
            denied += usize::from(v == Verdict::Deny);
        }
    }
    assert!(denied > 500, "the sets deny something: {denied}");
}
