//! Enforcement coverage: endpoints and applications in each mode now (from
//! the compiled cluster), and a daily trend (from the modes flow records
//! carried when they were seen).
//!
//! ```text
//!  Output.endpoints (pods, Nodes, ExternalNodes) ─► ModeCounts, % full
//!       grouped by a label key (default app): an application is as enforced
//!       as its least enforced endpoint
//!  records (local side, its mode, per UTC day) ─► DayCoverage[]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use bulkhead_api::flow::FlowRecord;
use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::rule_map::Direction;
use bulkhead_policy::{EndpointRef, Output};
use serde::Serialize;

/// How many are in each mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeCounts {
    pub visibility: u64,
    pub selective: u64,
    pub full: u64,
    pub total: u64,
    /// `100 × full / total`, two decimals.
    pub percent_full: f64,
}

impl ModeCounts {
    fn add(&mut self, mode: EnforcementMode) {
        match mode {
            EnforcementMode::Visibility => self.visibility += 1,
            EnforcementMode::Selective => self.selective += 1,
            EnforcementMode::Full => self.full += 1,
        }
        self.total += 1;
        self.percent_full = percent(self.full, self.total);
    }
}

/// `100 × part / whole`, rounded to two decimals; 0 for an empty whole.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (10_000.0 * part as f64 / whole as f64).round() / 100.0
}

/// One application's mode.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    pub name: String,
    pub endpoints: u64,
    /// Its least enforced endpoint's mode.
    pub mode: EnforcementMode,
    pub endpoints_full: u64,
}

/// Endpoints seen in each mode on one day.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayCoverage {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub endpoints: ModeCounts,
}

/// The whole answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub group_key: String,
    pub endpoints: ModeCounts,
    pub applications: ModeCounts,
    pub by_application: Vec<Application>,
    pub daily: Vec<DayCoverage>,
}

fn rank(mode: EnforcementMode) -> u8 {
    match mode {
        EnforcementMode::Visibility => 0,
        EnforcementMode::Selective => 1,
        EnforcementMode::Full => 2,
    }
}

/// Coverage now (from `out`) and per day (from `records`).
pub fn coverage(out: &Output, records: &[FlowRecord], group_key: &str) -> Coverage {
    let mut endpoints = ModeCounts::default();
    let mut apps: BTreeMap<String, Application> = BTreeMap::new();
    for (r, f) in &out.endpoints {
        if matches!(r, EndpointRef::Cidr(_)) || f.node.is_none() || f.addresses.is_empty() {
            continue;
        }
        endpoints.add(f.mode);
        let Some(name) = f.labels.get(group_key) else {
            continue;
        };
        let app = apps.entry(name.clone()).or_insert_with(|| Application {
            name: name.clone(),
            endpoints: 0,
            mode: f.mode,
            endpoints_full: 0,
        });
        app.endpoints += 1;
        app.endpoints_full += u64::from(f.mode == EnforcementMode::Full);
        if rank(f.mode) < rank(app.mode) {
            app.mode = f.mode;
        }
    }
    let mut applications = ModeCounts::default();
    for a in apps.values() {
        applications.add(a.mode);
    }
    Coverage {
        group_key: group_key.to_string(),
        endpoints,
        applications,
        by_application: apps.into_values().collect(),
        daily: daily(records),
    }
}

/// Per UTC day, each local endpoint (by node and address) in the mode of
/// its last record that day.
pub fn daily(records: &[FlowRecord]) -> Vec<DayCoverage> {
    // UTC day number → (node, local address) → the latest (start, mode) that day
    type Latest = (jiff::Timestamp, EnforcementMode);
    let mut days: BTreeMap<i64, HashMap<(&str, IpAddr), Latest>> = BTreeMap::new();
    for r in records {
        let local = match r.direction {
            Direction::Egress => &r.source,
            Direction::Ingress => &r.destination,
        };
        let day = r.start.as_second().div_euclid(86_400);
        let seen = days.entry(day).or_default();
        let e = seen
            .entry((r.node.as_str(), local.address))
            .or_insert((r.start, r.mode));
        if r.start >= e.0 {
            *e = (r.start, r.mode);
        }
    }
    days.into_iter()
        .map(|(day, seen)| {
            let mut endpoints = ModeCounts::default();
            for (_, mode) in seen.into_values() {
                endpoints.add(mode);
            }
            let day = jiff::Timestamp::from_second(day * 86_400)
                .map(|t| t.strftime("%Y-%m-%d").to_string())
                .unwrap_or_default();
            DayCoverage { day, endpoints }
        })
        .collect()
}
