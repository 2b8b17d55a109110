//! Port and host scans: one source, many denied (or, in visibility mode,
//! would-be denied) destinations or ports in one window.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use jiff::{SignedDuration, Timestamp};

use super::alert::{stable_id, Alert, AlertEndpoint, DetectorKind, Severity, ALERT_SCHEMA};
use super::bucket;

/// A scan is `hosts` distinct denied destination addresses, or `ports`
/// distinct denied ports on one destination, from one source address within
/// one `window`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanConfig {
    pub enabled: bool,
    pub window: SignedDuration,
    pub hosts: usize,
    pub ports: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            enabled: true,
            window: SignedDuration::from_mins(5),
            hosts: 20,
            ports: 20,
        }
    }
}

#[derive(Debug)]
struct Window {
    first: FlowRecord,
    end: Timestamp,
    ports: BTreeMap<IpAddr, BTreeSet<u16>>,
    flows: u64,
    fired: bool,
}

#[derive(Debug)]
pub(super) struct Scan {
    config: ScanConfig,
    window_secs: i64,
    windows: BTreeMap<(IpAddr, i64), Window>,
}

const LISTED_PORTS: usize = 32;

impl Scan {
    pub(super) fn new(config: ScanConfig) -> Self {
        let window_secs = config.window.as_secs().max(1);
        Scan {
            config,
            window_secs,
            windows: BTreeMap::new(),
        }
    }

    pub(super) fn observe(&mut self, r: &FlowRecord, out: &mut Vec<Alert>) {
        let denied = r.verdict == FlowVerdict::Deny || r.would_verdict == FlowVerdict::Deny;
        if !self.config.enabled || !denied {
            return;
        }
        let start = bucket(r.start, self.window_secs);
        let w = self
            .windows
            .entry((r.source.address, start))
            .or_insert_with(|| Window {
                first: r.clone(),
                end: r.end,
                ports: BTreeMap::new(),
                flows: 0,
                fired: false,
            });
        w.ports
            .entry(r.destination.address)
            .or_default()
            .insert(r.port);
        w.end = w.end.max(r.end);
        if r.counts() {
            w.flows += r.flows;
        }
        if w.fired {
            return;
        }
        let hosts = w.ports.len();
        let widest = w.ports.iter().max_by_key(|(_, p)| p.len());
        let port_scan = widest.filter(|(_, p)| p.len() >= self.config.ports);
        if hosts < self.config.hosts && port_scan.is_none() {
            return;
        }
        w.fired = true;
        let all_ports: BTreeSet<u16> = w.ports.values().flatten().copied().collect();
        let (summary, destination) = match port_scan {
            Some((dst, ports)) if hosts < self.config.hosts => (
                format!(
                    "{} probed {} denied ports on {dst} within {:#}",
                    r.source.address,
                    ports.len(),
                    self.config.window
                ),
                Some(if w.first.destination.address == *dst {
                    AlertEndpoint::from(&w.first.destination)
                } else {
                    AlertEndpoint::from(&r.destination)
                }),
            ),
            _ => (
                format!(
                    "{} reached {hosts} denied destinations within {:#}",
                    r.source.address, self.config.window
                ),
                None,
            ),
        };
        let window_start = Timestamp::from_second(start).unwrap_or(r.start);
        out.push(Alert {
            schema: ALERT_SCHEMA.into(),
            id: stable_id(
                DetectorKind::Scan,
                &[&r.source.address.to_string(), &start.to_string()],
            ),
            detector: DetectorKind::Scan,
            severity: Severity::High,
            summary,
            start: window_start,
            end: w.end,
            node: w.first.node.clone(),
            source: AlertEndpoint::from(&w.first.source),
            destination,
            protocol: w.first.protocol,
            ports: all_ports.into_iter().take(LISTED_PORTS).collect(),
            destinations: u32::try_from(hosts).unwrap_or(u32::MAX),
            flows: w.flows.max(1),
            verdict: FlowVerdict::Deny,
        });
    }

    pub(super) fn prune(&mut self, cutoff: Timestamp) {
        self.windows.retain(|_, w| w.end >= cutoff);
    }
}
