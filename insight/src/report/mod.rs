//! The report: enforcement coverage, exposure and its reduction, top
//! talkers, denials by application, rules that matched nothing, the
//! unlabeled queue, and a traffic map — one value, rendered as JSON, CSV or
//! a self-contained HTML page.
//!
//! ```text
//!  records in the window ─┬─ talkers::top_talkers ──────────────┐
//!                         ├─ denials / unused rules (this file) ─┤
//!                         ├─ unlabeled::queue ───────────────────┤
//!                         ├─ map::traffic_map ───────────────────┼─► Report ─► json | csv.rs | html/
//!  cluster (Output) ──────┼─ coverage::coverage (+ daily) ───────┤
//!                         └─ exposure::exposure (verdict fn) ────┘
//! ```

pub mod csv;
pub mod html;
pub mod map;

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use bulkhead_api::policy::Protocol;
use bulkhead_api::rule_map::Direction;
use bulkhead_policy::Output;
use serde::Serialize;

use crate::coverage::{coverage, Coverage};
use crate::exposure::{exposure, Exposure, ExposureOptions};
use crate::talkers::{top_talkers, Talker, TalkerKey, TalkersQuery};
use crate::unlabeled::{queue, Entry, EntryKind, UnlabeledEndpoint};
pub use map::TrafficMap;

/// The value of the report's `schema` field.
pub const SCHEMA: &str = "report/v1";

/// What the report covers and how it groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportOptions {
    /// Applications are grouped by this segmentation label.
    pub app_key: String,
    pub risky_ports: Vec<(Protocol, u16)>,
    /// The traffic map's node keys.
    pub map_keys: Vec<String>,
    /// The traffic map clusters its groups by this key.
    pub cluster_key: String,
    /// Rows of top talkers and of the unlabeled queue shown.
    pub limit: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            app_key: "app".into(),
            risky_ports: ExposureOptions::default().risky,
            map_keys: vec!["app".into(), "env".into()],
            cluster_key: "env".into(),
            limit: 10,
        }
    }
}

/// The window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    pub since: jiff::Timestamp,
    pub until: jiff::Timestamp,
}

/// Totals over the window, each flow counted once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub records: u64,
    pub flows: u64,
    pub bytes: u64,
    pub denied_flows: u64,
    pub would_deny_flows: u64,
}

/// Denied and would-be-denied flows of one application (the application
/// whose rules judged them: the reporting node's local side).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Denials {
    pub application: String,
    pub denied_flows: u64,
    pub would_deny_flows: u64,
}

/// A compiled rule, by name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RuleName {
    pub policy: String,
    pub rule: String,
}

/// Policies and rules that matched no flow in the window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unused {
    pub policies: Vec<String>,
    pub rules: Vec<RuleName>,
}

/// The unlabeled queue's size and its head.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlabeledSummary {
    pub total: u64,
    pub endpoints: u64,
    pub addresses: u64,
    pub top: Vec<Entry>,
}

/// The whole report (`report/v1`, see docs/reports.md).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub schema: String,
    pub window: Window,
    pub totals: Totals,
    pub coverage: Coverage,
    pub exposure: Exposure,
    pub top_talkers: Vec<Talker>,
    pub denials: Vec<Denials>,
    pub unused: Unused,
    pub unlabeled: UnlabeledSummary,
    pub traffic_map: TrafficMap,
}

/// Builds the report over `records` (already limited to the window) and
/// the compiled cluster.
pub fn build(
    records: &[FlowRecord],
    cluster: &Output,
    unlabeled: &[UnlabeledEndpoint],
    window: Window,
    opts: &ReportOptions,
) -> Report {
    let talkers = top_talkers(
        records,
        &TalkersQuery {
            by: vec![TalkerKey::Label(opts.app_key.clone())],
            limit: opts.limit,
            ..TalkersQuery::default()
        },
    );
    let q = queue(records, Some(unlabeled));
    let endpoints = q.iter().filter(|e| e.kind != EntryKind::Address).count() as u64;
    Report {
        schema: SCHEMA.into(),
        window,
        totals: totals(records),
        coverage: coverage(cluster, records, &opts.app_key),
        exposure: exposure(
            cluster,
            &ExposureOptions {
                group_key: opts.app_key.clone(),
                risky: opts.risky_ports.clone(),
            },
        ),
        top_talkers: talkers,
        denials: denials(records, &opts.app_key),
        unused: unused(records, cluster),
        unlabeled: UnlabeledSummary {
            total: q.len() as u64,
            endpoints,
            addresses: q.len() as u64 - endpoints,
            top: q.into_iter().take(opts.limit).collect(),
        },
        traffic_map: map::traffic_map(records, &opts.map_keys, &opts.cluster_key),
    }
}

fn totals(records: &[FlowRecord]) -> Totals {
    let mut t = Totals::default();
    for r in records {
        t.records += 1;
        if r.counts() {
            t.flows += r.flows;
            t.bytes += r.bytes;
        }
        // A deny on either side stops the flow; each side's deny is its own record.
        if r.verdict == FlowVerdict::Deny {
            t.denied_flows += r.flows;
        } else if r.would_verdict == FlowVerdict::Deny {
            t.would_deny_flows += r.flows;
        }
    }
    t
}

/// Denied and would-deny flows per application of the judging side, most first.
pub fn denials(records: &[FlowRecord], app_key: &str) -> Vec<Denials> {
    let mut by: BTreeMap<String, Denials> = BTreeMap::new();
    for r in records {
        let denied = r.verdict == FlowVerdict::Deny;
        let would = !denied && r.would_verdict == FlowVerdict::Deny;
        if !denied && !would {
            continue;
        }
        let local = match r.direction {
            Direction::Egress => &r.source,
            Direction::Ingress => &r.destination,
        };
        let app = local
            .labels
            .get(app_key)
            .cloned()
            .unwrap_or_else(|| "(none)".into());
        let d = by.entry(app.clone()).or_insert_with(|| Denials {
            application: app,
            ..Denials::default()
        });
        if denied {
            d.denied_flows += r.flows;
        } else {
            d.would_deny_flows += r.flows;
        }
    }
    let mut v: Vec<Denials> = by.into_values().collect();
    v.sort_by(|a, b| {
        (b.denied_flows + b.would_deny_flows)
            .cmp(&(a.denied_flows + a.would_deny_flows))
            .then_with(|| a.application.cmp(&b.application))
    });
    v
}

/// Compiled rules that no record names, and policies none of whose rules did.
pub fn unused(records: &[FlowRecord], cluster: &Output) -> Unused {
    let hit: BTreeSet<(&str, &str)> = records
        .iter()
        .filter_map(|r| r.rule.as_ref())
        .map(|r| (r.policy.as_str(), r.name.as_str()))
        .collect();
    let compiled: BTreeSet<(&str, &str)> = cluster
        .rule_maps
        .values()
        .flat_map(|m| &m.rules)
        .map(|r| (r.policy.as_str(), r.rule.as_str()))
        .collect();
    let used_policies: BTreeSet<&str> = hit.iter().map(|(p, _)| *p).collect();
    Unused {
        policies: cluster
            .policies
            .keys()
            .filter(|p| !used_policies.contains(p.as_str()))
            .cloned()
            .collect(),
        rules: compiled
            .difference(&hit)
            .map(|(p, r)| RuleName {
                policy: p.to_string(),
                rule: r.to_string(),
            })
            .collect(),
    }
}
