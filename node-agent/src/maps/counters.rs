//! `bh_counters`: per-CPU packet counters, summed over CPUs on read.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray};
use aya::Ebpf;

use super::{take, wrap};
use crate::error::Result;
use crate::layout::COUNTER_NAMES;

const NAME: &str = "bh_counters";

pub struct Counters {
    map: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

impl Counters {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map = PerCpuArray::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        Ok(Counters { map })
    }

    /// Counter name → total over CPUs.
    pub fn read(&self) -> Result<BTreeMap<&'static str, u64>> {
        let mut out = BTreeMap::new();
        for (index, name) in COUNTER_NAMES.iter().enumerate() {
            let values = self
                .map
                .get(&(index as u32), 0)
                .map_err(wrap(NAME, "read"))?;
            out.insert(*name, values.iter().sum());
        }
        Ok(out)
    }
}
