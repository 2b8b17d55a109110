//! `bh_endpoints`: local address → endpoint (identity, mode, flags).

use std::collections::BTreeMap;

use aya::maps::{HashMap, IterableMap, MapData};
use aya::Ebpf;

use super::{apply_diff, capacity, check_fits, take, wrap, DiffStats};
use crate::desired::Desired;
use crate::error::Result;
use crate::layout::{EndpointInfo, EndpointKey};

pub(crate) const NAME: &str = "bh_endpoints";

#[derive(Debug)]
pub struct Endpoints {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
    max: u32,
}

impl Endpoints {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map: HashMap<MapData, EndpointKey, EndpointInfo> =
            HashMap::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        let max = capacity(NAME, map.map())?;
        Ok(Endpoints { map, max })
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.max
    }

    pub(crate) fn check(&self, desired: &Desired) -> Result<()> {
        check_fits(NAME, self.max, desired.endpoints.len())
    }

    pub(crate) fn program(&mut self, desired: &Desired) -> Result<DiffStats> {
        let current: BTreeMap<EndpointKey, EndpointInfo> = self
            .map
            .iter()
            .collect::<Result<_, _>>()
            .map_err(wrap(NAME, "read"))?;
        let map = &mut self.map;
        apply_diff(NAME, &current, &desired.endpoints, |k, v| match v {
            Some(v) => map.insert(k, v, 0),
            None => map.remove(k),
        })
    }
}
