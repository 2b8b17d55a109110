//! Policy and mapping status (kstatus conditions with `observedGeneration`)
//! and the Events that go with their transitions. Written only when the
//! content changes.

use std::collections::BTreeMap;
use std::fmt::Debug;

use bulkhead_api::condition::{types, Condition, ConditionStatus};
use bulkhead_api::promotion::{PromotionState, PromotionStatus, PROMOTED};
use bulkhead_api::{
    LabelMapping, LabelMappingStatus, NodeRuleMap, NodeRuleMapSpec, SegmentationException,
    SegmentationExceptionStatus, SegmentationPolicy, SegmentationPolicyStatus,
};
use bulkhead_policy::{MappingFacts, PolicyFacts};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::call::{bounded, CALL_TIMEOUT};
use crate::metrics::Metrics;
use crate::{Error, FIELD_MANAGER};

/// How many of `facts.nodes` have programmed the current content of their map.
pub fn nodes_programmed(
    facts: &PolicyFacts,
    desired: &BTreeMap<String, NodeRuleMapSpec>,
    current: &BTreeMap<String, NodeRuleMap>,
) -> u32 {
    facts
        .nodes
        .iter()
        .filter(|node| {
            let (Some(obj), Some(spec)) = (current.get(*node), desired.get(*node)) else {
                return false;
            };
            let programmed = obj.status.as_ref().and_then(|s| s.programmed_generation);
            // Ready=False: programming failed, or the host's heartbeat is
            // late (LeaseExpired) and nobody knows what it enforces now.
            let not_ready = obj.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == types::READY && c.status == ConditionStatus::False)
            });
            &obj.spec == spec
                && programmed.is_some()
                && programmed == obj.metadata.generation
                && !not_ready
        })
        .count() as u32
}

fn condition(
    type_: &str,
    holds: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if holds {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: None,
    }
}

/// The status a policy should have.
pub fn policy_status(
    facts: &PolicyFacts,
    generation: Option<i64>,
    programmed: u32,
) -> SegmentationPolicyStatus {
    let total = facts.nodes.len() as u32;
    let errors: Vec<&String> = facts
        .warnings
        .iter()
        .filter(|w| w.starts_with("not compiled"))
        .collect();
    let stalled = !errors.is_empty();
    let pending = !stalled && programmed < total;
    let (reason, message) = if stalled {
        (
            "CompileFailed",
            errors
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else if pending {
        (
            "Programming",
            format!("programmed on {programmed} of {total} nodes"),
        )
    } else {
        (
            "Programmed",
            format!(
                "programmed on {total} nodes, {} endpoints in scope",
                facts.matched_endpoints
            ),
        )
    };
    SegmentationPolicyStatus {
        observed_generation: generation,
        conditions: vec![
            condition(
                types::READY,
                !stalled && !pending,
                reason,
                message.clone(),
                generation,
            ),
            condition(
                types::RECONCILING,
                pending,
                reason,
                message.clone(),
                generation,
            ),
            condition(types::STALLED, stalled, reason, message, generation),
        ],
        matched_endpoints: facts.matched_endpoints,
        matched_identities: facts.matched_identities,
        nodes_total: total,
        nodes_programmed: programmed,
        nodes_summary: Some(format!("{programmed}/{total}")),
        warnings: facts.warnings.clone(),
        ..SegmentationPolicyStatus::default()
    }
}

/// The status a mapping should have.
pub fn mapping_status(facts: &MappingFacts, generation: Option<i64>) -> LabelMappingStatus {
    let conflicts = facts.conflicts.len() as u32;
    let message = if conflicts > 0 {
        format!("{conflicts} label conflicts leave keys unset; see conflictSamples")
    } else if !facts.warnings.is_empty() {
        facts.warnings.join("; ")
    } else {
        format!("labels {} endpoints", facts.endpoints_labeled)
    };
    let reason = if conflicts > 0 {
        "Conflicts"
    } else {
        "Applied"
    };
    LabelMappingStatus {
        observed_generation: generation,
        conditions: vec![condition(types::READY, true, reason, message, generation)],
        endpoints_labeled: facts.endpoints_labeled,
        conflicts,
        conflict_samples: facts
            .conflicts
            .iter()
            .take(20)
            .map(ToString::to_string)
            .collect(),
    }
}

/// Keeps the last status written per object, so unchanged statuses are not
/// written again and transition times survive.
#[derive(Debug, Default)]
pub struct StatusWriter {
    policies: BTreeMap<String, SegmentationPolicyStatus>,
    mappings: BTreeMap<String, LabelMappingStatus>,
}

fn stamp(conditions: &mut [Condition], before: Option<&[Condition]>) {
    let now = jiff::Timestamp::now().to_string();
    for c in conditions {
        let old = before.and_then(|b| b.iter().find(|o| o.type_ == c.type_));
        c.last_transition_time = match old {
            Some(o) if o.status == c.status => o.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
    }
}

fn same_ignoring_time(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.type_ == y.type_
                && x.status == y.status
                && x.reason == y.reason
                && x.message == y.message
                && x.observed_generation == y.observed_generation
        })
}

/// A cluster-scoped kind whose status the operator writes.
pub(crate) trait WithStatus:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    type Status: Clone + PartialEq + Serialize + Send;
    /// The metrics label and the name in messages.
    const KIND: &'static str;
    fn into_status(self) -> Option<Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition>;
}

