//! The agent's handles on the pinned maps, one file per map, and the diff
//! that programs them: read what the kernel holds, write only what differs.
//!
//! The maps that hold the node's rules come in two slots (`bpf/lib/maps.h`):
//! the parity of the generation in `bh_state` says which one is in force.
//! A programming pass (`Maps::program`) never writes the slot in force:
//!   1. capacity check of the other slot's maps against the desired content
//!      (nothing written if anything would not fit);
//!   2. that slot made to hold `desired`, map by map (removals, then inserts
//!      and updates: the slot is not in force, so no order matters to
//!      packets, and removing first keeps a nearly full map from overflowing);
//!   3. the flip: the next generation, of that slot's parity, in one
//!      aligned 32-bit store (`state.rs`). Packets judged after it see the
//!      new slot whole; conntrack re-evaluates established flows on their
//!      next packet.
//!
//! A failure in 1 or 2 leaves the generation, and so every map in force,
//! as it was; the caller retries the same content, which rewrites the
//! other slot from what the kernel holds.

pub mod conntrack;
pub mod counters;
pub mod endpoints;
pub mod failsafe;
pub mod guarded;
pub mod hits;
pub mod ipcache;
pub mod policy;
pub mod state;

use std::collections::BTreeMap;

use aya::maps::{Map, MapData, MapError};
use aya::Ebpf;

use crate::desired::interfaces::Bound;
use crate::desired::Desired;
use crate::error::{Error, Result};

/// How a diff changed one map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiffStats {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
}

impl DiffStats {
    pub fn touched(&self) -> usize {
        self.added + self.changed + self.removed
    }
}

/// Writes `desired` over `current` with the fewest map operations;
/// `write(key, None)` deletes.
pub(crate) fn apply_diff<K: Ord + Copy, V: PartialEq + Copy>(
    map: &'static str,
    current: &BTreeMap<K, V>,
    desired: &BTreeMap<K, V>,
    mut write: impl FnMut(&K, Option<&V>) -> Result<(), MapError>,
) -> Result<DiffStats> {
    let mut stats = DiffStats::default();
    for key in current.keys().filter(|k| !desired.contains_key(k)) {
        write(key, None).map_err(|source| Error::Map {
            map,
            operation: "delete",
            source,
        })?;
        stats.removed += 1;
    }
    for (key, value) in desired {
        match current.get(key) {
            Some(old) if old == value => stats.unchanged += 1,
            Some(_) => {
                write(key, Some(value)).map_err(|source| Error::Map {
                    map,
                    operation: "update",
                    source,
                })?;
                stats.changed += 1;
            }
            None => {
                write(key, Some(value)).map_err(|source| Error::Map {
                    map,
                    operation: "insert",
                    source,
                })?;
                stats.added += 1;
            }
        }
    }
    Ok(stats)
}

/// What the agent last wrote to one map, so the next diff needs no read
/// back from the kernel (at 10,000 rules that read cost more than the
/// writes). Empty until the first complete write, since pinned maps may
/// hold an earlier agent's entries, and emptied again by a failed write,
/// which leaves the kernel holding part of it: then the kernel is read.
#[derive(Debug)]
pub(crate) struct Written<K, V>(Option<BTreeMap<K, V>>);

impl<K, V> Default for Written<K, V> {
    fn default() -> Self {
        Self(None)
    }
}

impl<K: Ord + Copy, V: PartialEq + Copy> Written<K, V> {
    /// What the map holds: the last complete write, or `read` from the
    /// kernel. Call `remember` once the diff against it went through.
    pub(crate) fn current(
        &mut self,
        read: impl FnOnce() -> Result<BTreeMap<K, V>>,
    ) -> Result<BTreeMap<K, V>> {
        match self.0.take() {
            Some(current) => Ok(current),
            None => read(),
        }
    }

    pub(crate) fn remember(&mut self, written: &BTreeMap<K, V>) {
        self.0 = Some(written.clone());
    }
}

