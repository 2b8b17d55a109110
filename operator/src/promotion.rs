//! Promotion gates at the edge: ask the collector, let
//! `bulkhead_insight::promotion` decide, and turn the decision into the
//! effective mode the compiler reads, a status, an Event and metrics.
//!
//! ```text
//!  SegmentationPolicy (watch) ─► created, status.promotion (a promotion survives restarts)
//!  spec.promotion ─► Gate ─► collector: would-deny records in the quiet window
//!                              │ (or deny records, once promoted: the alert)
//!                              ▼
//!                 decide ─► Open: Change::SetEffectiveMode(policy, to), Event "Promoted"
//!                           else: status says why; nothing changes
//! ```
//!
//! The operator never writes spec. Once promoted, a policy stays promoted
//! until a person removes `spec.promotion` or changes its `to`: flows the
//! promotion denies afterwards raise `bulkhead_operator_promoted_denied_flows`.

use std::collections::BTreeMap;
use std::time::Duration;

use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::promotion::{PromotionState, PromotionStatus};
use bulkhead_api::{SegmentationPolicy, SegmentationPolicySpec};
use bulkhead_insight::promotion::{self as gate, Answer, Gate, GateState};
use bulkhead_policy::Change;
use futures::future::join_all;
use jiff::Timestamp;

use crate::collector::{Class, Collector, Records};
use crate::metrics::{Metrics, PolicyLabel};

/// What the watch tells about a policy besides its spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyMeta {
    /// `metadata.creationTimestamp`: when the policy took effect.
    pub created: Option<Timestamp>,
    /// A promotion recorded in its status (by this or an earlier leader).
    pub promoted: Option<Promoted>,
}

/// A promotion that happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promoted {
    pub mode: EnforcementMode,
    pub at: Timestamp,
}

impl PolicyMeta {
    /// Reads what the gates need from a policy object.
    pub fn of(obj: &SegmentationPolicy) -> Self {
        let promoted = obj
            .status
            .as_ref()
            .and_then(|s| s.promotion.as_ref())
            .filter(|p| p.state == PromotionState::Promoted)
            .and_then(|p| {
                let at = p.promoted_at.as_deref()?.parse().ok()?;
                Some(Promoted { mode: p.to, at })
            });
        PolicyMeta {
            created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            promoted,
        }
    }
}

/// A promotion made by one check, for its Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    pub policy: String,
    pub message: String,
}

/// Every gate's state between checks.
#[derive(Debug)]
pub struct Promotions {
    collector: Option<Collector>,
    /// How often gates are checked.
    pub interval: Duration,
    meta: BTreeMap<String, PolicyMeta>,
    statuses: BTreeMap<String, PromotionStatus>,
}

impl Promotions {
    /// Gates that ask `collector` every `interval`; without a collector every
    /// gate stays shut and says so.
    pub fn new(collector: Option<Collector>, interval: Duration) -> Self {
        Promotions {
            collector,
            interval,
            meta: BTreeMap::new(),
            statuses: BTreeMap::new(),
        }
    }

    /// Takes in what the watch saw. A promotion the status records is
    /// adopted; a status without one never undoes a promotion (it may be an
    /// event older than the promotion's own status write).
    pub fn observe(&mut self, policy: &str, seen: PolicyMeta) {
        let known = self.meta.entry(policy.to_string()).or_default();
        known.created = seen.created.or(known.created);
        if known.promoted.is_none() {
            known.promoted = seen.promoted;
        }
    }

    /// Forgets a deleted policy.
    pub fn forget(&mut self, policy: &str, metrics: &Metrics) {
        self.meta.remove(policy);
        self.statuses.remove(policy);
        metrics.promoted_denied_flows.remove(&PolicyLabel {
            policy: policy.to_string(),
        });
    }

