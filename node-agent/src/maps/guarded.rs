//! `bh_guarded`: pod interfaces on which a packet that no endpoint owns is
//! dropped (`bpf/lib/guard.h`). One map, not slotted: it says what an
//! interface is, not what the rules are. The agent writes every pod
//! interface it attaches to; the CNI plugin (`crate::cni`) writes the one it
//! attaches at veth creation, through the same pin.

use std::collections::BTreeSet;
use std::path::Path;

use aya::maps::{HashMap, Map, MapData, MapError};
use aya::Ebpf;

use super::{take, wrap};
use crate::error::{Error, Result};

pub const NAME: &str = "bh_guarded";

pub struct Guarded {
    map: HashMap<MapData, u32, u8>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded").finish_non_exhaustive()
    }
}

impl Guarded {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let map = HashMap::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        Ok(Guarded { map })
    }

    /// The pinned map of a layout's pin directory (the CNI plugin's way in).
    pub fn from_pin(pin_dir: &Path) -> Result<Self> {
        let path = pin_dir.join(NAME);
        let data = MapData::from_pin(&path).map_err(wrap(NAME, "open the pin"))?;
        let map = HashMap::try_from(Map::HashMap(data)).map_err(wrap(NAME, "open"))?;
        Ok(Guarded { map })
    }

    /// Guards the interface of host-side index `ifindex`.
    pub fn insert(&mut self, ifindex: u32) -> Result<()> {
        self.map.insert(ifindex, 1, 0).map_err(wrap(NAME, "insert"))
    }

    /// Stops guarding `ifindex`; nothing to do when it was not.
    pub fn remove(&mut self, ifindex: u32) -> Result<()> {
        match self.map.remove(&ifindex) {
            Ok(()) => Ok(()),
            Err(MapError::KeyNotFound) => Ok(()),
            Err(e) if is_enoent(&e) => Ok(()),
            Err(source) => Err(Error::Map {
                map: NAME,
                operation: "delete",
                source,
            }),
        }
    }

    pub fn contains(&self, ifindex: u32) -> Result<bool> {
        match self.map.get(&ifindex, 0) {
            Ok(_) => Ok(true),
            Err(MapError::KeyNotFound) => Ok(false),
            Err(source) => Err(Error::Map {
                map: NAME,
                operation: "read",
                source,
            }),
        }
    }

    /// Every guarded ifindex.
    pub fn read(&self) -> Result<BTreeSet<u32>> {
        self.map
            .keys()
            .collect::<std::result::Result<_, _>>()
            .map_err(wrap(NAME, "read"))
    }
}

fn is_enoent(e: &MapError) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOENT))
}