pub(crate) fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<Map> {
    ebpf.take_map(name).ok_or(Error::MissingMap(name))
}

pub(crate) fn capacity(map: &'static str, data: &MapData) -> Result<u32> {
    data.info()
        .map(|i| i.max_entries())
        .map_err(|source| Error::Map {
            map,
            operation: "info",
            source,
        })
}

pub(crate) fn check_fits(map: &'static str, max: u32, needed: usize) -> Result<()> {
    if needed > max as usize {
        return Err(Error::MapFull { map, max, needed });
    }
    Ok(())
}

pub(crate) fn wrap(map: &'static str, operation: &'static str) -> impl FnOnce(MapError) -> Error {
    move |source| Error::Map {
        map,
        operation,
        source,
    }
}

/// Per-map outcome of a programming pass.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ProgramStats {
    /// The generation now in force (its parity is the slot written).
    pub generation: u32,
    pub slot: usize,
    pub ipcache_v4: DiffStats,
    pub ipcache_v6: DiffStats,
    pub endpoints: DiffStats,
    pub interfaces: DiffStats,
    pub policy: DiffStats,
    pub failsafe: DiffStats,
    /// How full each map the agent writes is, after this pass (the slot in
    /// force; both slots have the same capacities).
    pub fill: Vec<MapFill>,
}

/// Entries and capacity of one BPF map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapFill {
    pub map: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

/// The slot of a generation: even is `_a` (0), odd is `_b` (1).
pub fn slot_of(generation: u32) -> usize {
    (generation & 1) as usize
}

/// The generation after `generation`: the other slot's parity, and never 0
/// (the value of a fresh map, so that entries made before any programming
/// are re-evaluated too). After `u32::MAX` (odd) comes 2.
pub fn next_generation(generation: u32) -> u32 {
    match generation.wrapping_add(1) {
        0 => 2,
        n => n,
    }
}

/// One slot's maps: everything a verdict reads besides conntrack.
#[derive(Debug)]
pub struct Slot {
    pub ipcache: ipcache::Ipcache,
    pub endpoints: endpoints::Endpoints,
    pub policy: policy::Policy,
    pub failsafe: failsafe::Failsafe,
}

impl Slot {
    fn take(ebpf: &mut Ebpf, slot: usize) -> Result<Self> {
        Ok(Slot {
            ipcache: ipcache::Ipcache::take(ebpf, slot)?,
            endpoints: endpoints::Endpoints::take(ebpf, slot)?,
            policy: policy::Policy::take(ebpf, slot)?,
            failsafe: failsafe::Failsafe::take(ebpf, slot)?,
        })
    }

    fn check(&self, desired: &Desired) -> Result<()> {
        self.ipcache.check(desired)?;
        self.endpoints.check(desired)?;
        self.policy.check(desired)?;
        self.failsafe.check(desired)
    }

    fn fill(&self, desired: &Desired, bound: &Bound) -> Vec<MapFill> {
        let fill = |map, entries, capacity| MapFill {
            map,
            entries,
            capacity,
        };
        let (v4, v6) = self.ipcache.capacities();
        vec![
            fill(ipcache::V4, desired.ipcache_v4.len(), v4),
            fill(ipcache::V6, desired.ipcache_v6.len(), v6),
            fill(
                endpoints::NAME,
                desired.endpoints.len(),
                self.endpoints.capacity(),
            ),
            fill(
                endpoints::IFACES,
                bound.ifaces.len(),
                self.endpoints.iface_capacity(),
            ),
            fill(policy::NAME, desired.policy.len(), self.policy.capacity()),
            fill(
                failsafe::NAME,
                desired.failsafe.len(),
                self.failsafe.capacity(),
            ),
        ]
    }
}

