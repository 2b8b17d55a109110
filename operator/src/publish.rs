//! Writes rule maps and identity shards with server-side apply, only where
//! the cluster's copy differs from the compiled one.

use std::collections::BTreeMap;

use bulkhead_api::{IdentityMap, IdentityMapSpec, NodeRuleMap, NodeRuleMapSpec};
use futures::stream::{self, StreamExt};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};

use crate::metrics::Metrics;
use crate::{Error, FIELD_MANAGER};

/// The name of IdentityMap shard `i`.
pub fn shard_name(i: u32) -> String {
    format!("shard-{i}")
}

/// Brings the cluster's NodeRuleMaps to `desired`; `current` is the cluster's
/// view and is updated with what the server returns. Returns how many writes
/// were made.
pub async fn rule_maps(
    client: &Client,
    desired: &BTreeMap<String, NodeRuleMapSpec>,
    current: &mut BTreeMap<String, NodeRuleMap>,
    metrics: &Metrics,
) -> Result<usize, Error> {
    let api: Api<NodeRuleMap> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let changed = desired
        .iter()
        .filter(|(name, spec)| current.get(*name).is_none_or(|o| &o.spec != *spec))
        .map(|(name, spec)| (name.clone(), NodeRuleMap::new(name, spec.clone())))
        .collect::<Vec<_>>();
    let mut writes = apply_all(&api, &params, changed.into_iter(), current, metrics).await?;
    let stale: Vec<String> = current
        .keys()
        .filter(|n| !desired.contains_key(*n))
        .cloned()
        .collect();
    for name in stale {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("deleting NodeRuleMap {name}"))(e)),
        }
        current.remove(&name);
        metrics.write("noderulemap");
        writes += 1;
    }
    Ok(writes)
}

/// Brings the cluster's IdentityMap shards to `desired` (indexed by shard).
pub async fn shards(
    client: &Client,
    desired: &[IdentityMapSpec],
    current: &mut BTreeMap<String, IdentityMap>,
    metrics: &Metrics,
) -> Result<usize, Error> {
    let api: Api<IdentityMap> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let changed = desired
        .iter()
        .map(|spec| (shard_name(spec.shard), spec))
        .filter(|(name, spec)| current.get(name).is_none_or(|o| &o.spec != *spec))
        .map(|(name, spec)| {
            let obj = IdentityMap::new(&name, spec.clone());
            (name, obj)
        })
        .collect::<Vec<_>>();
    let mut writes = apply_all(&api, &params, changed.into_iter(), current, metrics).await?;
    let wanted: Vec<String> = desired.iter().map(|s| shard_name(s.shard)).collect();
    let stale: Vec<String> = current
        .keys()
        .filter(|n| !wanted.contains(n))
        .cloned()
        .collect();
    for name in stale {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube(format!("deleting IdentityMap {name}"))(e)),
        }
        current.remove(&name);
        writes += 1;
    }
    Ok(writes)
}

/// How many server-side applies of one kind are in flight at once.
const CONCURRENT_WRITES: usize = 16;

/// Server-side applies every `(name, object)` at once (up to
/// [`CONCURRENT_WRITES`]): a change that touches several nodes' maps costs
/// one round trip, not one per node. Every applied object goes into
/// `current`, also when another failed; the first failure is returned.
async fn apply_all<K>(
    api: &Api<K>,
    params: &PatchParams,
    objects: impl Iterator<Item = (String, K)>,
    current: &mut BTreeMap<String, K>,
    metrics: &Metrics,
) -> Result<usize, Error>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let kind = K::kind(&());
    let results: Vec<(String, Result<K, kube::Error>)> = stream::iter(objects)
        .map(|(name, obj)| async move {
            let applied = api.patch(&name, params, &Patch::Apply(&obj)).await;
            (name, applied)
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .collect()
        .await;
    let mut writes = 0;
    let mut first_error = None;
    for (name, result) in results {
        match result {
            Ok(applied) => {
                current.insert(name, applied);
                metrics.write(&kind.to_lowercase());
                writes += 1;
            }
            Err(e) => {
                first_error.get_or_insert(Error::kube(format!("applying {kind} {name}"))(e));
            }
        }
    }
    first_error.map_or(Ok(writes), Err)
}
