//! Watches turned into compiler changes.
//!
//! One task per kind. Objects become [`Change`]s through
//! `bulkhead_policy::convert`; an object that does not convert is counted
//! and logged, and whatever the compiler had for it stays. After every
//! (re)list the task compares what it saw with what it knew and deletes the
//! objects that vanished while the watch was down.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

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
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::metrics::{KindLabel, Metrics};
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
pub fn start(client: Client, tx: Sender, metrics: Arc<Metrics>, network_policies: bool) {
    if network_policies {
        spawn_kind(
            Api::<NetworkPolicy>::all(client.clone()),
            Kind::NetworkPolicy,
            tx.clone(),
            metrics.clone(),
            |p| convert::network_policy(p).map(|(k, v)| (Change::UpsertNetworkPolicy(k, v), None)),
            |key| {
                let (ns, name) = key.split_once('/').unwrap_or(("default", key));
                Change::DeleteNetworkPolicy(NetworkPolicyKey::new(ns, name))
            },
        );
    }
    spawn_kind(
        Api::<Pod>::all(client.clone()),
        Kind::Pod,
        tx.clone(),
        metrics.clone(),
        |p| convert::pod(p).map(|(k, v)| (Change::UpsertPod(k, v), None)),
        |key| {
            let (ns, name) = key.split_once('/').unwrap_or(("default", key));
            Change::DeletePod(PodKey::new(ns, name))
        },
    );
    spawn_kind(
        Api::<Namespace>::all(client.clone()),
        Kind::Namespace,
        tx.clone(),
        metrics.clone(),
        |n| convert::namespace(n).map(|(k, v)| (Change::UpsertNamespace(k, v), None)),
        |key| Change::DeleteNamespace(key.to_string()),
    );
    spawn_kind(
        Api::<Node>::all(client.clone()),
        Kind::Node,
        tx.clone(),
        metrics.clone(),
        |n| convert::node(n).map(|(k, v)| (Change::UpsertNode(k, v), None)),
        |key| Change::DeleteNode(key.to_string()),
    );
    spawn_kind(
        Api::<ExternalNode>::all(client.clone()),
        Kind::ExternalNode,
        tx.clone(),
        metrics.clone(),
        |n| convert::external_node(n).map(|(k, v)| (Change::UpsertExternalNode(k, v), None)),
        |key| Change::DeleteExternalNode(key.to_string()),
    );
    spawn_kind(
        Api::<LabelMapping>::all(client.clone()),
        Kind::LabelMapping,
        tx.clone(),
        metrics.clone(),
        |m| convert::label_mapping(m).map(|(k, v)| (Change::UpsertMapping(k, v), None)),
        |key| Change::DeleteMapping(key.to_string()),
    );
    spawn_kind(
        Api::<SegmentationPolicy>::all(client.clone()),
        Kind::SegmentationPolicy,
        tx.clone(),
        metrics.clone(),
        |p| {
            convert::segmentation_policy(p).map(|(k, v)| {
                let meta = (k.clone(), PolicyMeta::of(p));
                (Change::UpsertPolicy(k, v), Some(meta))
            })
        },
        |key| Change::DeletePolicy(key.to_string()),
    );
    spawn_kind(
        Api::<EndpointSlice>::all(client.clone()),
        Kind::EndpointSlice,
        tx.clone(),
        metrics.clone(),
        |s| convert::endpoint_slice(s).map(|(k, v)| (Change::UpsertEndpointSlice(k, v), None)),
        |key| {
            let (ns, name) = key.split_once('/').unwrap_or(("default", key));
            Change::DeleteEndpointSlice(EndpointSliceKey::new(ns, name))
        },
    );
    let exceptions = Api::<SegmentationException>::all(client.clone());
    spawn_watch(
        exceptions,
        Kind::SegmentationException.name(),
        tx.clone(),
        metrics.clone(),
        |seen| {
            Some(match seen {
                Seen::Applied(_, obj) => FeedEvent::Exception(Box::new(obj)),
                Seen::Deleted(name) => FeedEvent::ExceptionGone(name),
                Seen::Synced => FeedEvent::Synced(Kind::SegmentationException),
            })
        },
    );
    spawn_published(
        Api::<NodeRuleMap>::all(client.clone()),
        tx.clone(),
        metrics.clone(),
        "noderulemap",
        |o| FeedEvent::RuleMap(Box::new(o)),
        FeedEvent::RuleMapGone,
    );
    spawn_published(
        Api::<IdentityMap>::all(client),
        tx,
        metrics,
        "identitymap",
        |o| FeedEvent::Shard(Box::new(o)),
        FeedEvent::ShardGone,
    );
}

fn key_of<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

