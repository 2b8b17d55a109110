//! `bh_state`: the generation in force. Its parity selects the slot the
//! programs read (`super::slot_of`); conntrack compares it with each flow's.

use aya::maps::{Array, MapData};
use aya::Ebpf;

use super::{take, wrap};
use crate::error::Result;
use crate::layout::DatapathState;

const NAME: &str = "bh_state";

pub struct State {
    map: Array<MapData, DatapathState>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

impl State {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map = Array::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        Ok(State { map })
    }

    pub fn generation(&self) -> Result<u32> {
        Ok(self.map.get(&0, 0).map_err(wrap(NAME, "read"))?.generation)
    }

    /// Puts `generation` in force: the flip. One 32-bit value in an array
    /// map, so a packet sees either the old generation or the new one.
    pub(crate) fn set(&mut self, generation: u32) -> Result<()> {
        self.map
            .set(0, DatapathState { generation, pad: 0 }, 0)
            .map_err(wrap(NAME, "write"))
    }
}
