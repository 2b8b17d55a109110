//! `bh_ipcache_v4` / `bh_ipcache_v6`: address prefix → identity.

use std::collections::BTreeMap;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::MapData;
use aya::Ebpf;

use super::{apply_diff, capacity, check_fits, take, wrap, DiffStats, Written};
use crate::desired::Desired;
use crate::error::Result;
use crate::layout::IdentityValue;

/// The maps' names in metrics; the slots are `_a` and `_b`.
pub(crate) const V4: &str = "bh_ipcache_v4";
pub(crate) const V6: &str = "bh_ipcache_v6";
const SLOTS: [(&str, &str); 2] = [
    ("bh_ipcache_v4_a", "bh_ipcache_v6_a"),
    ("bh_ipcache_v4_b", "bh_ipcache_v6_b"),
];

/// Both families' tries.
#[derive(Debug)]
pub struct Ipcache {
    v4: LpmTrie<MapData, [u8; 4], IdentityValue>,
    v6: LpmTrie<MapData, [u8; 16], IdentityValue>,
    names: (&'static str, &'static str),
    max_v4: u32,
    max_v6: u32,
    written_v4: Written<(u32, [u8; 4]), IdentityValue>,
    written_v6: Written<(u32, [u8; 16]), IdentityValue>,
}

impl Ipcache {
    pub(crate) fn take(ebpf: &mut Ebpf, slot: usize) -> Result<Self> {
        let names = SLOTS[slot];
        let (n4, n6) = names;
        let v4: LpmTrie<MapData, [u8; 4], IdentityValue> =
            LpmTrie::try_from(take(ebpf, n4)?).map_err(wrap(n4, "open"))?;
        let v6: LpmTrie<MapData, [u8; 16], IdentityValue> =
            LpmTrie::try_from(take(ebpf, n6)?).map_err(wrap(n6, "open"))?;
        let max_v4 = capacity(n4, v4_data(&v4))?;
        let max_v6 = capacity(n6, v6_data(&v6))?;
        Ok(Ipcache {
            v4,
            v6,
            names,
            max_v4,
            max_v6,
            written_v4: Written::default(),
            written_v6: Written::default(),
        })
    }

    /// (v4, v6)
    pub(crate) fn capacities(&self) -> (u32, u32) {
        (self.max_v4, self.max_v6)
    }

    pub(crate) fn check(&self, desired: &Desired) -> Result<()> {
        check_fits(self.names.0, self.max_v4, desired.ipcache_v4.len())?;
        check_fits(self.names.1, self.max_v6, desired.ipcache_v6.len())
    }

    pub(crate) fn program(&mut self, desired: &Desired) -> Result<(DiffStats, DiffStats)> {
        let (n4, n6) = self.names;
        let current = self.written_v4.current(|| read(&self.v4, n4))?;
        let want = with_values(&desired.ipcache_v4);
        let v4 = &mut self.v4;
        let s4 = apply_diff(n4, &current, &want, |(len, addr), v| match v {
            Some(v) => v4.insert(&Key::new(*len, *addr), v, 0),
            None => v4.remove(&Key::new(*len, *addr)),
        })?;
        self.written_v4.remember(&want);
        let current = self.written_v6.current(|| read(&self.v6, n6))?;
        let want = with_values(&desired.ipcache_v6);
        let v6 = &mut self.v6;
        let s6 = apply_diff(n6, &current, &want, |(len, addr), v| match v {
            Some(v) => v6.insert(&Key::new(*len, *addr), v, 0),
            None => v6.remove(&Key::new(*len, *addr)),
        })?;
        self.written_v6.remember(&want);
        Ok((s4, s6))
    }
}

fn v4_data(m: &LpmTrie<MapData, [u8; 4], IdentityValue>) -> &MapData {
    use aya::maps::IterableMap;
    m.map()
}

fn v6_data(m: &LpmTrie<MapData, [u8; 16], IdentityValue>) -> &MapData {
    use aya::maps::IterableMap;
    m.map()
}

fn with_values<K: Ord + Copy>(m: &BTreeMap<(u32, K), u32>) -> BTreeMap<(u32, K), IdentityValue> {
    m.iter()
        .map(|(k, id)| {
            (
                *k,
                IdentityValue {
                    identity: *id,
                    pad: 0,
                },
            )
        })
        .collect()
}

fn read<const N: usize>(
    trie: &LpmTrie<MapData, [u8; N], IdentityValue>,
    map: &'static str,
) -> Result<BTreeMap<(u32, [u8; N]), IdentityValue>>
where
    [u8; N]: aya::Pod,
{
    trie.iter()
        .map(|item| {
            item.map(|(k, v)| ((k.prefix_len(), k.data()), v))
                .map_err(wrap(map, "read"))
        })
        .collect()
}