/// A watcher event after the re-list bookkeeping.
#[derive(Debug, PartialEq)]
enum Seen<K> {
    /// The object as it is now (`namespace/name` or `name`).
    Applied(String, K),
    /// The object is gone: deleted, or missing from a re-list.
    Deleted(String),
    /// A (re)list is complete.
    Synced,
}

/// The one list/watch/re-list bookkeeping of every watch: what the last
/// list and the events since say exists, so that a re-list after an
/// outage reports what vanished meanwhile as deleted.
#[derive(Debug, Default)]
struct Bookkeeping {
    known: BTreeSet<String>,
    relisting: Option<BTreeSet<String>>,
}

impl Bookkeeping {
    fn event<K: Resource>(&mut self, event: watcher::Event<K>) -> Vec<Seen<K>> {
        match event {
            watcher::Event::Init => {
                self.relisting = Some(BTreeSet::new());
                vec![]
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let key = key_of(&obj);
                if let Some(seen) = &mut self.relisting {
                    seen.insert(key.clone());
                }
                self.known.insert(key.clone());
                vec![Seen::Applied(key, obj)]
            }
            watcher::Event::Delete(obj) => {
                let key = key_of(&obj);
                self.known.remove(&key);
                vec![Seen::Deleted(key)]
            }
            watcher::Event::InitDone => {
                let mut out = Vec::new();
                if let Some(seen) = self.relisting.take() {
                    let gone = self.known.difference(&seen);
                    out.extend(gone.map(|k| Seen::Deleted(k.clone())));
                    self.known = seen;
                }
                out.push(Seen::Synced);
                out
            }
        }
    }
}

/// Runs one watch: every event through the bookkeeping, then `on` turns
/// what was seen into feed events. `name` labels logs and metrics.
fn spawn_watch<K, F>(api: Api<K>, name: &'static str, tx: Sender, metrics: Arc<Metrics>, mut on: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: FnMut(Seen<K>) -> Option<FeedEvent> + Send + 'static,
{
    tokio::spawn(async move {
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
            let seen = book.event(event);
            gauge.set(book.known.len() as i64);
            for e in seen.into_iter().filter_map(&mut on) {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// A watch of a kind the compiler reads: objects become changes.
fn spawn_kind<K, C, D>(
    api: Api<K>,
    kind: Kind,
    tx: Sender,
    metrics: Arc<Metrics>,
    to_change: C,
    delete: D,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Fn(&K) -> Result<(Change, Option<(String, PolicyMeta)>), convert::ConvertError>
        + Send
        + 'static,
    D: Fn(&str) -> Change + Send + 'static,
{
    let errors = metrics.clone();
    spawn_watch(api, kind.name(), tx, metrics, move |seen| match seen {
        Seen::Applied(key, obj) => match to_change(&obj) {
            Ok((change, policy)) => {
                let generation = matches!(kind, Kind::SegmentationPolicy | Kind::LabelMapping)
                    .then(|| obj.meta().generation.map(|g| (kind, key, g)))
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
    tx: Sender,
    metrics: Arc<Metrics>,
    kind: &'static str,
    apply: A,
    gone: fn(String) -> FeedEvent,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    A: Fn(K) -> FeedEvent + Send + 'static,
{
    spawn_watch(api, kind, tx, metrics, move |seen| match seen {
        Seen::Applied(_, obj) => Some(apply(obj)),
        Seen::Deleted(name) => Some(gone(name)),
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

    fn node(name: &str) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some(name.into());
        n
    }

    fn names(seen: Vec<Seen<Node>>) -> Vec<String> {
        seen.into_iter()
            .map(|s| match s {
                Seen::Applied(k, _) => format!("+{k}"),
                Seen::Deleted(k) => format!("-{k}"),
                Seen::Synced => "synced".into(),
            })
            .collect()
    }

    #[test]
    fn a_relist_reports_what_vanished_while_the_watch_was_down() {
        let mut book = Bookkeeping::default();
        let mut run = |e| names(book.event(e));
        assert!(run(watcher::Event::Init).is_empty());
        assert_eq!(run(watcher::Event::InitApply(node("a"))), ["+a"]);
        assert_eq!(run(watcher::Event::InitApply(node("b"))), ["+b"]);
        assert_eq!(run(watcher::Event::InitDone), ["synced"]);
        assert_eq!(run(watcher::Event::Apply(node("c"))), ["+c"]);
        assert_eq!(run(watcher::Event::Delete(node("a"))), ["-a"]);
        // The watch broke; b went away unseen, d came.
        assert!(run(watcher::Event::Init).is_empty());
        assert_eq!(run(watcher::Event::InitApply(node("c"))), ["+c"]);
        assert_eq!(run(watcher::Event::InitApply(node("d"))), ["+d"]);
        assert_eq!(run(watcher::Event::InitDone), ["-b", "synced"]);
        assert_eq!(
            book.known.iter().collect::<Vec<_>>(),
            ["c", "d"],
            "what exists now"
        );
    }
}
