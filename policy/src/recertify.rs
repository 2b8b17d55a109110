//! Recertification: which rules should a person look at again, judged from
//! their hits (`bulkhead_api::hits`), their governance fields and a clock.
//!
//! ```text
//!  SegmentationPolicy.spec (rules, reviewBy, expires) ─┐
//!  SegmentationPolicy.status.ruleHits (hits, lastHit) ─┼─► recertify(…, now, unused_for)
//!  now, the window (--unused-for 90d) ─────────────────┘      └─► one Finding per rule to look at,
//!                                                                 with every reason that holds
//! ```
//!
//! Reasons, per rule:
//! - `never-hit`: no node ever reported a hit of it (absent from `ruleHits`);
//! - `unused`: its last hit is older than the window;
//! - `expired`: its `expires` has passed (it is no longer enforced);
//! - `review-overdue`: its `reviewBy` (its own, else its policy's) has passed.
//!
//! A hit is a decision of the rule (see `bulkhead_api::hits`): a rule that
//! a lower-numbered rule of the same action, or a stronger action, always
//! overrules never gets hits, and is listed as never hit: it can go.

use std::collections::BTreeMap;

use bulkhead_api::hits::RuleHits;
use bulkhead_api::SegmentationPolicySpec;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::governance::{owner_of, review_overdue, rules};

/// Why a rule is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    NeverHit,
    Unused,
    Expired,
    ReviewOverdue,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::NeverHit,
        Reason::Unused,
        Reason::Expired,
        Reason::ReviewOverdue,
    ];

    /// The name in tables, JSON and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NeverHit => "never-hit",
            Reason::Unused => "unused",
            Reason::Expired => "expired",
            Reason::ReviewOverdue => "review-overdue",
        }
    }

    /// The value of the metric's `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::NeverHit => "never_hit",
            Reason::Unused => "unused",
            Reason::Expired => "expired",
            Reason::ReviewOverdue => "review_overdue",
        }
    }
}

/// One rule a person should recertify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub policy: String,
    /// The rule's name, else its path.
    pub rule: String,
    /// `ingress[i]` or `egress[i]`.
    pub path: String,
    pub owner: Option<String>,
    pub contact: Option<String>,
    pub ticket: Option<String>,
    /// The review date in force (the rule's own, else its policy's).
    pub review_by: Option<String>,
    pub expires: Option<String>,
    /// Hits over every node (0 when never hit).
    pub hits: u64,
    pub last_hit: Option<Timestamp>,
    /// Every reason that holds, in [`Reason::ALL`] order; never empty.
    pub reasons: Vec<Reason>,
}

/// One policy, as recertification reads it.
#[derive(Clone, Copy, Debug)]
pub struct PolicyUse<'a> {
    pub name: &'a str,
    pub spec: &'a SegmentationPolicySpec,
    /// `status.ruleHits` (empty when no rule was ever hit).
    pub hits: &'a [RuleHits],
}

/// The rules to recertify at `now`: those never hit, those not hit within
/// `unused_for` before `now`, the expired and the overdue ones; by policy,
/// then in rule order. A `lastHit` that does not parse counts as never hit.
pub fn recertify<'a>(
    policies: impl IntoIterator<Item = PolicyUse<'a>>,
    now: Timestamp,
    unused_for: SignedDuration,
) -> Vec<Finding> {
    let cutoff = now.checked_sub(unused_for).unwrap_or(Timestamp::MIN);
    let mut out = Vec::new();
    let mut policies: Vec<PolicyUse<'a>> = policies.into_iter().collect();
    policies.sort_by_key(|p| p.name);
    for p in policies {
        let by_rule: BTreeMap<&str, &RuleHits> =
            p.hits.iter().map(|h| (h.rule.as_str(), h)).collect();
        for (path, rule) in rules(p.spec) {
            let name = rule.name.clone().unwrap_or_else(|| path.clone());
            let used = by_rule.get(name.as_str());
            let last_hit = used.and_then(|h| h.last_hit.parse::<Timestamp>().ok());
            let ownership = owner_of(p.spec, Some(&name));
            let mut reasons = Vec::new();
            match last_hit {
                None => reasons.push(Reason::NeverHit),
                Some(at) if at < cutoff => reasons.push(Reason::Unused),
                Some(_) => {}
            }
            let expired = rule
                .expires
                .as_deref()
                .and_then(|e| e.parse::<Timestamp>().ok());
            if expired.is_some_and(|at| at <= now) {
                reasons.push(Reason::Expired);
            }
            if ownership
                .review_by
                .as_deref()
                .is_some_and(|d| review_overdue(d, now))
            {
                reasons.push(Reason::ReviewOverdue);
            }
            if reasons.is_empty() {
                continue;
            }
            out.push(Finding {
                policy: p.name.to_string(),
                rule: name,
                path,
                owner: ownership.owner,
                contact: ownership.contact,
                ticket: ownership.ticket,
                review_by: ownership.review_by,
                expires: rule.expires.clone(),
                hits: if last_hit.is_some() {
                    used.map_or(0, |h| h.hits)
                } else {
                    0
                },
                last_hit,
                reasons,
            });
        }
    }
    out
}

