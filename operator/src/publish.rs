//! Writes rule maps and identity shards with server-side apply, only where
//! the cluster's copy differs from the compiled one.

use std::collections::BTreeMap;

use bulkhead_api::{IdentityMap, IdentityMapSpec, NodeRuleMap, NodeRuleMapSpec};
use futures::stream::{self, StreamExt};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};

use crate::call::{bounded, CALL_TIMEOUT};
use crate::metrics::Metrics;
use crate::{Error, FIELD_MANAGER};

/// The name of IdentityMap shard `i`.
pub fn shard_name(i: u32) -> String {
    format!("shard-{i}")
}

/// What a published kind must be to be applied and deleted by name.
trait Published:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
{
}

impl<K> Published for K where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
{
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
    let desired = desired.iter().map(|(n, s)| (n.clone(), s)).collect();
    converge(
        client,
        desired,
        current,
        |o| &o.spec,
        NodeRuleMap::new,
        metrics,
    )
    .await
}

/// Brings the cluster's IdentityMap shards to `desired` (indexed by shard).
pub async fn shards(
    client: &Client,
    desired: &[IdentityMapSpec],
    current: &mut BTreeMap<String, IdentityMap>,
    metrics: &Metrics,
) -> Result<usize, Error> {
    let desired = desired.iter().map(|s| (shard_name(s.shard), s)).collect();
    converge(
        client,
        desired,
        current,
        |o| &o.spec,
        IdentityMap::new,
        metrics,
    )
    .await
}

/// Applies what differs from `current` (by `spec_of`), deletes what is not
/// desired.
async fn converge<K, S: PartialEq + Clone>(
    client: &Client,
    desired: BTreeMap<String, &S>,
    current: &mut BTreeMap<String, K>,
    spec_of: fn(&K) -> &S,
    build: fn(&str, S) -> K,
    metrics: &Metrics,
) -> Result<usize, Error>
where
    K: Published,
{
    let api: Api<K> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let changed = desired
        .iter()
        .filter(|(name, spec)| current.get(*name).is_none_or(|o| spec_of(o) != **spec))
        .map(|(name, spec)| (name.clone(), build(name, (*spec).clone())))
        .collect::<Vec<_>>();
    let writes = apply_all(&api, &params, changed.into_iter(), current, metrics).await?;
    let deletes = delete_stale(&api, current, |n| desired.contains_key(n), metrics).await?;
    Ok(writes + deletes)
}

/// Deletes every object of `current` that `wanted` rejects (one already
/// gone counts as deleted); returns how many.
async fn delete_stale<K>(
    api: &Api<K>,
    current: &mut BTreeMap<String, K>,
    wanted: impl Fn(&str) -> bool,
    metrics: &Metrics,
) -> Result<usize, Error>
where
    K: Published,
{
    let kind = K::kind(&());
    let stale: Vec<String> = current.keys().filter(|n| !wanted(n)).cloned().collect();
    for name in &stale {
        let action = format!("deleting {kind} {name}");
        match bounded(
            action,
            CALL_TIMEOUT,
            api.delete(name, &DeleteParams::default()),
        )
        .await
        {
            Ok(_) => {}
            Err(Error::Kube {
                source: kube::Error::Api(s),
                ..
            }) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
        current.remove(name);
        metrics.write(&kind.to_lowercase());
    }
    Ok(stale.len())
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
    K: Published,
{
    let kind = K::kind(&());
    let kind = &kind;
    let results: Vec<(String, Result<K, Error>)> = stream::iter(objects)
        .map(|(name, obj)| async move {
            let action = format!("applying {kind} {name}");
            let patch = Patch::Apply(&obj);
            let applied = bounded(action, CALL_TIMEOUT, api.patch(&name, params, &patch)).await;
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
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(writes), Err)
}

#[cfg(test)]
mod tests {
    use bulkhead_api::IdentityEntry;
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::fixtures::{Call, FakeApi};
    use crate::metrics::KindLabel;

    const SHARDS: &str = "/apis/bulkhead.dev/v1alpha1/identitymaps";

    fn writes(metrics: &Metrics, kind: &str) -> u64 {
        let kind = KindLabel { kind: kind.into() };
        metrics.writes.get_or_create(&kind).get()
    }

    fn spec(shard: u32, shards: u32, id: u32) -> IdentityMapSpec {
        IdentityMapSpec {
            shard,
            shards,
            identities: vec![IdentityEntry {
                id,
                labels: [("app".to_string(), format!("a{id}"))].into(),
            }],
            ..IdentityMapSpec::default()
        }
    }

    /// The copies of the stale-object loop had drifted: deleting a shard
    /// was not counted as a write.
    #[tokio::test]
    async fn shards_applies_what_changed_and_deletes_and_counts_what_is_stale() {
        let (client, api) = FakeApi::start();
        let metrics = Metrics::register(&mut Registry::default());
        let mut current: BTreeMap<String, IdentityMap> = BTreeMap::new();
        for (i, id) in [(0, 256), (1, 257), (2, 258)] {
            let obj = IdentityMap::new(&shard_name(i), spec(i, 3, id));
            let value = serde_json::to_value(&obj).expect("json");
            api.put(&format!("{SHARDS}/shard-{i}"), value);
            current.insert(shard_name(i), obj);
        }
        // Down to two shards: shard-0 keeps its content, shard-1 changes.
        let desired = [spec(0, 3, 256), spec(1, 2, 259)];
        let made = shards(&client, &desired, &mut current, &metrics).await;
        assert_eq!(made.expect("published"), 2);
        let calls: Vec<String> = api.take_calls().iter().map(Call::line).collect();
        assert_eq!(
            calls,
            [
                format!("PATCH {SHARDS}/shard-1"),
                format!("DELETE {SHARDS}/shard-2")
            ]
        );
        assert_eq!(writes(&metrics, "identitymap"), 2);
        assert_eq!(
            current.keys().collect::<Vec<_>>(),
            ["shard-0", "shard-1"],
            "what the cluster has now"
        );
        assert_eq!(current["shard-1"].spec, desired[1]);
        // A shard someone else already deleted counts as deleted.
        let obj = IdentityMap::new("shard-5", spec(5, 6, 261));
        current.insert("shard-5".into(), obj);
        let made = shards(&client, &desired, &mut current, &metrics).await;
        assert_eq!(made.expect("published"), 1);
        assert!(!current.contains_key("shard-5"));
    }

    #[tokio::test]
    async fn rule_maps_writes_nothing_when_the_cluster_has_the_compiled_maps() {
        let (client, api) = FakeApi::start();
        let metrics = Metrics::register(&mut Registry::default());
        let desired: BTreeMap<String, NodeRuleMapSpec> =
            [("n1".to_string(), NodeRuleMapSpec::default())].into();
        let mut current = BTreeMap::new();
        let made = rule_maps(&client, &desired, &mut current, &metrics).await;
        assert_eq!(made.expect("published"), 1);
        assert_eq!(api.take_calls().len(), 1);
        let made = rule_maps(&client, &desired, &mut current, &metrics).await;
        assert_eq!(made.expect("published"), 0);
        assert!(api.take_calls().is_empty());
        assert_eq!(writes(&metrics, "noderulemap"), 1);
    }
}
