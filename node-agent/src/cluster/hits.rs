//! Rule hits for the NodeRuleMap's status: `bh_rule_hits` as read, named
//! after the rule map's rules, with wall-clock times.
//!
//! ```text
//!  bh_rule_hits {id → count, last_hit_ns (monotonic)} ─┐
//!  spec.rules {id → policy, rule} ─────────────────────┼─► HitReport::entries ─► status.ruleHits
//!  clocks now (monotonic, wall) ───────────────────────┘      (sorted by id; same input, same output)
//! ```
//!
//! A rule's wall-clock last hit is computed once per monotonic stamp and
//! remembered, so an idle node reports exactly what it reported before and
//! the status is not written again (no drift of a second from rounding).

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::hits::NodeRuleHits;
use bulkhead_api::rule_map::CompiledRule;
use jiff::{SignedDuration, Timestamp};

use crate::maps::hits::RuleHits;

/// Remembers the wall-clock time given to each monotonic stamp.
#[derive(Debug, Default)]
pub struct HitReport {
    walls: BTreeMap<u32, (u64, String)>,
}

impl HitReport {
    /// The status entries: every rule of `rules` with hits in `read`.
    /// Hits of ids no rule carries (rules removed since) are left out.
    pub fn entries(
        &mut self,
        rules: &[CompiledRule],
        read: &BTreeMap<u32, RuleHits>,
        mono_now_ns: u64,
        wall_now: Timestamp,
    ) -> Vec<NodeRuleHits> {
        let mut out = Vec::new();
        for rule in rules {
            let Some(hits) = read.get(&rule.id).filter(|h| h.count > 0) else {
                continue;
            };
            let last_hit = match self.walls.get(&rule.id) {
                Some((stamp, wall)) if *stamp == hits.last_hit_ns => wall.clone(),
                _ => {
                    let wall = wall_time(hits.last_hit_ns, mono_now_ns, wall_now);
                    self.walls.insert(rule.id, (hits.last_hit_ns, wall.clone()));
                    wall
                }
            };
            out.push(NodeRuleHits {
                id: rule.id,
                policy: rule.policy.clone(),
                rule: rule.rule.clone(),
                hits: hits.count,
                last_hit,
            });
        }
        out.sort_by_key(|e| e.id);
        let reported: BTreeSet<u32> = out.iter().map(|e| e.id).collect();
        self.walls.retain(|id, _| reported.contains(id));
        out
    }
}

/// The wall-clock time of monotonic `stamp_ns`, to the second (RFC 3339).
/// A stamp after `mono_now_ns` (another CPU's hit after this read of the
/// clock) is now.
pub fn wall_time(stamp_ns: u64, mono_now_ns: u64, wall_now: Timestamp) -> String {
    let ago = mono_now_ns.saturating_sub(stamp_ns);
    let ago = SignedDuration::from_nanos(i64::try_from(ago).unwrap_or(i64::MAX));
    let at = wall_now.checked_sub(ago).unwrap_or(Timestamp::UNIX_EPOCH);
    // Truncated to the second: the same stamp always gives the same text.
    Timestamp::from_second(at.as_second())
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::policy::Action;
    use bulkhead_api::rule_map::Direction;

    fn rule(id: u32, policy: &str, name: &str) -> CompiledRule {
        CompiledRule {
            id,
            policy: policy.into(),
            rule: name.into(),
            direction: Direction::Ingress,
            action: Action::Allow,
            subjects: vec![1000],
            any_peer: true,
            peers: Default::default(),
            ports: vec![],
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn hits_are_named_after_the_rule_map_and_idle_reads_repeat_themselves() {
        let rules = [rule(7, "db", "from-api"), rule(3, "db", "ingress[1]")];
        let mut read = BTreeMap::from([
            (
                7,
                RuleHits {
                    count: 4,
                    last_hit_ns: 100 * S,
                },
            ),
            (
                3,
                RuleHits {
                    count: 1,
                    last_hit_ns: 40 * S,
                },
            ),
            // A rule this map no longer carries.
            (
                9,
                RuleHits {
                    count: 2,
                    last_hit_ns: 90 * S,
                },
            ),
        ]);
        let wall: Timestamp = "2026-03-31T12:00:00Z".parse().expect("time");
        let mut report = HitReport::default();
        let first = report.entries(&rules, &read, 110 * S, wall);
        let got: Vec<_> = first
            .iter()
            .map(|e| (e.id, e.rule.as_str(), e.hits, e.last_hit.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "ingress[1]", 1, "2026-03-31T11:58:50Z"),
                (7, "from-api", 4, "2026-03-31T11:59:50Z"),
            ]
        );
        // Later, idle, with the wall clock a little off the monotonic one:
        // the very same entries (the status is not written again).
        let wall_later = wall + SignedDuration::from_millis(60_700);
        let again = report.entries(&rules, &read, 170 * S, wall_later);
        assert_eq!(again, first);
        // A new hit moves its rule only.
        read.insert(
            7,
            RuleHits {
                count: 5,
                last_hit_ns: 165 * S,
            },
        );
        let moved = report.entries(&rules, &read, 170 * S, wall_later);
        assert_eq!(moved[0], first[0]);
        assert_eq!(
            (moved[1].hits, moved[1].last_hit.as_str()),
            (5, "2026-03-31T12:00:55Z")
        );
    }

    #[test]
    fn a_stamp_from_another_cpu_after_the_clock_read_is_now() {
        let wall: Timestamp = "2026-03-31T12:00:00.900Z".parse().expect("time");
        assert_eq!(wall_time(12 * S, 10 * S, wall), "2026-03-31T12:00:00Z");
    }
}
