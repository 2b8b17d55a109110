//! Promotion gates: whether a policy's endpoints may move to a stricter mode,
//! judged from the flow history alone (no I/O: the operator asks the
//! collector and hands the answer in).
//!
//! ```text
//!  spec.promotion ──Gate::parse──► Gate {to, observedFor, quietFor}
//!                                     │ window(created, now) = [max(now - quietFor, created), now)
//!  collector: would-deny records ─────┤
//!  in that window (or why not)        ▼
//!                  decide(gate, scope, created, now, answer) ─► Decision
//!                      Observing │ Blocked │ Unknown │ Open, opensAt, lastWouldDeny
//! ```
//!
//! A record holds the gate shut when its *local* side (the endpoint whose
//! node reported it: the source of an egress record, the destination of an
//! ingress one) is in scope, the datapath let it through, and the promoted
//! mode would not: any would-deny for `full`, an explicit deny rule's for
//! `selective`. The other side's verdict is its own policies' business.

use std::collections::BTreeMap;

use bulkhead_api::flow::{FlowEndpoint, FlowReason, FlowRecord, FlowVerdict};
use bulkhead_api::policy::{EnforcementMode, Protocol, Scope};
use bulkhead_api::promotion::{Promotion, WouldDenySample};
use bulkhead_api::rule_map::Direction;
use jiff::{SignedDuration, Timestamp};

use crate::query::params::duration;

/// A gate that cannot be evaluated as written, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromotionError {
    #[error("promotion.after.{field}: {value:?} is not a duration like 35d, 12h or 20s")]
    Duration { field: &'static str, value: String },
    #[error("promotion.after.quietFor: {0:?} is not longer than zero")]
    EmptyQuiet(String),
    #[error("promotion.to: visibility enforces nothing; use selective or full")]
    Target,
}

/// A parsed `spec.promotion`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    pub to: EnforcementMode,
    pub observed_for: SignedDuration,
    pub quiet_for: SignedDuration,
}

/// Where a gate stands after one look at the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateState {
    /// The policy has not been in effect for `observedFor` yet.
    Observing,
    /// A flow in scope was would-be denied inside the quiet window.
    Blocked,
    /// The history could not be read completely: nothing may be promoted.
    Unknown,
    /// Long enough, and quiet: promote.
    Open,
}

/// What the collector said, or why it said nothing.
#[derive(Clone, Copy, Debug)]
pub enum Answer<'a> {
    Records {
        /// Would-deny records in [`Gate::window`].
        records: &'a [FlowRecord],
        /// False when the answer stopped at its limit: more may exist.
        complete: bool,
        /// `(node, records lost)` the collector reports for the window.
        lost: &'a [(String, u64)],
    },
    Unavailable(&'a str),
}

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub state: GateState,
    /// The earliest time the gate can open if nothing else is would-be
    /// denied; `None` when the history could not be read.
    pub opens_at: Option<Timestamp>,
    /// The latest record that holds the gate shut.
    pub last_would_deny: Option<WouldDenySample>,
    pub message: String,
}

impl Gate {
    pub fn parse(p: &Promotion) -> Result<Self, PromotionError> {
        let parse = |field: &'static str, value: &str| {
            duration(value).ok_or_else(|| PromotionError::Duration {
                field,
                value: value.to_string(),
            })
        };
        let observed_for = parse("observedFor", &p.after.observed_for)?;
        let quiet_for = parse("quietFor", &p.after.quiet_for)?;
        if quiet_for <= SignedDuration::ZERO {
            return Err(PromotionError::EmptyQuiet(p.after.quiet_for.clone()));
        }
        if p.to == EnforcementMode::Visibility {
            return Err(PromotionError::Target);
        }
        Ok(Gate {
            to: p.to,
            observed_for,
            quiet_for,
        })
    }

    /// The records a check needs: would-denies since the quiet window
    /// began, but none from before the policy existed (they were judged
    /// under other rules). `since < until` always holds.
    pub fn window(&self, effective_since: Timestamp, now: Timestamp) -> (Timestamp, Timestamp) {
        let quiet_start = now.checked_sub(self.quiet_for).unwrap_or(Timestamp::MIN);
        let since = quiet_start.max(effective_since);
        let since = if since < now {
            since
        } else {
            now.checked_sub(SignedDuration::from_secs(1)).unwrap_or(now)
        };
        (since, now)
    }

    /// Where to start asking the collector for a window that starts at
    /// `since`: the stores answer in buckets (a minute, an hour or a day
    /// wide, by age) and return a bucket when its *start* is in range, so a
    /// flow inside the window can sit in a bucket that starts before it.
    /// Asking from one coarse bucket earlier and keeping the records that
    /// end inside the window ([`overlaps`]) misses none.
    pub fn query_since(&self, since: Timestamp) -> Timestamp {
        let slack = if self.quiet_for <= SignedDuration::from_hours(1) {
            SignedDuration::from_hours(1)
        } else {
            SignedDuration::from_hours(24)
        };
        since.checked_sub(slack).unwrap_or(since)
    }

    /// Whether the promoted mode drops `r` while its local side is in `scope`:
    /// what a promotion would break (before) or breaks (after).
    pub fn denied_when_promoted(&self, scope: &Scope, r: &FlowRecord) -> bool {
        let in_scope = scope.cluster_wide
            || scope
                .selector
                .as_ref()
                .is_some_and(|s| !s.is_empty() && s.matches(&local(r).labels));
        let denied = match self.to {
            EnforcementMode::Full => r.would_verdict == FlowVerdict::Deny,
            // Selective enforces explicit denies only, not the default.
            EnforcementMode::Selective => {
                r.would_verdict == FlowVerdict::Deny && r.reason == FlowReason::Policy
            }
            EnforcementMode::Visibility => false,
        };
        in_scope && denied
    }

    /// Whether `r` holds the gate shut: let through now, dropped once promoted.
    pub fn holds_shut(&self, scope: &Scope, r: &FlowRecord) -> bool {
        r.verdict == FlowVerdict::Allow && self.denied_when_promoted(scope, r)
    }
}

