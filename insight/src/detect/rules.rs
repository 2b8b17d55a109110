//! The per-edge detections: first flow into a sensitive workload, untrusted
//! traffic into full enforcement, lateral movement on risky ports.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::flow::{FlowEndpoint, FlowRecord, FlowVerdict};
use bulkhead_api::identity::{FIRST_ALLOCATED, UNLABELED, WORLD};
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::Direction;
use jiff::{SignedDuration, Timestamp};

use super::alert::{stable_id, Alert, AlertEndpoint, DetectorKind, Severity, ALERT_SCHEMA};
use super::bucket;

/// Workloads that carry any of `labels` (key, value) are sensitive: the
/// first flow ever from a given source into one raises an alert. Empty: off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SensitiveConfig {
    pub labels: Vec<(String, String)>,
}

/// `world` or `unlabeled` into a workload in `full` mode: `min_flows`
/// connections from one source to one destination port within `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UntrustedConfig {
    pub enabled: bool,
    pub window: SignedDuration,
    pub min_flows: u64,
}

impl Default for UntrustedConfig {
    fn default() -> Self {
        UntrustedConfig {
            enabled: true,
            window: SignedDuration::from_mins(5),
            min_flows: 1,
        }
    }
}

/// TCP to one of `ports` between endpoints whose `app_key` labels differ:
/// `min_flows` connections within `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateralConfig {
    pub enabled: bool,
    pub ports: Vec<u16>,
    pub app_key: String,
    pub window: SignedDuration,
    pub min_flows: u64,
}

/// SSH, RDP, SMB, WinRM over HTTP and HTTPS.
pub const RISKY_PORTS: [u16; 5] = [22, 3389, 445, 5985, 5986];

impl Default for LateralConfig {
    fn default() -> Self {
        LateralConfig {
            enabled: true,
            ports: RISKY_PORTS.to_vec(),
            app_key: "app".into(),
            window: SignedDuration::from_mins(5),
            min_flows: 1,
        }
    }
}

/// Who a source is for "first ever": its label set when it has one (a new
/// pod of the same app is not a new source), else its address.
fn principal(e: &FlowEndpoint) -> String {
    if e.identity >= FIRST_ALLOCATED && !e.labels.is_empty() {
        let labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.join(",")
    } else {
        e.address.to_string()
    }
}

fn target(e: &FlowEndpoint) -> String {
    e.name.clone().unwrap_or_else(|| e.address.to_string())
}

fn alert(
    kind: DetectorKind,
    id_parts: &[&str],
    severity: Severity,
    summary: String,
    r: &FlowRecord,
    start: Timestamp,
    flows: u64,
) -> Alert {
    Alert {
        schema: ALERT_SCHEMA.into(),
        id: stable_id(kind, id_parts),
        detector: kind,
        severity,
        summary,
        start,
        end: r.end,
        node: r.node.clone(),
        source: AlertEndpoint::from(&r.source),
        destination: Some(AlertEndpoint::from(&r.destination)),
        protocol: r.protocol,
        ports: vec![r.port],
        destinations: 1,
        flows,
        verdict: r.verdict,
    }
}

#[derive(Debug)]
pub(super) struct Sensitive {
    config: SensitiveConfig,
    seen: BTreeSet<String>,
}

impl Sensitive {
    pub(super) fn new(config: SensitiveConfig) -> Self {
        Sensitive {
            config,
            seen: BTreeSet::new(),
        }
    }

    /// The edge key when the destination is sensitive.
    fn key(&self, r: &FlowRecord) -> Option<(String, &(String, String))> {
        let label = self
            .config
            .labels
            .iter()
            .find(|(k, v)| r.destination.labels.get(k) == Some(v))?;
        let key = format!(
            "{}|{}|{:?}/{}",
            principal(&r.source),
            target(&r.destination),
            r.protocol,
            r.port
        );
        Some((key, label))
    }

    pub(super) fn learn(&mut self, r: &FlowRecord) {
        if let Some((key, _)) = self.key(r) {
            self.seen.insert(key);
        }
    }

    pub(super) fn observe(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let Some((key, (k, v))) = self.key(r) else {
            return;
        };
        if self.seen.contains(&key) {
            return;
        }
        let summary = format!(
            "first flow ever from {} to {} ({k}={v}) on {:?}/{}",
            principal(&r.source),
            target(&r.destination),
            r.protocol,
            r.port
        );
        let a = alert(
            DetectorKind::FirstSensitiveFlow,
            &[&key],
            Severity::Medium,
            summary,
            r,
            r.start,
            r.flows,
        );
        self.seen.insert(key);
        out.push(a);
    }
}

