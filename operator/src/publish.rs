//! Writes rule maps and identity shards with server-side apply, only where
//! the cluster's copy differs from the compiled one.

use std::collections::BTreeMap;

use bulkhead_api::{IdentityMap, IdentityMapSpec, NodeRuleMap, NodeRuleMapSpec};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};

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
    let mut writes = 0;
    for (name, spec) in desired {
        if current.get(name).is_some_and(|o| &o.spec == spec) {
            continue;
        }
        let obj = NodeRuleMap::new(name, spec.clone());
        let applied = api
            .patch(name, &params, &Patch::Apply(&obj))
            .await
            .map_err(Error::kube(format!("applying NodeRuleMap {name}")))?;
        current.insert(name.clone(), applied);
        metrics.write("noderulemap");
        writes += 1;
    }
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
    let mut writes = 0;
    for spec in desired {
        let name = shard_name(spec.shard);
        if current.get(&name).is_some_and(|o| &o.spec == spec) {
            continue;
        }
        let obj = IdentityMap::new(&name, spec.clone());
        let applied = api
            .patch(&name, &params, &Patch::Apply(&obj))
            .await
            .map_err(Error::kube(format!("applying IdentityMap {name}")))?;
        current.insert(name, applied);
        metrics.write("identitymap");
        writes += 1;
    }
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