    /// The changes that bring the compiler's effective modes in line with
    /// the promotions: a promotion holds while `spec.promotion.to` names its
    /// mode; removing `promotion` or changing `to` is how a person demotes.
    pub fn mode_changes(
        &mut self,
        policies: &BTreeMap<String, SegmentationPolicySpec>,
        effective: &BTreeMap<String, EnforcementMode>,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        for (name, meta) in &mut self.meta {
            let to = policies
                .get(name)
                .and_then(|p| p.promotion.as_ref())
                .map(|p| p.to);
            if meta.promoted.is_some_and(|p| Some(p.mode) != to) {
                meta.promoted = None;
                self.statuses.remove(name);
            }
        }
        let wanted: BTreeMap<&String, EnforcementMode> = self
            .meta
            .iter()
            .filter(|(name, _)| policies.contains_key(*name))
            .filter_map(|(name, m)| m.promoted.map(|p| (name, p.mode)))
            .collect();
        for (name, mode) in &wanted {
            if effective.get(*name) != Some(mode) {
                changes.push(Change::SetEffectiveMode((*name).clone(), Some(*mode)));
            }
        }
        for name in effective.keys() {
            if !wanted.contains_key(name) {
                changes.push(Change::SetEffectiveMode(name.clone(), None));
            }
        }
        for name in policies
            .iter()
            .filter(|(_, p)| p.promotion.is_none())
            .map(|(n, _)| n)
        {
            self.statuses.remove(name);
        }
        changes
    }

    /// The gate's status for a policy's status, when it has a gate.
    pub fn status(&self, policy: &str) -> Option<&PromotionStatus> {
        self.statuses.get(policy)
    }

    /// Checks every gate once at `now`; returns the promotions it made
    /// (the effective modes follow from [`Self::mode_changes`]).
    pub async fn check(
        &mut self,
        policies: &BTreeMap<String, SegmentationPolicySpec>,
        now: Timestamp,
        metrics: &Metrics,
    ) -> Vec<Promotion> {
        let mut plans = Vec::new();
        for (name, spec) in policies {
            let Some(promotion) = &spec.promotion else {
                continue;
            };
            let meta = self.meta.entry(name.clone()).or_default();
            let created = *meta.created.get_or_insert(now);
            let plan = match Gate::parse(promotion) {
                Err(e) => Plan::Invalid(promotion.to, e.to_string()),
                Ok(g) => {
                    let quiet_start = g.window(created, now).0;
                    match meta.promoted.filter(|p| p.mode == g.to) {
                        Some(p) => Plan::Watch(g, p, created, p.at.max(quiet_start)),
                        None => Plan::Gate(g, created, quiet_start),
                    }
                }
            };
            plans.push((name, spec, plan));
        }
        let collector = self.collector.as_ref();
        let answers = join_all(plans.iter().map(|(_, _, plan)| async move {
            let (class, since) = match plan {
                Plan::Invalid(..) => return Err("not asked".to_string()),
                Plan::Gate(_, _, since) => (Class::WouldDeny, *since),
                Plan::Watch(_, _, _, since) => (Class::Deny, *since),
            };
            match collector {
                None => Err("the operator has no --collector-url".to_string()),
                Some(_) if since >= now => Ok(Records {
                    complete: true,
                    ..Records::default()
                }),
                Some(c) => {
                    c.records(class, gate_of(plan).query_since(since), now)
                        .await
                }
            }
        }))
        .await;
        let mut made = Vec::new();
        for ((name, spec, plan), answer) in plans.into_iter().zip(answers) {
            let status = match plan {
                Plan::Invalid(to, message) => {
                    metrics.promotion_check("invalid");
                    PromotionStatus {
                        state: PromotionState::Invalid,
                        to,
                        message,
                        ..PromotionStatus::default()
                    }
                }
                Plan::Gate(g, created, _) => {
                    let decision = gate::decide(&g, &spec.scope, created, now, to_answer(&answer));
                    if decision.state == GateState::Open {
                        metrics.promotion_check("open");
                        metrics.promotions.inc();
                        let message = format!(
                            "promoted to {}: {}",
                            gate::mode_name(g.to),
                            decision.message
                        );
                        if let Some(meta) = self.meta.get_mut(name) {
                            meta.promoted = Some(Promoted {
                                mode: g.to,
                                at: now,
                            });
                        }
                        made.push(Promotion {
                            policy: name.clone(),
                            message,
                        });
                        // What later quiet checks say too, so they write nothing.
                        let p = Promoted {
                            mode: g.to,
                            at: now,
                        };
                        PromotionStatus {
                            state: PromotionState::Promoted,
                            to: g.to,
                            observing_since: Some(created.to_string()),
                            promoted_at: Some(now.to_string()),
                            message: quiet_since(g, p),
                            ..PromotionStatus::default()
                        }
                    } else {
                        metrics.promotion_check(state_name(decision.state));
                        PromotionStatus {
                            state: match decision.state {
                                GateState::Observing => PromotionState::Observing,
                                GateState::Blocked => PromotionState::Blocked,
                                _ => PromotionState::Unknown,
                            },
                            to: g.to,
                            observing_since: Some(created.to_string()),
                            opens_at: decision.opens_at.map(|t| t.to_string()),
                            last_would_deny: decision.last_would_deny,
                            promoted_at: None,
                            message: decision.message,
                        }
                    }
                }
                Plan::Watch(g, p, created, since) => {
                    metrics.promotion_check("promoted");
                    let before = self.statuses.get(name);
                    watch_status(
                        name,
                        &spec.scope,
                        g,
                        p,
                        created,
                        since,
                        answer,
                        before,
                        metrics,
                    )
                }
            };
            self.statuses.insert(name.clone(), status);
        }
        made
    }
}

