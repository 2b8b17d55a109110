//! What a rule rests on.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;

/// The observations behind one rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    /// Connections.
    pub flows: u64,
    /// Start of the first window it was seen in.
    pub first_seen: Timestamp,
    /// End of the last window it was seen in.
    pub last_seen: Timestamp,
    /// Distinct UTC days it was seen on.
    pub days_seen: u32,
    /// Seen on few days of the window: a batch job, a DR test.
    pub periodic: bool,
}

impl Evidence {
    /// The annotation value: `flows=12 firstSeen=… lastSeen=… daysSeen=4 periodic`.
    pub fn annotation(&self) -> String {
        let mut s = format!(
            "flows={} firstSeen={} lastSeen={} daysSeen={}",
            self.flows, self.first_seen, self.last_seen, self.days_seen
        );
        if self.periodic {
            s.push_str(" periodic");
        }
        s
    }
}

/// Evidence being gathered.
#[derive(Clone, Debug, Default)]
pub(super) struct Tally {
    pub(super) flows: u64,
    pub(super) first: Option<Timestamp>,
    pub(super) last: Option<Timestamp>,
    /// UTC days since the epoch.
    pub(super) days: BTreeSet<i64>,
}

impl Tally {
    pub(super) fn add(&mut self, start: Timestamp, end: Timestamp, flows: u64) {
        self.flows += flows;
        self.first = Some(self.first.map_or(start, |f| f.min(start)));
        self.last = Some(self.last.map_or(end, |l| l.max(end)));
        self.days.insert(start.as_second().div_euclid(86_400));
    }

    pub(super) fn merge(&mut self, other: &Tally) {
        self.flows += other.flows;
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, other.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.days.extend(other.days.iter().copied());
    }

    /// Seen on at most `share` of `window_days` (and never on more than a
    /// third of them, however short the window).
    pub(super) fn periodic(&self, window_days: f64, share: f64) -> bool {
        let days = self.days.len() as f64;
        days <= (window_days * share).max(1.0) && days < window_days / 3.0
    }

    pub(super) fn evidence(&self, periodic: bool) -> Evidence {
        Evidence {
            flows: self.flows,
            first_seen: self.first.unwrap_or_default(),
            last_seen: self.last.unwrap_or_default(),
            days_seen: self.days.len() as u32,
            periodic,
        }
    }
}