/// Connections per (edge key, window), and whether the window fired.
#[derive(Debug)]
struct Windowed {
    window_secs: i64,
    min_flows: u64,
    counts: BTreeMap<(String, i64), (u64, Timestamp, bool)>,
}

impl Windowed {
    fn new(window: SignedDuration, min_flows: u64) -> Self {
        Windowed {
            window_secs: window.as_secs().max(1),
            min_flows,
            counts: BTreeMap::new(),
        }
    }

    /// Adds the record; `Some((window start, flows))` the first time the
    /// window reaches the threshold.
    fn add(&mut self, key: String, r: &FlowRecord) -> Option<(i64, u64)> {
        let start = bucket(r.start, self.window_secs);
        let (flows, end, fired) = self.counts.entry((key, start)).or_insert((0, r.end, false));
        *flows += r.flows;
        *end = (*end).max(r.end);
        if *fired || *flows < self.min_flows {
            return None;
        }
        *fired = true;
        Some((start, *flows))
    }

    fn prune(&mut self, cutoff: Timestamp) {
        self.counts.retain(|_, (_, end, _)| *end >= cutoff);
    }
}

fn window_start(secs: i64, fallback: Timestamp) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(fallback)
}

#[derive(Debug)]
pub(super) struct Untrusted {
    enabled: bool,
    counts: Windowed,
}

impl Untrusted {
    pub(super) fn new(config: UntrustedConfig) -> Self {
        Untrusted {
            enabled: config.enabled,
            counts: Windowed::new(config.window, config.min_flows),
        }
    }

    pub(super) fn observe(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        // The destination's own record: its mode is the one that matters.
        let untrusted = matches!(r.source.identity, WORLD | UNLABELED);
        if !self.enabled
            || !untrusted
            || r.direction != Direction::Ingress
            || r.mode != EnforcementMode::Full
        {
            return;
        }
        let key = format!(
            "{}|{}|{:?}/{}|{:?}",
            r.source.address,
            target(&r.destination),
            r.protocol,
            r.port,
            r.verdict
        );
        let Some((start, flows)) = self.counts.add(key.clone(), r) else {
            return;
        };
        let who = if r.source.identity == WORLD {
            "world"
        } else {
            "unlabeled"
        };
        let (severity, what) = match r.verdict {
            FlowVerdict::Allow => (Severity::High, "reached"),
            FlowVerdict::Deny => (Severity::Low, "was refused by"),
        };
        let summary = format!(
            "{who} source {} {what} full-mode {} on {:?}/{} ({flows} connections)",
            r.source.address,
            target(&r.destination),
            r.protocol,
            r.port
        );
        out.push(alert(
            DetectorKind::UntrustedIntoFull,
            &[&key, &start.to_string()],
            severity,
            summary,
            r,
            window_start(start, r.start),
            flows,
        ));
    }

    pub(super) fn prune(&mut self, cutoff: Timestamp) {
        self.counts.prune(cutoff);
    }
}

#[derive(Debug)]
pub(super) struct Lateral {
    config: LateralConfig,
    counts: Windowed,
}

impl Lateral {
    pub(super) fn new(config: LateralConfig) -> Self {
        let counts = Windowed::new(config.window, config.min_flows);
        Lateral { config, counts }
    }

    pub(super) fn observe(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        if !self.config.enabled
            || !r.counts()
            || r.protocol != Protocol::Tcp
            || !self.config.ports.contains(&r.port)
        {
            return;
        }
        let key_of = &self.config.app_key;
        let (Some(from), Some(to)) = (
            r.source.labels.get(key_of),
            r.destination.labels.get(key_of),
        ) else {
            return;
        };
        if from == to {
            return;
        }
        let key = format!(
            "{}|{}|{}|{:?}",
            r.source.address, r.destination.address, r.port, r.verdict
        );
        let Some((start, flows)) = self.counts.add(key.clone(), r) else {
            return;
        };
        let severity = match r.verdict {
            FlowVerdict::Allow => Severity::High,
            FlowVerdict::Deny => Severity::Medium,
        };
        let summary = format!(
            "{key_of}={from} ({}) opened TCP/{} to {key_of}={to} ({}), {:?}",
            target(&r.source),
            r.port,
            target(&r.destination),
            r.verdict
        );
        out.push(alert(
            DetectorKind::LateralMovement,
            &[&key, &start.to_string()],
            severity,
            summary,
            r,
            window_start(start, r.start),
            flows,
        ));
    }

    pub(super) fn prune(&mut self, cutoff: Timestamp) {
        self.counts.prune(cutoff);
    }
}
