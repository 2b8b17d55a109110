//! Watches turned into compiler changes.
//!
//! One task per kind. Objects become [`Change`]s through
//! `bulkhead_policy::convert`; an object that does not convert is counted
//! and logged, and whatever the compiler had for it stays. After every
//! (re)list the task compares what it saw with what it knew and deletes the
//! objects that vanished while the watch was down.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_api::watch::{Bookkeeping, ObjectKey, Seen};
use bulkhead_api::{
    ExternalNode, IdentityMap, LabelMapping, NodeRuleMap, SegmentationException, SegmentationPolicy,
};
use bulkhead_policy::netpol::NetworkPolicyKey;
use bulkhead_policy::service::EndpointSliceKey;
use bulkhead_policy::snapshot::PodKey;
use bulkhead_policy::{convert, Change};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::utils::Backoff;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::metrics::{KindLabel, Metrics};
use crate::observed::Observed;
use crate::promotion::PolicyMeta;

/// The kinds the compiler reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 Pod.
    Pod,
    /// core/v1 Namespace.
    Namespace,
    /// core/v1 Node.
    Node,
    /// ExternalNode.
    ExternalNode,
    /// LabelMapping.
    LabelMapping,
    /// SegmentationPolicy.
    SegmentationPolicy,
    /// networking.k8s.io/v1 NetworkPolicy (only with `--network-policies`).
    NetworkPolicy,
    /// SegmentationException (compiled as `exception:<name>` once approved).
    SegmentationException,
    /// discovery.k8s.io/v1 EndpointSlice: the backends of `service` peers.
    EndpointSlice,
}

impl Kind {
    /// The kinds always watched.
    pub const ALWAYS: [Kind; 8] = [
        Kind::Pod,
        Kind::Namespace,
        Kind::Node,
        Kind::ExternalNode,
        Kind::LabelMapping,
        Kind::SegmentationPolicy,
        Kind::SegmentationException,
        Kind::EndpointSlice,
    ];

    /// Every kind that must have listed before anything is published.
    pub fn required(network_policies: bool) -> Vec<Kind> {
        let mut kinds = Self::ALWAYS.to_vec();
        if network_policies {
            kinds.push(Kind::NetworkPolicy);
        }
        kinds
    }

    /// Lower-case name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Namespace => "namespace",
            Kind::Node => "node",
            Kind::ExternalNode => "externalnode",
            Kind::LabelMapping => "labelmapping",
            Kind::SegmentationPolicy => "segmentationpolicy",
            Kind::NetworkPolicy => "networkpolicy",
            Kind::SegmentationException => "segmentationexception",
            Kind::EndpointSlice => "endpointslice",
        }
    }
}

/// What the watches tell the engine.
// Changes are the payload and go through the channel one at a time; boxing
// them would cost an allocation per watch event to save none.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum FeedEvent {
    /// A change to compile; `generation` is set for policies and mappings,
    /// `policy` for SegmentationPolicies (what their promotion gates read).
    Change {
        change: Change,
        generation: Option<(Kind, String, i64)>,
        policy: Option<Box<(String, PolicyMeta)>>,
    },
    /// A kind has listed completely (after a start or a re-list).
    Synced(Kind),
    /// A NodeRuleMap as it is in the cluster now (spec published, status from the agent).
    RuleMap(Box<NodeRuleMap>),
    /// A NodeRuleMap was deleted.
    RuleMapGone(String),
    /// An IdentityMap as it is in the cluster now.
    Shard(Box<IdentityMap>),
    /// An IdentityMap was deleted.
    ShardGone(String),
    /// The published objects of a kind (`noderulemap`, `identitymap`) have listed completely.
    PublishedSynced(&'static str),
    /// A SegmentationException as it is now (the engine compiles it, see exceptions.rs).
    Exception(Box<SegmentationException>),
    /// A SegmentationException was deleted.
    ExceptionGone(String),
}

type Sender = mpsc::Sender<FeedEvent>;

/// What every watch task holds: where its events go, its metrics, and the
/// record of what it fed (see [`Observed`]).
#[derive(Clone)]
struct Ctx {
    tx: Sender,
    metrics: Arc<Metrics>,
    observed: Arc<Observed>,
}