/// What one check does for one policy.
enum Plan {
    /// The gate does not parse: nothing to ask.
    Invalid(EnforcementMode, String),
    /// Not promoted: would-denies since the quiet window began.
    Gate(Gate, Timestamp, Timestamp),
    /// Promoted: what the promotion denied since.
    Watch(Gate, Promoted, Timestamp, Timestamp),
}

fn gate_of(plan: &Plan) -> Gate {
    match plan {
        Plan::Gate(g, ..) | Plan::Watch(g, ..) => *g,
        // Never asked about; any gate will do.
        Plan::Invalid(..) => Gate {
            to: EnforcementMode::Full,
            observed_for: jiff::SignedDuration::ZERO,
            quiet_for: jiff::SignedDuration::from_secs(1),
        },
    }
}

fn to_answer(answer: &Result<Records, String>) -> Answer<'_> {
    match answer {
        Ok(r) => Answer::Records {
            records: &r.records,
            complete: r.complete,
            lost: &r.lost,
        },
        Err(why) => Answer::Unavailable(why),
    }
}

fn state_name(state: GateState) -> &'static str {
    match state {
        GateState::Observing => "observing",
        GateState::Blocked => "blocked",
        GateState::Unknown => "unknown",
        GateState::Open => "open",
    }
}

/// A promoted policy's message while nothing in scope is denied.
fn quiet_since(g: Gate, p: Promoted) -> String {
    format!(
        "promoted to {} at {}; nothing in scope denied since (within the last {})",
        gate::mode_name(p.mode),
        p.at,
        g.quiet_for
    )
}

/// A promoted policy's status: what it denied since, as an alert.
#[allow(clippy::too_many_arguments)]
fn watch_status(
    name: &str,
    scope: &bulkhead_api::policy::Scope,
    g: Gate,
    p: Promoted,
    created: Timestamp,
    since: Timestamp,
    answer: Result<Records, String>,
    before: Option<&PromotionStatus>,
    metrics: &Metrics,
) -> PromotionStatus {
    let mode = gate::mode_name(p.mode);
    let (last, message) = match answer {
        Ok(r) => {
            let denied = |x: &bulkhead_api::flow::FlowRecord| {
                gate::overlaps(x, since) && g.denied_when_promoted(scope, x)
            };
            let flows: u64 = r.records.iter().filter(|x| denied(x)).map(|x| x.flows).sum();
            let label = PolicyLabel {
                policy: name.to_string(),
            };
            metrics
                .promoted_denied_flows
                .get_or_create(&label)
                .set(i64::try_from(flows).unwrap_or(i64::MAX));
            let last = gate::latest(&r.records, denied);
            let message = match &last {
                None => quiet_since(g, p),
                Some(s) => format!(
                    "promoted to {mode} at {}; {flows} flows in scope denied since (within the last {}), the last \
                     from {} to {} on {}/{} (an alert only: demotion is a person's change)",
                    p.at,
                    g.quiet_for,
                    s.from,
                    s.to,
                    bulkhead_insight::query::protocol_name(s.protocol),
                    s.port
                ),
            };
            (last, message)
        }
        Err(why) => (
            before.and_then(|b| b.last_would_deny.clone()),
            format!(
                "promoted to {mode} at {}; the collector cannot answer ({why}), so what it denied since is unknown",
                p.at
            ),
        ),
    };
    PromotionStatus {
        state: PromotionState::Promoted,
        to: p.mode,
        observing_since: Some(created.to_string()),
        opens_at: None,
        last_would_deny: last,
        promoted_at: Some(p.at.to_string()),
        message,
    }
}
