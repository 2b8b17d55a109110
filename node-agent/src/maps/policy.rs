//! `bh_policy`: the flattened rules (see `desired/policy.rs`).

use std::collections::BTreeMap;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{IterableMap, MapData};
use aya::Ebpf;

use super::{apply_diff, capacity, check_fits, take, wrap, DiffStats, Written};
use crate::desired::Desired;
use crate::error::Result;
use crate::layout::{PolicyKey, PolicyKeyData, PolicyValue};

/// The map's name in metrics; the slots are `_a` and `_b`.
pub(crate) const NAME: &str = "bh_policy";
pub(crate) const SLOTS: [&str; 2] = ["bh_policy_a", "bh_policy_b"];

#[derive(Debug)]
pub struct Policy {
    map: LpmTrie<MapData, PolicyKeyData, PolicyValue>,
    name: &'static str,
    max: u32,
    written: Written<PolicyKey, PolicyValue>,
}

fn to_aya(k: &PolicyKey) -> Key<PolicyKeyData> {
    Key::new(
        k.prefixlen,
        PolicyKeyData {
            subject: k.subject,
            peer: k.peer,
            direction: k.direction,
            protocol: k.protocol,
            port_be: k.port_be,
        },
    )
}

fn from_aya(k: &Key<PolicyKeyData>) -> PolicyKey {
    let d = k.data();
    PolicyKey {
        prefixlen: k.prefix_len(),
        subject: d.subject,
        peer: d.peer,
        direction: d.direction,
        protocol: d.protocol,
        port_be: d.port_be,
    }
}

impl Policy {
    pub(crate) fn take(ebpf: &mut Ebpf, slot: usize) -> Result<Self> {
        let name = SLOTS[slot];
        let map: LpmTrie<MapData, PolicyKeyData, PolicyValue> =
            LpmTrie::try_from(take(ebpf, name)?).map_err(wrap(name, "open"))?;
        let max = capacity(name, map.map())?;
        Ok(Policy {
            map,
            name,
            max,
            written: Written::default(),
        })
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.max
    }

    pub(crate) fn check(&self, desired: &Desired) -> Result<()> {
        check_fits(self.name, self.max, desired.policy.len())
    }

    /// Entries currently in the kernel.
    pub fn read(&self) -> Result<BTreeMap<PolicyKey, PolicyValue>> {
        read_policy(&self.map, self.name)
    }

    pub(crate) fn program(&mut self, desired: &Desired) -> Result<DiffStats> {
        let current = self.written.current(|| read_policy(&self.map, self.name))?;
        let map = &mut self.map;
        let stats = apply_diff(self.name, &current, &desired.policy, |k, v| match v {
            Some(v) => map.insert(&to_aya(k), v, 0),
            None => map.remove(&to_aya(k)),
        })?;
        self.written.remember(&desired.policy);
        Ok(stats)
    }
}

fn read_policy(
    map: &LpmTrie<MapData, PolicyKeyData, PolicyValue>,
    name: &'static str,
) -> Result<BTreeMap<PolicyKey, PolicyValue>> {
    map.iter()
        .map(|item| item.map(|(k, v)| (from_aya(&k), v)))
        .collect::<Result<_, _>>()
        .map_err(wrap(name, "read"))
}