/// The two kinds have the same shape: `status: Option<_>` with `conditions`.
macro_rules! with_status {
    ($kind:ident, $status:ident) => {
        impl WithStatus for $kind {
            type Status = $status;
            const KIND: &'static str = stringify!($kind);
            fn into_status(self) -> Option<Self::Status> {
                self.status
            }
            fn conditions(status: &Self::Status) -> &[Condition] {
                &status.conditions
            }
            fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition> {
                &mut status.conditions
            }
        }
    };
}

with_status!(SegmentationPolicy, SegmentationPolicyStatus);
with_status!(LabelMapping, LabelMappingStatus);
with_status!(SegmentationException, SegmentationExceptionStatus);

/// Puts the cluster's status of `name` in `written` unless it holds one:
/// the first look since this replica started.
async fn read_once<K: WithStatus>(
    written: &mut BTreeMap<String, K::Status>,
    client: &Client,
    name: &str,
) -> Result<(), Error> {
    if written.contains_key(name) {
        return Ok(());
    }
    let api: Api<K> = Api::all(client.clone());
    let action = format!("reading status of {} {name}", K::KIND);
    let current = bounded(action, CALL_TIMEOUT, api.get_status(name)).await?;
    if let Some(st) = current.into_status() {
        written.insert(name.to_string(), st);
    }
    Ok(())
}

/// Writes `status` to object `name` unless it equals the last one written
/// (transition times aside); stamps transition times from the last one.
/// The first write since this replica started reads the cluster's status,
/// so transition times carry over restarts. Returns the previous status
/// when it wrote, `None` when nothing changed.
pub(crate) async fn write_status<K: WithStatus>(
    written: &mut BTreeMap<String, K::Status>,
    client: &Client,
    name: &str,
    mut status: K::Status,
    metrics: &Metrics,
) -> Result<Option<Option<K::Status>>, Error> {
    let api: Api<K> = Api::all(client.clone());
    read_once::<K>(written, client, name).await?;
    let before = written.get(name).cloned();
    if let Some(b) = &before {
        let mut probe = status.clone();
        *K::conditions_mut(&mut probe) = K::conditions(b).to_vec();
        if probe == *b && same_ignoring_time(K::conditions(&status), K::conditions(b)) {
            return Ok(None);
        }
    }
    stamp(
        K::conditions_mut(&mut status),
        before.as_ref().map(|b| K::conditions(b)),
    );
    let patch = serde_json::json!({ "status": status });
    let action = format!("writing status of {} {name}", K::KIND);
    let params = PatchParams::apply(FIELD_MANAGER);
    let patch = Patch::Merge(&patch);
    bounded(
        action,
        CALL_TIMEOUT,
        api.patch_status(name, &params, &patch),
    )
    .await?;
    metrics.write(&K::KIND.to_lowercase());
    written.insert(name.to_string(), status);
    Ok(Some(before))
}

