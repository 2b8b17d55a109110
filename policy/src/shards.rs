//! IdentityMap shards: identities by number, address prefixes by hash, so
//! that one pod's change rewrites one or two small objects.

use std::collections::BTreeMap;

use bulkhead_api::{IdentityEntry, IdentityMapSpec, Labels, PrefixEntry};
use ipnet::IpNet;

use crate::identities::IdentityAllocation;

/// FNV-1a, 32 bits: small, stable across releases and platforms.
pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

pub(crate) fn shard_of_prefix(net: &IpNet, shards: u32) -> u32 {
    fnv1a(net.to_string().as_bytes()) % shards
}

pub(crate) fn shard_of_identity(id: u32, shards: u32) -> u32 {
    id % shards
}

/// Builds one shard from all identities, the shard's own prefixes and the
/// allocation's numbers in quarantine.
pub(crate) fn build(
    shard: u32,
    shards: u32,
    identities: &BTreeMap<u32, Labels>,
    prefixes: Option<&BTreeMap<IpNet, PrefixEntry>>,
    allocation: &IdentityAllocation,
) -> IdentityMapSpec {
    IdentityMapSpec {
        shard,
        shards,
        identities: identities
            .iter()
            .filter(|(id, _)| shard_of_identity(**id, shards) == shard)
            .map(|(id, labels)| IdentityEntry {
                id: *id,
                labels: labels.clone(),
            })
            .collect(),
        prefixes: prefixes
            .into_iter()
            .flat_map(BTreeMap::values)
            .cloned()
            .collect(),
        released: allocation
            .released()
            .filter(|r| shard_of_identity(r.id, shards) == shard)
            .collect(),
    }
}
