//! `bh_conntrack` (flows of full-mode endpoints: a hash nothing evicts) and
//! `bh_conntrack_lru` (visibility and selective: an LRU). Written by the
//! programs; the agent reads them, and sweeps expired entries out of the
//! hash, where nothing else would remove a flow that was never seen again
//! (docs/conntrack.md).

use aya::maps::{HashMap, IterableMap, MapData, MapError};
use aya::Ebpf;

use super::{capacity, take, wrap};
use crate::error::Result;
use crate::flows::aggregate::ServiceTuples;
use crate::layout::{CtKey, CtValue, CT_F_CLOSING, CT_F_VIA_SERVICE, FAMILY_V4};

const NAME: &str = "bh_conntrack";
const LRU: &str = "bh_conntrack_lru";

#[derive(Debug)]
pub struct Conntrack {
    map: HashMap<MapData, CtKey, CtValue>,
    lru: HashMap<MapData, CtKey, CtValue>,
    max: u32,
}

/// Whether an entry last seen at `last_seen_ns` is expired at `now_ns`, as
/// the programs judge it (an entry seen "after" now is fresh).
pub fn expired(value: &CtValue, now_ns: u64, timeout_ns: u64, closing_ns: u64) -> bool {
    let limit = if value.flags & CT_F_CLOSING != 0 {
        closing_ns
    } else {
        timeout_ns
    };
    now_ns > value.last_seen_ns && now_ns - value.last_seen_ns > limit
}

impl Conntrack {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map: HashMap<MapData, CtKey, CtValue> =
            HashMap::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        let lru: HashMap<MapData, CtKey, CtValue> =
            HashMap::try_from(take(ebpf, LRU)?).map_err(wrap(LRU, "open"))?;
        let max = capacity(NAME, map.map())?;
        Ok(Conntrack { map, lru, max })
    }

    /// Capacity of the full-mode table (the one whose fill matters: at 100 %
    /// it refuses new flows).
    pub fn capacity(&self) -> u32 {
        self.max
    }

    /// Live entries of the full-mode table, by walking the keys: one syscall
    /// per entry, so the agent counts at a slow cadence (see `Outputs`).
    pub fn count(&self) -> usize {
        self.map.keys().filter(|k| k.is_ok()).count()
    }

    /// Every entry of both tables (entries may vanish while iterating; those
    /// are skipped).
    pub fn entries(&self) -> Vec<(CtKey, CtValue)> {
        self.map
            .iter()
            .chain(self.lru.iter())
            .filter_map(|item| item.ok())
            .collect()
    }

    /// The flows local pods sent to a Service address (VIA_SERVICE
    /// entries), by their client side: what flow records through a Service
    /// name beside the backend. Walks both tables.
    pub fn service_tuples(&self) -> ServiceTuples {
        let addr = |family: u8, b: [u8; 16]| -> std::net::IpAddr {
            if family == FAMILY_V4 {
                std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
            } else {
                std::net::Ipv6Addr::from(b).into()
            }
        };
        self.entries()
            .into_iter()
            .filter(|(_, v)| v.flags & CT_F_VIA_SERVICE != 0)
            .map(|(k, _)| {
                (
                    (
                        addr(k.family, k.saddr),
                        u16::from_be(k.sport_be),
                        k.protocol,
                    ),
                    (addr(k.family, k.daddr), u16::from_be(k.dport_be)),
                )
            })
            .collect()
    }

    /// Replaces one entry of the full-mode table as the programs would.
    /// Tests use it to stage what another CPU can do between two reads
    /// (refresh an entry "in the future" of this CPU's clock).
    pub fn overwrite(&mut self, key: &CtKey, value: &CtValue) -> Result<()> {
        self.map.insert(key, value, 0).map_err(wrap(NAME, "update"))
    }

    /// Deletes the full-mode table's expired entries at `now_ns` (the
    /// programs' clock, CLOCK_MONOTONIC); returns how many went.
    pub fn sweep(&mut self, now_ns: u64, timeout_ns: u64, closing_ns: u64) -> Result<usize> {
        let stale: Vec<CtKey> = self
            .map
            .iter()
            .filter_map(|item| item.ok())
            .filter(|(_, v)| expired(v, now_ns, timeout_ns, closing_ns))
            .map(|(k, _)| k)
            .collect();
        let mut removed = 0;
        for key in &stale {
            match self.map.remove(key) {
                Ok(()) => removed += 1,
                Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(wrap(NAME, "delete")(e)),
            }
        }
        Ok(removed)
    }

    /// Forgets every flow of both tables (used by tests between cases).
    pub fn clear(&mut self) -> Result<usize> {
        let mut n = 0;
        for (name, map) in [(NAME, &mut self.map), (LRU, &mut self.lru)] {
            let keys: Vec<CtKey> = map.keys().filter_map(|k| k.ok()).collect();
            for key in &keys {
                match map.remove(key) {
                    Ok(()) | Err(MapError::KeyNotFound) => {}
                    Err(e) => return Err(wrap(name, "delete")(e)),
                }
            }
            n += keys.len();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_matches_the_programs() {
        let value = |last_seen_ns, flags| CtValue {
            last_seen_ns,
            flags,
            ..CtValue::default()
        };
        // (last seen, flags, now, expired) with a 100 ns timeout, 10 ns closing.
        let table = [
            (1000, 0, 1100, false),
            (1000, 0, 1101, true),
            (1000, CT_F_CLOSING, 1010, false),
            (1000, CT_F_CLOSING, 1011, true),
            (2000, 0, 1000, false), // refreshed by another CPU "after" now
        ];
        for (seen, flags, now, want) in table {
            assert_eq!(
                expired(&value(seen, flags), now, 100, 10),
                want,
                "{seen} {flags} {now}"
            );
        }
    }
}
