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

pub(crate) const NAME: &str = "bh_endpoints";
pub(crate) const IFACES: &str = "bh_ifaces";

#[derive(Debug)]
pub struct Endpoints {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
    ifaces: HashMap<MapData, u32, EndpointInfo>,
    max: u32,
    max_ifaces: u32,
}

impl Endpoints {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map: HashMap<MapData, EndpointKey, EndpointInfo> =
            HashMap::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        let ifaces: HashMap<MapData, u32, EndpointInfo> =
            HashMap::try_from(take(ebpf, IFACES)?).map_err(wrap(IFACES, "open"))?;
        let max = capacity(NAME, map.map())?;
        let max_ifaces = capacity(IFACES, ifaces.map())?;
        Ok(Endpoints {
            map,
            ifaces,
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
        check_fits(NAME, self.max, desired.endpoints.len())?;
        check_fits(IFACES, self.max_ifaces, desired.pods.len())
    }

    /// Writes the endpoints first, then the interfaces: a new pod's
    /// interface is known only once its addresses carry its ifindex, so no
    /// packet of it is judged spoofed in between. Interfaces that went away
    /// are forgotten last for the same reason.
    pub(crate) fn program(&mut self, bound: &Bound) -> Result<(DiffStats, DiffStats)> {
        let current: BTreeMap<EndpointKey, EndpointInfo> = self
            .map
            .iter()
            .collect::<Result<_, _>>()
            .map_err(wrap(NAME, "read"))?;
        let map = &mut self.map;
        let endpoints = apply_diff(NAME, &current, &bound.endpoints, |k, v| match v {
            Some(v) => map.insert(k, v, 0),
            None => map.remove(k),
        })?;
        let current: BTreeMap<u32, EndpointInfo> = self
            .ifaces
            .iter()
            .collect::<Result<_, _>>()
            .map_err(wrap(IFACES, "read"))?;
        let ifaces = &mut self.ifaces;
        let interfaces = apply_diff(IFACES, &current, &bound.ifaces, |k, v| match v {
            Some(v) => ifaces.insert(k, v, 0),
            None => ifaces.remove(k),
        })?;
        Ok((endpoints, interfaces))
    }
}
