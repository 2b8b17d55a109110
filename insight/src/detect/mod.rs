//! Suspicious connectivity detection over flow records: pure, incremental,
//! fed batch by batch by the collector (or a whole history at once by a test).
//!
//! ```text
//!   seed(history) ──► first-ever edges already known (no alerts)
//!   observe(batch) ─┬─► scan        one source, ≥ hosts denied destinations, or ≥ ports
//!                   │               denied ports on one destination, in one window
//!                   ├─► sensitive   first flow ever from a source into a workload with a
//!                   │               sensitive label (e.g. data=pci)
//!                   ├─► untrusted   world / unlabeled into a full-mode workload, ≥ min flows
//!                   │               in a window
//!                   └─► lateral     SSH, RDP, SMB, WinRM between two different apps, ≥ min
//!                                   flows in a window
//!                          │
//!                          ▼
//!              Alert (alert/v1) with a stable id; an id is returned once
//! ```
//!
//! Windows are fixed and aligned on the Unix epoch, so the same facts land in
//! the same window whichever batch carries them, and the id (detector, key,
//! window start) is the same after a collector restart.

mod alert;
mod rules;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use bulkhead_api::flow::FlowRecord;
use jiff::{SignedDuration, Timestamp};

pub use alert::{Alert, AlertEndpoint, DetectorKind, Severity, ALERT_SCHEMA};
pub use rules::{LateralConfig, SensitiveConfig, UntrustedConfig, RISKY_PORTS};
pub use scan::ScanConfig;

use crate::InsightError;

/// Every detection's threshold. `Default` is what the collector runs with
/// unless told otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DetectConfig {
    pub scan: ScanConfig,
    pub sensitive: SensitiveConfig,
    pub untrusted: UntrustedConfig,
    pub lateral: LateralConfig,
}

/// The detections and what they remember between batches.
#[derive(Debug)]
pub struct Detector {
    scan: scan::Scan,
    sensitive: rules::Sensitive,
    untrusted: rules::Untrusted,
    lateral: rules::Lateral,
    /// Ids returned, with the end of their last record: a late record for a
    /// pruned window must not raise the same alert again.
    emitted: BTreeMap<String, Timestamp>,
    /// The newest record end seen; state older than `horizon` before it is
    /// dropped, and records older than that are ignored.
    newest: Option<Timestamp>,
    horizon: SignedDuration,
}

fn positive(name: &str, d: SignedDuration) -> Result<i64, InsightError> {
    let secs = d.as_secs();
    if secs <= 0 {
        return Err(InsightError::Argument {
            name: name.into(),
            input: format!("{d:#}"),
            reason: "must be at least one second".into(),
        });
    }
    Ok(secs)
}

fn at_least_one(name: &str, n: u64) -> Result<(), InsightError> {
    if n == 0 {
        return Err(InsightError::Argument {
            name: name.into(),
            input: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}

/// The start (seconds since the epoch) of the window holding `t`.
pub(crate) fn bucket(t: Timestamp, window_secs: i64) -> i64 {
    t.as_second().div_euclid(window_secs) * window_secs
}

impl Detector {
    pub fn new(config: DetectConfig) -> Result<Self, InsightError> {
        let windows = [
            positive("scan window", config.scan.window)?,
            positive("untrusted window", config.untrusted.window)?,
            positive("lateral window", config.lateral.window)?,
        ];
        at_least_one("scan hosts", config.scan.hosts as u64)?;
        at_least_one("scan ports", config.scan.ports as u64)?;
        at_least_one("untrusted min flows", config.untrusted.min_flows)?;
        at_least_one("lateral min flows", config.lateral.min_flows)?;
        // Two windows back: a node's batch can arrive a window late.
        let widest = windows.into_iter().max().unwrap_or(60);
        Ok(Detector {
            scan: scan::Scan::new(config.scan),
            sensitive: rules::Sensitive::new(config.sensitive),
            untrusted: rules::Untrusted::new(config.untrusted),
            lateral: rules::Lateral::new(config.lateral),
            emitted: BTreeMap::new(),
            newest: None,
            horizon: SignedDuration::from_secs(widest * 2),
        })
    }

    /// Learns the edges into sensitive workloads that history already holds,
    /// so a restart does not call them first-ever. Raises nothing.
    pub fn seed<'a>(&mut self, history: impl IntoIterator<Item = &'a FlowRecord>) {
        for r in history {
            self.sensitive.learn(r);
        }
    }

    /// Runs every detection over a batch; returns alerts whose id was never
    /// returned before, in record order.
    pub fn observe<'a>(&mut self, records: impl IntoIterator<Item = &'a FlowRecord>) -> Vec<Alert> {
        let mut raised = Vec::new();
        for r in records {
            if self.newest.is_some_and(|n| r.end < n - self.horizon) {
                continue; // too late: its window's state is gone
            }
            self.scan.observe(r, &mut raised);
            self.sensitive.observe(r, &mut raised);
            self.untrusted.observe(r, &mut raised);
            self.lateral.observe(r, &mut raised);
            if self.newest.is_none_or(|n| r.end > n) {
                self.newest = Some(r.end);
            }
        }
        let mut fresh = Vec::new();
        for a in raised {
            if self.emitted.contains_key(&a.id) {
                continue;
            }
            self.emitted.insert(a.id.clone(), a.end);
            fresh.push(a);
        }
        if let Some(newest) = self.newest {
            let cutoff = newest - self.horizon;
            self.scan.prune(cutoff);
            self.untrusted.prune(cutoff);
            self.lateral.prune(cutoff);
            // Ids outlive their windows by one more horizon, then go.
            let forget = cutoff - self.horizon;
            self.emitted.retain(|_, end| *end >= forget);
        }
        fresh
    }
}