/// The resourceVersion an event carries (none for the list markers).
fn event_version<K: Resource>(event: &watcher::Event<K>) -> Option<String> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
            o.meta().resource_version.clone()
        }
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// How long a watch waits before it retries: doubling from 250 ms up to
/// 4 s (kube's default goes up to 30 s, which after an API server outage of
/// a few seconds leaves policy changes unseen for half a minute), back to
/// the start once a retry gets through.
#[derive(Debug)]
pub struct Reconnect {
    next: Duration,
}

impl Reconnect {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(4);
}

impl Default for Reconnect {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for Reconnect {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(now)
    }
}

impl Backoff for Reconnect {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Starts every watch; they run until the receiver is dropped. NetworkPolicies
/// are watched only when `network_policies` is set (the compiler ignores
/// them otherwise, and the operator then needs no RBAC for them).
pub fn start(
    client: Client,
    tx: Sender,
    metrics: Arc<Metrics>,
    observed: Arc<Observed>,
    network_policies: bool,
) {
    let ctx = Ctx {
        tx,
        metrics,
        observed,
    };
    if network_policies {
        spawn_kind(
            Api::<NetworkPolicy>::all(client.clone()),
            Kind::NetworkPolicy,
            ctx.clone(),
            |p| convert::network_policy(p).map(|(k, v)| (Change::UpsertNetworkPolicy(k, v), None)),
            |key| Change::DeleteNetworkPolicy(NetworkPolicyKey::new(key.namespace(), &key.name)),
        );
    }
    spawn_kind(
        Api::<Pod>::all(client.clone()),
        Kind::Pod,
        ctx.clone(),
        |p| convert::pod(p).map(|(k, v)| (Change::UpsertPod(k, v), None)),
        |key| Change::DeletePod(PodKey::new(key.namespace(), &key.name)),
    );
    spawn_kind(
        Api::<Namespace>::all(client.clone()),
        Kind::Namespace,
        ctx.clone(),
        |n| convert::namespace(n).map(|(k, v)| (Change::UpsertNamespace(k, v), None)),
        |key| Change::DeleteNamespace(key.name.clone()),
    );
    spawn_kind(
        Api::<Node>::all(client.clone()),
        Kind::Node,
        ctx.clone(),
        |n| convert::node(n).map(|(k, v)| (Change::UpsertNode(k, v), None)),
        |key| Change::DeleteNode(key.name.clone()),
    );
    spawn_kind(
        Api::<ExternalNode>::all(client.clone()),
        Kind::ExternalNode,
        ctx.clone(),
        |n| convert::external_node(n).map(|(k, v)| (Change::UpsertExternalNode(k, v), None)),
        |key| Change::DeleteExternalNode(key.name.clone()),
    );
    spawn_kind(
        Api::<LabelMapping>::all(client.clone()),
        Kind::LabelMapping,
        ctx.clone(),
        |m| convert::label_mapping(m).map(|(k, v)| (Change::UpsertMapping(k, v), None)),
        |key| Change::DeleteMapping(key.name.clone()),
    );
    spawn_kind(
        Api::<SegmentationPolicy>::all(client.clone()),
        Kind::SegmentationPolicy,
        ctx.clone(),
        |p| {
            convert::segmentation_policy(p).map(|(k, v)| {
                let meta = (k.clone(), PolicyMeta::of(p));
                (Change::UpsertPolicy(k, v), Some(meta))
            })
        },
        |key| Change::DeletePolicy(key.name.clone()),
    );
    spawn_kind(
        Api::<EndpointSlice>::all(client.clone()),
        Kind::EndpointSlice,
        ctx.clone(),
        |s| convert::endpoint_slice(s).map(|(k, v)| (Change::UpsertEndpointSlice(k, v), None)),
        |key| Change::DeleteEndpointSlice(EndpointSliceKey::new(key.namespace(), &key.name)),
    );
    let exceptions = Api::<SegmentationException>::all(client.clone());
    spawn_watch(
        exceptions,
        Kind::SegmentationException.name(),
        ctx.clone(),
        |seen| {
            Some(match seen {
                Seen::Applied(_, obj) => FeedEvent::Exception(Box::new(obj)),
                Seen::Deleted(key) => FeedEvent::ExceptionGone(key.name),
                Seen::Synced => FeedEvent::Synced(Kind::SegmentationException),
            })
        },
    );
    spawn_published(
        Api::<NodeRuleMap>::all(client.clone()),
        ctx.clone(),
        "noderulemap",
        |o| FeedEvent::RuleMap(Box::new(o)),
        FeedEvent::RuleMapGone,
    );
    spawn_published(
        Api::<IdentityMap>::all(client),
        ctx,
        "identitymap",
        |o| FeedEvent::Shard(Box::new(o)),
        FeedEvent::ShardGone,
    );
}

/// Runs one watch: every event through the bookkeeping, then `on` turns
/// what was seen into feed events. `name` labels logs and metrics.
fn spawn_watch<K, F>(api: Api<K>, name: &'static str, ctx: Ctx, mut on: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(Seen<K>) -> Option<FeedEvent> + Send + 'static,
{
    tokio::spawn(async move {
        let Ctx {
            tx,
            metrics,
            observed,
        } = ctx;
        let mut book = Bookkeeping::default();
        let gauge = metrics
            .objects
            .get_or_create(&KindLabel { kind: name.into() })
            .clone();
        let mut stream = watcher(api, watcher::Config::default())
            .backoff(Reconnect::default())
            .boxed();
        loop {
            let event = match stream.try_next().await {
                Ok(Some(e)) => e,
                Ok(None) => return,
                Err(e) => {
                    metrics.error(name);
                    tracing::warn!(kind = name, error = %e, "watch failed; retrying");
                    continue;
                }
            };
            let version = event_version(&event);
            let seen = book.event(event);
            gauge.set(book.len() as i64);
            for e in seen.into_iter().filter_map(&mut on) {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            observed.fed(name, version.as_deref());
        }
    });
}

/// A watch of a kind the compiler reads: objects become changes.
fn spawn_kind<K, C, D>(api: Api<K>, kind: Kind, ctx: Ctx, to_change: C, delete: D)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Fn(&K) -> Result<(Change, Option<(String, PolicyMeta)>), convert::ConvertError>
        + Send
        + 'static,
    D: Fn(&ObjectKey) -> Change + Send + 'static,
{
    let errors = ctx.metrics.clone();
    spawn_watch(api, kind.name(), ctx, move |seen| match seen {
        Seen::Applied(key, obj) => match to_change(&obj) {
            Ok((change, policy)) => {
                let generation = matches!(kind, Kind::SegmentationPolicy | Kind::LabelMapping)
                    .then(|| obj.meta().generation.map(|g| (kind, key.to_string(), g)))
                    .flatten();
                Some(FeedEvent::Change {
                    change,
                    generation,
                    policy: policy.map(Box::new),
                })
            }
            Err(e) => {
                errors.error(kind.name());
                tracing::warn!(kind = kind.name(), object = %key, error = %e, "ignoring an object that does not convert");
                None
            }
        },
        Seen::Deleted(key) => Some(FeedEvent::Change {
            change: delete(&key),
            generation: None,
            policy: None,
        }),
        Seen::Synced => Some(FeedEvent::Synced(kind)),
    });
}

/// A watch of what the operator publishes (and agents report on).
fn spawn_published<K, A>(
    api: Api<K>,
    ctx: Ctx,
    kind: &'static str,
    apply: A,
    gone: fn(String) -> FeedEvent,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    A: Fn(K) -> FeedEvent + Send + 'static,
{
    spawn_watch(api, kind, ctx, move |seen| match seen {
        Seen::Applied(_, obj) => Some(apply(obj)),
        Seen::Deleted(key) => Some(gone(key.name)),
        Seen::Synced => Some(FeedEvent::PublishedSynced(kind)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_doubles_up_to_its_cap_and_resets() {
        let mut b = Reconnect::default();
        let waits: Vec<u128> = b.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(250)));
    }
}
