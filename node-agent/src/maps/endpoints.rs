//! `bh_endpoints`: local address → endpoint (identity, mode, flags, ifindex),
//! and `bh_ifaces`: pod interface → the endpoint behind it. Both are written
//! from one [`Bound`], so an endpoint and its interface always agree.

use std::collections::BTreeMap;

use aya::maps::{HashMap, IterableMap, MapData};
use aya::Ebpf;

use super::{apply_diff, capacity, check_fits, take, wrap, DiffStats};
use crate::desired::interfaces::Bound;
use crate::desired::Desired;
use crate::error::Result;
use crate::layout::{EndpointInfo, EndpointKey};

/// The maps' names in metrics; the slots are `_a` and `_b`.
pub(crate) const NAME: &str = "bh_endpoints";
pub(crate) const IFACES: &str = "bh_ifaces";
const SLOTS: [(&str, &str); 2] = [
    ("bh_endpoints_a", "bh_ifaces_a"),
    ("bh_endpoints_b", "bh_ifaces_b"),
];

#[derive(Debug)]
pub struct Endpoints {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
    ifaces: HashMap<MapData, u32, EndpointInfo>,
    names: (&'static str, &'static str),
    max: u32,
    max_ifaces: u32,
}

impl Endpoints {
    pub(crate) fn take(ebpf: &mut Ebpf, slot: usize) -> Result<Self> {
        let names = SLOTS[slot];
        let (name, ifaces_name) = names;
        let map: HashMap<MapData, EndpointKey, EndpointInfo> =
            HashMap::try_from(take(ebpf, name)?).map_err(wrap(name, "open"))?;
        let ifaces: HashMap<MapData, u32, EndpointInfo> =
            HashMap::try_from(take(ebpf, ifaces_name)?).map_err(wrap(ifaces_name, "open"))?;
        let max = capacity(name, map.map())?;
        let max_ifaces = capacity(ifaces_name, ifaces.map())?;
        Ok(Endpoints {
            map,
            ifaces,
            names,
            max,
            max_ifaces,
        })
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.max
    }

    pub(crate) fn iface_capacity(&self) -> u32 {
        self.max_ifaces
    }

    pub(crate) fn check(&self, desired: &Desired) -> Result<()> {
        check_fits(self.names.0, self.max, desired.endpoints.len())?;
        check_fits(self.names.1, self.max_ifaces, desired.pods.len())
    }

    /// Writes both maps of this slot (not in force: the order does not
    /// matter to packets, the flip shows both at once).
    pub(crate) fn program(&mut self, bound: &Bound) -> Result<(DiffStats, DiffStats)> {
        let current: BTreeMap<EndpointKey, EndpointInfo> = self
            .map
            .iter()
            .collect::<Result<_, _>>()
            .map_err(wrap(self.names.0, "read"))?;
        let map = &mut self.map;
        let endpoints = apply_diff(self.names.0, &current, &bound.endpoints, |k, v| match v {
            Some(v) => map.insert(k, v, 0),
            None => map.remove(k),
        })?;
        let current: BTreeMap<u32, EndpointInfo> = self
            .ifaces
            .iter()
            .collect::<Result<_, _>>()
            .map_err(wrap(self.names.1, "read"))?;
        let ifaces = &mut self.ifaces;
        let interfaces = apply_diff(self.names.1, &current, &bound.ifaces, |k, v| match v {
            Some(v) => ifaces.insert(k, v, 0),
            None => ifaces.remove(k),
        })?;
        Ok((endpoints, interfaces))
    }
}
