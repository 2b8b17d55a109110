//! `alert/v1`: what a detection reports, the contract of the collector's
//! syslog, CEF and webhook outputs (`docs/integrations.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use bulkhead_api::flow::{FlowEndpoint, FlowVerdict};
use bulkhead_api::policy::Protocol;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The value of every alert's `schema` field.
pub const ALERT_SCHEMA: &str = "alert/v1";

/// Which detection raised an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DetectorKind {
    /// One source, many denied destinations or ports in a window.
    Scan,
    /// A source never seen before reaches a workload with a sensitive label.
    FirstSensitiveFlow,
    /// `world` or `unlabeled` traffic into a workload in full enforcement.
    UntrustedIntoFull,
    /// SSH, RDP, SMB or WinRM between two different applications.
    LateralMovement,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 4] = [
        DetectorKind::Scan,
        DetectorKind::FirstSensitiveFlow,
        DetectorKind::UntrustedIntoFull,
        DetectorKind::LateralMovement,
    ];

    /// The wire name (`scan`, `firstSensitiveFlow`, ...), also the CEF
    /// signature id and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Scan => "scan",
            DetectorKind::FirstSensitiveFlow => "firstSensitiveFlow",
            DetectorKind::UntrustedIntoFull => "untrustedIntoFull",
            DetectorKind::LateralMovement => "lateralMovement",
        }
    }

    /// A short human title (the CEF `Name`).
    pub fn title(self) -> &'static str {
        match self {
            DetectorKind::Scan => "Port or host scan",
            DetectorKind::FirstSensitiveFlow => "First flow into a sensitive workload",
            DetectorKind::UntrustedIntoFull => "Untrusted traffic into a fully enforced workload",
            DetectorKind::LateralMovement => "Lateral movement on a risky port",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is. The number is the CEF severity (0-10) and maps
/// to a syslog severity (see [`Severity::syslog`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    pub fn cef(self) -> u8 {
        match self {
            Severity::Low => 3,
            Severity::Medium => 6,
            Severity::High => 8,
        }
    }

    /// RFC 5424 severity: notice, warning, error.
    pub fn syslog(self) -> u8 {
        match self {
            Severity::Low => 5,
            Severity::Medium => 4,
            Severity::High => 3,
        }
    }
}

/// One side of an alert: the flow endpoint as the record had it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertEndpoint {
    pub address: IpAddr,
    pub identity: u32,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl From<&FlowEndpoint> for AlertEndpoint {
    fn from(e: &FlowEndpoint) -> Self {
        AlertEndpoint {
            address: e.address,
            identity: e.identity,
            labels: e.labels.clone(),
            name: e.name.clone(),
        }
    }
}

/// One alert. `id` is stable: the same detection over the same facts (the
/// same source in the same window, the same first edge) always yields the
/// same id, so receivers can deduplicate and the collector never sends one
/// id twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Always `alert/v1`.
    pub schema: String,
    pub id: String,
    pub detector: DetectorKind,
    pub severity: Severity,
    /// One sentence for a person.
    pub summary: String,
    /// Start of the window (or of the first record) that raised it.
    pub start: Timestamp,
    /// End of the last record that counted.
    pub end: Timestamp,
    /// The node that reported the deciding record.
    pub node: String,
    pub source: AlertEndpoint,
    /// Absent for scans over several destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<AlertEndpoint>,
    pub protocol: Protocol,
    /// Destination ports involved, ascending (at most 32 listed).
    pub ports: Vec<u16>,
    /// Distinct destination addresses involved.
    pub destinations: u32,
    /// Connections counted.
    pub flows: u64,
    /// The verdict of the deciding record (`deny` for scans).
    pub verdict: FlowVerdict,
}

/// FNV-1a over the parts, separated so `("ab","c")` and `("a","bc")` differ.
/// Hand-rolled on purpose: std's hasher is not stable across releases, and
/// alert ids must survive a collector upgrade.
pub(crate) fn stable_id(kind: DetectorKind, parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(kind.as_str().as_bytes());
    for p in parts {
        eat(&[0x1f]);
        eat(p.as_bytes());
    }
    format!("bh-{}-{h:016x}", kind.as_str())
}
