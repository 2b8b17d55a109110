//! `bh_state`: the generation conntrack compares against.

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

    /// Moves to the next generation (never 0, the value of a fresh map, so
    /// that entries made before any programming are re-evaluated too).
    pub(crate) fn bump(&mut self) -> Result<u32> {
        let next = match self.generation()?.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        self.map
            .set(
                0,
                DatapathState {
                    generation: next,
                    pad: 0,
                },
                0,
            )
            .map_err(wrap(NAME, "write"))?;
        Ok(next)
    }
}
