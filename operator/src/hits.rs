//! Rule hits of a policy, over the nodes: what `status.ruleHits` says.
//!
//! ```text
//!  NodeRuleMap.status.ruleHits (every node) ─┐
//!  the policy's rules (names, from its spec) ─┼─► policy_hits ─► [{rule, hits, lastHit, nodes}]
//!  the status written before ─────────────────┘      sum of hits, latest lastHit (never back)
//! ```
//!
//! Computed only at the hits interval (`Engine`); between two, the status
//! keeps what was written, so an agent's report moves no status at once and
//! an idle cluster writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::hits::RuleHits;
use bulkhead_api::{NodeRuleMap, SegmentationPolicySpec};
use jiff::Timestamp;

/// The later of two RFC 3339 times; one that does not parse loses.
fn later(a: &str, b: &str) -> String {
    match (a.parse::<Timestamp>().ok(), b.parse::<Timestamp>().ok()) {
        (Some(x), Some(y)) if y > x => b.to_string(),
        (None, Some(_)) => b.to_string(),
        _ => a.to_string(),
    }
}

/// The hits of policy `name`'s rules (`spec`) as the nodes last reported
/// them, with `previous` (the status written before) keeping the last hit
/// of a rule whose nodes stopped reporting it (a node gone, a datapath
/// reloaded). Rules the policy no longer has are dropped. Sorted by rule.
pub fn policy_hits<'a>(
    name: &str,
    spec: &SegmentationPolicySpec,
    rule_maps: impl IntoIterator<Item = &'a NodeRuleMap>,
    previous: &[RuleHits],
) -> Vec<RuleHits> {
    let rules: BTreeSet<String> = bulkhead_policy::governance::rules(spec)
        .map(|(path, r)| r.name.clone().unwrap_or(path))
        .collect();
    let mut out: BTreeMap<String, RuleHits> = BTreeMap::new();
    for map in rule_maps {
        let reported = map.status.iter().flat_map(|s| &s.rule_hits);
        for h in reported.filter(|h| h.policy == name && rules.contains(&h.rule)) {
            let e = out.entry(h.rule.clone()).or_insert_with(|| RuleHits {
                rule: h.rule.clone(),
                ..RuleHits::default()
            });
            e.hits = e.hits.saturating_add(h.hits);
            e.last_hit = later(&e.last_hit, &h.last_hit);
            e.nodes += 1;
        }
    }
    for p in previous.iter().filter(|p| rules.contains(&p.rule)) {
        match out.get_mut(&p.rule) {
            Some(e) => e.last_hit = later(&e.last_hit, &p.last_hit),
            None => {
                out.insert(
                    p.rule.clone(),
                    RuleHits {
                        nodes: 0,
                        ..p.clone()
                    },
                );
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::hits::NodeRuleHits;
    use bulkhead_api::{NodeRuleMapSpec, NodeRuleMapStatus};

    fn node(hits: &[(&str, &str, u64, &str)]) -> NodeRuleMap {
        let mut m = NodeRuleMap::new("n", NodeRuleMapSpec::default());
        m.status = Some(NodeRuleMapStatus {
            rule_hits: hits
                .iter()
                .enumerate()
                .map(|(i, (policy, rule, hits, last))| NodeRuleHits {
                    id: i as u32 + 1,
                    policy: policy.to_string(),
                    rule: rule.to_string(),
                    hits: *hits,
                    last_hit: last.to_string(),
                })
                .collect(),
            ..NodeRuleMapStatus::default()
        });
        m
    }

    fn hit(rule: &str, hits: u64, last: &str, nodes: u32) -> RuleHits {
        RuleHits {
            rule: rule.into(),
            hits,
            last_hit: last.into(),
            nodes,
        }
    }

    #[test]
    fn nodes_add_up_the_latest_hit_wins_and_a_last_hit_never_moves_back() {
        let spec: SegmentationPolicySpec = serde_json::from_str(
            r#"{"scope": {"selector": {"matchLabels": {"app": "db"}}},
                "ingress": [{"name": "from-api", "action": "allow"}, {"action": "allow"}]}"#,
        )
        .expect("spec");
        let maps = [
            node(&[
                ("db", "from-api", 3, "2026-03-01T10:00:00Z"),
                ("other", "from-api", 50, "2026-03-09T00:00:00Z"),
            ]),
            node(&[
                ("db", "from-api", 4, "2026-03-02T10:00:00Z"),
                ("db", "gone-rule", 9, "2026-03-02T10:00:00Z"),
            ]),
            NodeRuleMap::new("quiet", NodeRuleMapSpec::default()),
        ];
        let first = policy_hits("db", &spec, &maps, &[]);
        assert_eq!(first, [hit("from-api", 7, "2026-03-02T10:00:00Z", 2)]);

        // The second node reboots: its count restarts, and the node that
        // reported ingress[1] before is gone. The last hits stay.
        let previous = [
            hit("from-api", 7, "2026-03-02T10:00:00Z", 2),
            hit("ingress[1]", 5, "2026-02-01T00:00:00Z", 1),
            hit("removed", 1, "2026-02-01T00:00:00Z", 1),
        ];
        let rebooted = [maps[0].clone()];
        let after = policy_hits("db", &spec, &rebooted, &previous);
        assert_eq!(
            after,
            [
                hit("from-api", 3, "2026-03-02T10:00:00Z", 1),
                hit("ingress[1]", 5, "2026-02-01T00:00:00Z", 0),
            ]
        );
        // Same input, same output: nothing to write when nothing moved.
        assert_eq!(policy_hits("db", &spec, &rebooted, &after), after);
    }
}