/// Whether a record's window reaches into `[since, ..)`.
pub fn overlaps(r: &FlowRecord, since: Timestamp) -> bool {
    r.end > since
}

/// `visibility`, `selective`, `full`, as in the spec.
pub fn mode_name(m: EnforcementMode) -> &'static str {
    match m {
        EnforcementMode::Visibility => "visibility",
        EnforcementMode::Selective => "selective",
        EnforcementMode::Full => "full",
    }
}

/// The endpoint whose node reported the record (its verdict is that endpoint's).
fn local(r: &FlowRecord) -> &FlowEndpoint {
    match r.direction {
        Direction::Egress => &r.source,
        Direction::Ingress => &r.destination,
    }
}

fn side_name(e: &FlowEndpoint) -> String {
    e.name.clone().unwrap_or_else(|| e.address.to_string())
}

/// The latest of `records` that `pick` selects, with the flows of its edge.
pub fn latest(
    records: &[FlowRecord],
    pick: impl Fn(&FlowRecord) -> bool,
) -> Option<WouldDenySample> {
    type Edge = (String, String, u16, Protocol);
    let mut edges: BTreeMap<Edge, u64> = BTreeMap::new();
    let mut last: Option<&FlowRecord> = None;
    for r in records.iter().filter(|r| pick(r)) {
        let edge = (
            side_name(&r.source),
            side_name(&r.destination),
            r.port,
            r.protocol,
        );
        let flows = edges.entry(edge).or_default();
        *flows = flows.saturating_add(r.flows);
        if last.is_none_or(|l| r.end > l.end) {
            last = Some(r);
        }
    }
    let r = last?;
    let edge = (
        side_name(&r.source),
        side_name(&r.destination),
        r.port,
        r.protocol,
    );
    Some(WouldDenySample {
        seen: r.end.to_string(),
        flows: edges.get(&edge).copied().unwrap_or_default(),
        from: edge.0,
        to: edge.1,
        port: r.port,
        protocol: r.protocol,
    })
}

/// Decides a gate from one answer. Nothing opens on an incomplete history.
pub fn decide(
    gate: &Gate,
    scope: &Scope,
    effective_since: Timestamp,
    now: Timestamp,
    answer: Answer<'_>,
) -> Decision {
    let observed_at = effective_since
        .checked_add(gate.observed_for)
        .unwrap_or(Timestamp::MAX);
    let (records, complete, lost) = match answer {
        Answer::Unavailable(why) => {
            return Decision {
                state: GateState::Unknown,
                opens_at: None,
                last_would_deny: None,
                message: format!(
                    "the collector cannot answer ({why}); nothing is promoted until it does"
                ),
            }
        }
        Answer::Records {
            records,
            complete,
            lost,
        } => (records, complete, lost),
    };
    let since = gate.window(effective_since, now).0;
    let holds = |r: &FlowRecord| overlaps(r, since) && gate.holds_shut(scope, r);
    if let Some(sample) = latest(records, holds) {
        let seen: Timestamp = sample.seen.parse().unwrap_or(now);
        let quiet_at = seen.checked_add(gate.quiet_for).unwrap_or(Timestamp::MAX);
        let opens_at = observed_at.max(quiet_at);
        let message = format!(
            "{} flows from {} to {} on {}/{} would be denied in {} mode, the last at {}; \
             the gate opens at {opens_at} at the earliest",
            sample.flows,
            sample.from,
            sample.to,
            crate::query::protocol_name(sample.protocol),
            sample.port,
            mode_name(gate.to),
            sample.seen
        );
        return Decision {
            state: GateState::Blocked,
            opens_at: Some(opens_at),
            last_would_deny: Some(sample),
            message,
        };
    }
    let incomplete = if !complete {
        Some(format!(
            "the collector's answer stopped at its limit ({} records)",
            records.len()
        ))
    } else if !lost.is_empty() {
        let nodes: Vec<String> = lost.iter().map(|(n, c)| format!("{c} on {n}")).collect();
        Some(format!(
            "records were lost in the quiet window ({})",
            nodes.join(", ")
        ))
    } else {
        None
    };
    if let Some(why) = incomplete {
        return Decision {
            state: GateState::Unknown,
            opens_at: None,
            last_would_deny: None,
            message: format!("{why}: would-be denies may be missing, so nothing is promoted"),
        };
    }
    if now < observed_at {
        return Decision {
            state: GateState::Observing,
            opens_at: Some(observed_at),
            last_would_deny: None,
            message: format!(
                "observed since {effective_since}, quiet so far; the gate opens at {observed_at}"
            ),
        };
    }
    Decision {
        state: GateState::Open,
        opens_at: Some(observed_at.max(effective_since)),
        last_would_deny: None,
        message: format!(
            "in effect since {effective_since} and nothing in scope would be denied in {} mode since {since}",
            mode_name(gate.to),
        ),
    }
}

#[cfg(test)]
mod tests;