impl StatusWriter {
    /// Writes a policy's status if it changed; publishes an Event on a transition
    /// into Ready or Stalled.
    pub async fn policy(
        &mut self,
        client: &Client,
        recorder: &Recorder,
        name: &str,
        status: SegmentationPolicyStatus,
        metrics: &Metrics,
    ) -> Result<(), Error> {
        let Some(before) =
            write_status::<SegmentationPolicy>(&mut self.policies, client, name, status, metrics)
                .await?
        else {
            return Ok(());
        };
        let Some(status) = self.policies.get(name) else {
            return Ok(());
        };
        let holds = |conditions: &[Condition], t: &str| {
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == ConditionStatus::True)
        };
        let became = |t: &str| {
            holds(&status.conditions, t)
                && !before.as_ref().is_some_and(|b| holds(&b.conditions, t))
        };
        let event = if became(types::STALLED) {
            Some((EventType::Warning, "CompileFailed"))
        } else if became(types::READY) {
            Some((EventType::Normal, "Programmed"))
        } else {
            None
        };
        if let Some((type_, reason)) = event {
            let note = status.conditions.first().map(|c| c.message.clone());
            policy_event(recorder, name, type_, reason, "Compile", note, metrics).await;
        }
        Ok(())
    }

    /// The rule hits policy `name`'s status holds: as last written, or as
    /// the cluster has them on the first look since this replica started.
    pub async fn written_hits(
        &mut self,
        client: &Client,
        name: &str,
    ) -> Result<Vec<bulkhead_api::hits::RuleHits>, Error> {
        read_once::<SegmentationPolicy>(&mut self.policies, client, name).await?;
        // No status yet: remembered as empty, so the write does not read again.
        let status = self.policies.entry(name.to_string()).or_default();
        Ok(status.rule_hits.clone())
    }

    /// Writes a mapping's status if it changed.
    pub async fn mapping(
        &mut self,
        client: &Client,
        name: &str,
        status: LabelMappingStatus,
        metrics: &Metrics,
    ) -> Result<(), Error> {
        write_status::<LabelMapping>(&mut self.mappings, client, name, status, metrics)
            .await
            .map(drop)
    }

    /// Forgets objects that are gone.
    pub fn retain(
        &mut self,
        policies: &BTreeMap<String, PolicyFacts>,
        mappings: &BTreeMap<String, MappingFacts>,
    ) {
        self.policies.retain(|n, _| policies.contains_key(n));
        self.mappings.retain(|n, _| mappings.contains_key(n));
    }
}

/// Publishes an Event about policy `name`; a failure is counted and logged,
/// never fatal.
pub async fn policy_event(
    recorder: &Recorder,
    name: &str,
    type_: EventType,
    reason: &str,
    action: &str,
    note: Option<String>,
    metrics: &Metrics,
) {
    let reference = SegmentationPolicy::object_ref_for(name);
    publish_event(
        recorder, reference, name, type_, reason, action, note, metrics,
    )
    .await;
}

