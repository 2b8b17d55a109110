//! `bh_rule_hits`: per-CPU hits of each deciding rule (`bpf/include/hits_types.h`),
//! summed over CPUs on read.
//!
//! The programs only ever add; the agent reads the whole map at its hits
//! interval and deletes the entries of rules this node no longer carries
//! (`forget`), so the map holds at most the rules of the slots programmed
//! since the last read.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::{MapData, PerCpuHashMap};
use aya::Ebpf;

use super::{take, wrap};
use crate::error::Result;
use crate::layout::RuleHitValue;

pub const NAME: &str = "bh_rule_hits";

/// One rule's hits on this node, over every CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleHits {
    /// Hits since the map was created (the node's boot, or the first agent
    /// of this layout version).
    pub count: u64,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) of the latest hit.
    pub last_hit_ns: u64,
}

impl RuleHits {
    /// Sums the CPUs' copies: counts add, the latest hit wins.
    pub fn over_cpus<'a>(values: impl IntoIterator<Item = &'a RuleHitValue>) -> Self {
        values
            .into_iter()
            .fold(RuleHits::default(), |acc, v| RuleHits {
                count: acc.count.saturating_add(v.count),
                last_hit_ns: acc.last_hit_ns.max(v.last_hit_ns),
            })
    }
}

pub struct Hits {
    map: PerCpuHashMap<MapData, u32, RuleHitValue>,
}

impl std::fmt::Debug for Hits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hits").finish_non_exhaustive()
    }
}

impl Hits {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map = PerCpuHashMap::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        Ok(Hits { map })
    }

    /// Rule id → its hits over every CPU.
    pub fn read(&self) -> Result<BTreeMap<u32, RuleHits>> {
        let mut out = BTreeMap::new();
        for entry in self.map.iter() {
            let (id, values) = entry.map_err(wrap(NAME, "read"))?;
            out.insert(id, RuleHits::over_cpus(values.iter()));
        }
        Ok(out)
    }

    /// Deletes the entries of every rule not in `keep`; returns how many.
    pub fn forget(&mut self, keep: &BTreeSet<u32>) -> Result<usize> {
        let gone: Vec<u32> = self
            .map
            .keys()
            .filter_map(|k| k.ok())
            .filter(|id| !keep.contains(id))
            .collect();
        for id in &gone {
            // Deleted meanwhile by nobody else: the agent is the only writer
            // besides the programs, which only add.
            self.map.remove(id).map_err(wrap(NAME, "delete"))?;
        }
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpus_sum_their_counts_and_the_latest_hit_wins() {
        let cpus = [
            RuleHitValue {
                count: 3,
                last_hit_ns: 50,
            },
            RuleHitValue::default(),
            RuleHitValue {
                count: 2,
                last_hit_ns: 90,
            },
        ];
        assert_eq!(
            RuleHits::over_cpus(&cpus),
            RuleHits {
                count: 5,
                last_hit_ns: 90
            }
        );
        assert_eq!(RuleHits::over_cpus(&[]), RuleHits::default());
    }
}
