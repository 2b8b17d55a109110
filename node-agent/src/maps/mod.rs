//! The agent's handles on the pinned maps, one file per map, and the diff
//! that programs them: read what the kernel holds, write only what differs.
//!
//! Order of a programming pass (`Maps::program`):
//!   1. capacity check of every map against the desired content (nothing
//!      written if anything would not fit: what enforces stays untouched);
//!   2. inserts and updates, then removals, map by map;
//!   3. the generation bump (`state.rs`), after which conntrack re-evaluates
//!      established flows on their next packet.

pub mod conntrack;
pub mod counters;
pub mod endpoints;
pub mod failsafe;
pub mod ipcache;
pub mod policy;
pub mod state;

use std::collections::BTreeMap;

use aya::maps::{Map, MapData, MapError};
use aya::Ebpf;

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
    for key in current.keys().filter(|k| !desired.contains_key(k)) {
        write(key, None).map_err(|source| Error::Map {
            map,
            operation: "delete",
            source,
        })?;
        stats.removed += 1;
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
    pub generation: u32,
    pub ipcache_v4: DiffStats,
    pub ipcache_v6: DiffStats,
    pub endpoints: DiffStats,
    pub policy: DiffStats,
    pub failsafe: DiffStats,
    /// How full each map the agent writes is, after this pass.
    pub fill: Vec<MapFill>,
}

/// Entries and capacity of one BPF map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapFill {
    pub map: &'static str,
    pub entries: usize,
    pub capacity: u32,
}

/// Every map the agent writes or reads.
#[derive(Debug)]
pub struct Maps {
    pub ipcache: ipcache::Ipcache,
    pub endpoints: endpoints::Endpoints,
    pub policy: policy::Policy,
    pub failsafe: failsafe::Failsafe,
    pub state: state::State,
    pub counters: counters::Counters,
    pub conntrack: conntrack::Conntrack,
}

impl Maps {
    /// Takes the maps out of the loaded object (the pinned instances).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self> {
        Ok(Maps {
            ipcache: ipcache::Ipcache::take(ebpf)?,
            endpoints: endpoints::Endpoints::take(ebpf)?,
            policy: policy::Policy::take(ebpf)?,
            failsafe: failsafe::Failsafe::take(ebpf)?,
            state: state::State::take(ebpf)?,
            counters: counters::Counters::take(ebpf)?,
            conntrack: conntrack::Conntrack::take(ebpf)?,
        })
    }

    /// Makes the maps hold `desired`, then bumps the generation.
    pub fn program(&mut self, desired: &Desired) -> Result<ProgramStats> {
        self.ipcache.check(desired)?;
        self.endpoints.check(desired)?;
        self.policy.check(desired)?;
        self.failsafe.check(desired)?;
        let (ipcache_v4, ipcache_v6) = self.ipcache.program(desired)?;
        let endpoints = self.endpoints.program(desired)?;
        let policy = self.policy.program(desired)?;
        let failsafe = self.failsafe.program(desired)?;
        let generation = self.state.bump()?;
        // After a complete pass each map holds exactly `desired`.
        let fill = |map, entries, capacity| MapFill {
            map,
            entries,
            capacity,
        };
        let (v4, v6) = self.ipcache.capacities();
        let fill = vec![
            fill(ipcache::V4, desired.ipcache_v4.len(), v4),
            fill(ipcache::V6, desired.ipcache_v6.len(), v6),
            fill(
                endpoints::NAME,
                desired.endpoints.len(),
                self.endpoints.capacity(),
            ),
            fill(policy::NAME, desired.policy.len(), self.policy.capacity()),
            fill(
                failsafe::NAME,
                desired.failsafe.len(),
                self.failsafe.capacity(),
            ),
        ];
        Ok(ProgramStats {
            generation,
            ipcache_v4,
            ipcache_v6,
            endpoints,
            policy,
            failsafe,
            fill,
        })
    }
}