/// Records an Event on SegmentationException `name`.
pub async fn exception_event(
    recorder: &Recorder,
    name: &str,
    type_: EventType,
    reason: &str,
    note: String,
    metrics: &Metrics,
) {
    let reference = SegmentationException::object_ref_for(name);
    let note = Some(note);
    publish_event(
        recorder, reference, name, type_, reason, "Enforce", note, metrics,
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn publish_event(
    recorder: &Recorder,
    reference: k8s_openapi::api::core::v1::ObjectReference,
    name: &str,
    type_: EventType,
    reason: &str,
    action: &str,
    note: Option<String>,
    metrics: &Metrics,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note,
        action: action.into(),
        secondary: None,
    };
    let publish = recorder.publish(&ev, &reference);
    if let Err(e) = bounded("publishing an Event", CALL_TIMEOUT, publish).await {
        metrics.error("event");
        tracing::warn!(policy = name, error = %e, "could not publish an event");
    }
}

/// The `Promoted` condition of a policy with a promotion gate.
pub fn promoted_condition(gate: &PromotionStatus, generation: Option<i64>) -> Condition {
    let reason = match gate.state {
        PromotionState::Observing => "Observing",
        PromotionState::Blocked => "WouldDeny",
        PromotionState::Unknown => "HistoryUnavailable",
        PromotionState::Promoted => "Promoted",
        PromotionState::Invalid => "InvalidGate",
    };
    condition(
        PROMOTED,
        gate.state == PromotionState::Promoted,
        reason,
        gate.message.clone(),
        generation,
    )
}

/// An object reference for a cluster-scoped Bulkhead object, for Events.
trait ObjectRefFor {
    fn object_ref_for(name: &str) -> k8s_openapi::api::core::v1::ObjectReference;
}

impl<K: Resource<DynamicType = ()>> ObjectRefFor for K {
    fn object_ref_for(name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
        k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name.to_string()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_api::NodeRuleMapStatus;
    use kube::api::ObjectMeta;

    use super::*;

    fn facts(nodes: &[&str]) -> PolicyFacts {
        PolicyFacts {
            matched_endpoints: 3,
            matched_identities: 1,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            warnings: vec![],
        }
    }

    fn published(spec: NodeRuleMapSpec, generation: i64, programmed: Option<i64>) -> NodeRuleMap {
        NodeRuleMap {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec,
            status: Some(NodeRuleMapStatus {
                programmed_generation: programmed,
                ..NodeRuleMapStatus::default()
            }),
        }
    }

    #[test]
    fn a_node_counts_as_programmed_only_with_the_compiled_map_at_its_generation() {
        let compiled = NodeRuleMapSpec::default();
        let mut other = NodeRuleMapSpec::default();
        other.host.name = "stale".into();
        let desired: BTreeMap<String, NodeRuleMapSpec> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| (n.to_string(), compiled.clone()))
            .collect();
        let current: BTreeMap<String, NodeRuleMap> = [
            ("a", published(compiled.clone(), 3, Some(3))), // programmed
            ("b", published(compiled.clone(), 3, Some(2))), // an older generation
            ("c", published(other, 4, Some(4))),            // not what is compiled
            ("d", published(compiled.clone(), 1, None)),    // nothing programmed yet
        ]
        .into_iter()
        .map(|(n, m)| (n.to_string(), m))
        .collect();
        let all = facts(&["a", "b", "c", "d", "e"]);
        assert_eq!(nodes_programmed(&all, &desired, &current), 1);
        assert_eq!(nodes_programmed(&facts(&["b"]), &desired, &current), 0);
    }

    #[test]
    fn policy_status_is_reconciling_until_every_node_programmed_and_stalled_on_errors() {
        // Which of Ready, Reconciling, Stalled hold.
        let holding = |st: &SegmentationPolicyStatus| {
            [types::READY, types::RECONCILING, types::STALLED].map(|t| {
                st.conditions
                    .iter()
                    .any(|c| c.type_ == t && c.status == ConditionStatus::True)
            })
        };
        let f = facts(&["a", "b"]);
        let pending = policy_status(&f, Some(7), 1);
        assert_eq!(holding(&pending), [false, true, false]);
        assert_eq!(pending.nodes_summary.as_deref(), Some("1/2"));
        assert_eq!(pending.observed_generation, Some(7));
        let observed = pending.conditions.iter().map(|c| c.observed_generation);
        assert!(observed.into_iter().all(|g| g == Some(7)));
        let done = policy_status(&f, Some(7), 2);
        assert_eq!(holding(&done), [true, false, false]);
        let broken = PolicyFacts {
            warnings: vec!["not compiled: scope: bad selector".into()],
            ..f
        };
        let stalled = policy_status(&broken, Some(8), 0);
        assert_eq!(holding(&stalled), [false, false, true]);
        assert!(stalled.conditions[0].message.contains("bad selector"));
    }
}
