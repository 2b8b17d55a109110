//! `bh_failsafe`: (protocol, direction, port) the host always keeps open.

use std::collections::BTreeMap;

use aya::maps::{HashMap, IterableMap, MapData};
use aya::Ebpf;

use super::{apply_diff, capacity, check_fits, take, wrap, DiffStats};
use crate::desired::Desired;
use crate::error::Result;
use crate::layout::{FailsafeKey, FailsafeValue};

pub(crate) const NAME: &str = "bh_failsafe";

#[derive(Debug)]
pub struct Failsafe {
    map: HashMap<MapData, FailsafeKey, FailsafeValue>,
    max: u32,
}

impl Failsafe {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map: HashMap<MapData, FailsafeKey, FailsafeValue> =
            HashMap::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        let max = capacity(NAME, map.map())?;
        Ok(Failsafe { map, max })
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.max
    }

    pub(crate) fn check(&self, desired: &Desired) -> Result<()> {
        check_fits(NAME, self.max, desired.failsafe.len())
    }

    pub(crate) fn program(&mut self, desired: &Desired) -> Result<DiffStats> {
        let current: BTreeMap<FailsafeKey, FailsafeValue> = self
            .map
            .iter()
            .collect::<Result<_, _>>()
            .map_err(wrap(NAME, "read"))?;
        let want: BTreeMap<FailsafeKey, FailsafeValue> = desired
            .failsafe
            .iter()
            .map(|k| (*k, FailsafeValue { present: 1 }))
            .collect();
        let map = &mut self.map;
        apply_diff(NAME, &current, &want, |k, v| match v {
            Some(v) => map.insert(k, v, 0),
            None => map.remove(k),
        })
    }
}