/// How many findings hold each reason (every reason present, 0 included):
/// the operator's `bulkhead_rules_recertify{reason}` gauge.
pub fn count_by_reason(findings: &[Finding]) -> BTreeMap<Reason, usize> {
    let mut out: BTreeMap<Reason, usize> = Reason::ALL.iter().map(|r| (*r, 0)).collect();
    for f in findings {
        for r in &f.reasons {
            *out.entry(*r).or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r##"
scope: {selector: {matchLabels: {app: db}}}
owner: payments
contact: payments-oncall@example.com
reviewBy: "2026-06-30"
ingress:
- name: from-api
  action: allow
  peers: [{selector: {matchLabels: {app: api}}}]
- name: from-batch
  action: allow
  peers: [{selector: {matchLabels: {app: batch}}}]
- action: allow
  owner: dr
  contact: "#dr"
  reviewBy: "2026-03-01"
  peers: [{selector: {matchLabels: {app: dr}}}]
egress:
- action: allow
  expires: "2026-04-01T12:00:00Z"
  peers: [{selector: {matchLabels: {app: ldap}}}]
"##;

    fn at(t: &str) -> Timestamp {
        t.parse().expect("time")
    }

    fn hit(rule: &str, hits: u64, last: &str) -> RuleHits {
        RuleHits {
            rule: rule.into(),
            hits,
            last_hit: last.into(),
            nodes: 1,
        }
    }

    fn reasons(found: &[Finding]) -> Vec<(&str, Vec<&str>)> {
        found
            .iter()
            .map(|f| {
                let r = f.reasons.iter().map(|r| r.as_str()).collect();
                (f.rule.as_str(), r)
            })
            .collect()
    }

    const NINETY_DAYS: SignedDuration = SignedDuration::from_hours(90 * 24);

    #[test]
    fn never_hit_unused_expired_and_overdue_rules_are_listed_with_every_reason() {
        let spec: SegmentationPolicySpec = serde_yaml::from_str(POLICY).expect("spec");
        let hits = [
            hit("from-api", 40, "2026-03-20T10:00:00Z"),
            hit("from-batch", 2, "2025-12-01T00:00:00Z"),
            hit("ingress[2]", 1, "2026-03-25T00:00:00Z"),
        ];
        let db = PolicyUse {
            name: "db",
            spec: &spec,
            hits: &hits,
        };
        let found = recertify([db], at("2026-03-31T00:00:00Z"), NINETY_DAYS);
        assert_eq!(
            reasons(&found),
            [
                ("from-batch", vec!["unused"]),
                ("ingress[2]", vec!["review-overdue"]),
                ("egress[0]", vec!["never-hit"]),
            ]
        );
        let batch = &found[0];
        assert_eq!((batch.hits, batch.path.as_str()), (2, "ingress[1]"));
        assert_eq!(batch.last_hit, Some(at("2025-12-01T00:00:00Z")));
        assert_eq!(batch.owner.as_deref(), Some("payments"), "inherited");
        assert_eq!(found[1].owner.as_deref(), Some("dr"), "the rule's own");
        assert_eq!(found[1].review_by.as_deref(), Some("2026-03-01"));
        assert_eq!((found[2].hits, found[2].last_hit), (0, None));

        // A day later the egress rule has expired; past June the policy's
        // review is overdue for every rule that inherits it.
        let later = recertify([db], at("2026-07-01T00:00:00Z"), NINETY_DAYS);
        assert_eq!(
            reasons(&later),
            [
                ("from-api", vec!["unused", "review-overdue"]),
                ("from-batch", vec!["unused", "review-overdue"]),
                ("ingress[2]", vec!["unused", "review-overdue"]),
                ("egress[0]", vec!["never-hit", "expired", "review-overdue"]),
            ]
        );
        let counts = count_by_reason(&later);
        assert_eq!(counts[&Reason::ReviewOverdue], 4);
        assert_eq!(counts[&Reason::Unused], 3);
        assert_eq!(counts[&Reason::NeverHit], 1);
        assert_eq!(counts[&Reason::Expired], 1);
    }

    #[test]
    fn the_window_edge_is_exact_and_a_bad_last_hit_counts_as_never() {
        let spec: SegmentationPolicySpec = serde_yaml::from_str(
            "scope: {selector: {matchLabels: {app: db}}}\ningress: [{name: a, action: allow}, {name: b, action: allow}]",
        )
        .expect("spec");
        let now = at("2026-03-31T00:00:00Z");
        let edge = (now - NINETY_DAYS).to_string();
        let hits = [hit("a", 1, &edge), hit("b", 9, "yesterday")];
        let p = PolicyUse {
            name: "p",
            spec: &spec,
            hits: &hits,
        };
        let found = recertify([p], now, NINETY_DAYS);
        assert_eq!(reasons(&found), [("b", vec!["never-hit"])]);
        assert_eq!(found[0].hits, 0);
        let a_second_later = recertify([p], now + SignedDuration::from_secs(1), NINETY_DAYS);
        assert_eq!(
            reasons(&a_second_later),
            [("a", vec!["unused"]), ("b", vec!["never-hit"])]
        );
        assert!(count_by_reason(&[]).values().all(|n| *n == 0));
        assert_eq!(count_by_reason(&[]).len(), Reason::ALL.len());
    }
}
