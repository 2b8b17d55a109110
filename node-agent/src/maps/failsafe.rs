//! `bh_failsafe`: (protocol, direction, port) the host always keeps open.

use std::collections::BTreeMap;

use aya::maps::{HashMap, IterableMap, MapData};
use aya::Ebpf;

use super::{apply_diff, capacity, check_fits, take, wrap, DiffStats};
use crate::desired::Desired;
use crate::error::Result;
use crate::layout::{FailsafeKey, FailsafeValue};

/// The map's name in metrics; the slots are `_a` and `_b`.
pub(crate) const NAME: &str = "bh_failsafe";
pub(crate) const SLOTS: [&str; 2] = ["bh_failsafe_a", "bh_failsafe_b"];

#[derive(Debug)]
pub struct Failsafe {
    map: HashMap<MapData, FailsafeKey, FailsafeValue>,
    name: &'static str,
    max: u32,
}

impl Failsafe {
    pub(crate) fn take(ebpf: &mut Ebpf, slot: usize) -> Result<Self> {
        let name = SLOTS[slot];
        let map: HashMap<MapData, FailsafeKey, FailsafeValue> =
            HashMap::try_from(take(ebpf, name)?).map_err(wrap(name, "open"))?;
        let max = capacity(name, map.map())?;
        Ok(Failsafe { map, name, max })
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.max
    }

    pub(crate) fn check(&self, desired: &Desired) -> Result<()> {
        check_fits(self.name, self.max, desired.failsafe.len())
    }

    pub(crate) fn program(&mut self, desired: &Desired) -> Result<DiffStats> {
        let current: BTreeMap<FailsafeKey, FailsafeValue> = self
            .map
            .iter()
            .collect::<Result<_, _>>()
            .map_err(wrap(self.name, "read"))?;
        let want: BTreeMap<FailsafeKey, FailsafeValue> = desired
            .failsafe
            .iter()
            .map(|k| (*k, FailsafeValue { present: 1 }))
            .collect();
        let map = &mut self.map;
        apply_diff(self.name, &current, &want, |k, v| match v {
            Some(v) => map.insert(k, v, 0),
            None => map.remove(k),
        })
    }
}