/// How long a packet may still read the slot a flip left, when the
/// kernel cannot say (membarrier refused): BPF programs run inside an RCU
/// read-side section, and one packet is judged in microseconds.
const READER_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// Every map the agent writes or reads.
#[derive(Debug)]
pub struct Maps {
    /// `_a` and `_b` (`slot_of`).
    pub slots: [Slot; 2],
    pub state: state::State,
    pub counters: counters::Counters,
    pub conntrack: conntrack::Conntrack,
    pub hits: hits::Hits,
    pub guarded: guarded::Guarded,
    /// Waits out the packets that read the generation before the last
    /// flip (`membarrier(MEMBARRIER_CMD_GLOBAL)`, a synchronize_rcu). It
    /// starts at the flip, off the loop, so the next pass (which rewrites
    /// the slot they read) seldom waits for it: the grace period passes
    /// while the agent waits for the next change.
    readers: Option<std::thread::JoinHandle<()>>,
}

impl Maps {
    /// Takes the maps out of the loaded object (the pinned instances).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Maps {
            slots: [Slot::take(ebpf, 0)?, Slot::take(ebpf, 1)?],
            state: state::State::take(ebpf)?,
            counters: counters::Counters::take(ebpf)?,
            conntrack: conntrack::Conntrack::take(ebpf)?,
            hits: hits::Hits::take(ebpf)?,
            guarded: guarded::Guarded::take(ebpf)?,
            readers: None,
        })
    }

    /// The slot in force.
    pub fn active(&self) -> Result<&Slot> {
        Ok(&self.slots[slot_of(self.state.generation()?)])
    }

    /// Makes the slot not in force hold `desired` with its endpoints bound
    /// as in `bound`, then flips to it. On error nothing in force changed.
    pub fn program(&mut self, desired: &Desired, bound: &Bound) -> Result<ProgramStats> {
        let generation = next_generation(self.state.generation()?);
        let target = slot_of(generation);
        let slot = &mut self.slots[target];
        slot.check(desired)?;
        if let Some(readers) = self.readers.take() {
            // The thread only makes one system call; it cannot panic.
            let _ = readers.join();
        }
        let (ipcache_v4, ipcache_v6) = slot.ipcache.program(desired)?;
        let (endpoints, interfaces) = slot.endpoints.program(bound)?;
        let policy = slot.policy.program(desired)?;
        let failsafe = slot.failsafe.program(desired)?;
        self.state.set(generation)?;
        self.readers = Some(std::thread::spawn(wait_for_readers));
        let fill = self.slots[target].fill(desired, bound);
        Ok(ProgramStats {
            generation,
            slot: target,
            ipcache_v4,
            ipcache_v6,
            endpoints,
            interfaces,
            policy,
            failsafe,
            fill,
        })
    }
}

/// Waits until no BPF program still runs with a generation read before the
/// last flip.
fn wait_for_readers() {
    use rustix::thread::{membarrier, MembarrierCommand};
    if let Err(e) = membarrier(MembarrierCommand::Global) {
        // nohz_full kernels refuse it; a packet is judged in microseconds.
        tracing::debug!(error = %e, "membarrier unavailable; waiting out the grace period");
        std::thread::sleep(READER_GRACE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_alternate_slots_and_skip_zero() {
        let mut g = 0;
        for _ in 0..5 {
            let n = next_generation(g);
            assert_ne!(slot_of(n), slot_of(g), "{g} -> {n}");
            assert_ne!(n, 0);
            g = n;
        }
        assert_eq!(next_generation(0), 1);
        assert_eq!(next_generation(u32::MAX), 2);
        assert_ne!(slot_of(u32::MAX), slot_of(2));
    }

    #[test]
    fn diff_removes_before_it_inserts() {
        let current = BTreeMap::from([(1u32, 1u32), (2, 2)]);
        let desired = BTreeMap::from([(2u32, 3u32), (4, 4)]);
        let mut ops = Vec::new();
        let stats = apply_diff("m", &current, &desired, |k, v| {
            ops.push((*k, v.copied()));
            Ok(())
        })
        .expect("diff");
        assert_eq!(ops, vec![(1, None), (2, Some(3)), (4, Some(4))]);
        assert_eq!((stats.added, stats.changed, stats.removed), (1, 1, 1));
    }
}
