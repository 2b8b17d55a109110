//! `bh_conntrack`: read for inspection and tests; written only by the programs.

use aya::maps::{HashMap, IterableMap, MapData};
use aya::Ebpf;

use super::{capacity, take, wrap};
use crate::error::Result;
use crate::layout::{CtKey, CtValue};

const NAME: &str = "bh_conntrack";

#[derive(Debug)]
pub struct Conntrack {
    map: HashMap<MapData, CtKey, CtValue>,
    max: u32,
}

impl Conntrack {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map: HashMap<MapData, CtKey, CtValue> =
            HashMap::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        let max = capacity(NAME, map.map())?;
        Ok(Conntrack { map, max })
    }

    pub fn capacity(&self) -> u32 {
        self.max
    }

    /// Live entries, by walking the keys: one syscall per entry, so the
    /// agent counts at a slow cadence (see `Outputs`), not per window.
    pub fn count(&self) -> usize {
        self.map.keys().filter(|k| k.is_ok()).count()
    }

    /// Every entry (LRU: entries may vanish while iterating; those are skipped).
    pub fn entries(&self) -> Vec<(CtKey, CtValue)> {
        self.map.iter().filter_map(|item| item.ok()).collect()
    }

    /// Replaces one entry as the programs would. Tests use it to stage what
    /// another CPU can do between two reads (refresh an entry "in the
    /// future" of this CPU's clock); the agent never writes conntrack.
    pub fn overwrite(&mut self, key: &CtKey, value: &CtValue) -> Result<()> {
        self.map.insert(key, value, 0).map_err(wrap(NAME, "update"))
    }

    /// Forgets every flow (used by tests between cases).
    pub fn clear(&mut self) -> Result<usize> {
        let keys: Vec<CtKey> = self.map.keys().filter_map(|k| k.ok()).collect();
        for key in &keys {
            match self.map.remove(key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(wrap(NAME, "delete")(e)),
            }
        }
        Ok(keys.len())
    }
}
