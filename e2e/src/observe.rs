//! Reading what the operator and the agents published, typed with the
//! project's own API types, through kubectl as a user would.

use std::collections::BTreeMap;

use bulkhead_api::{IdentityMap, LabelMapping, Labels, NodeRuleMap, SegmentationPolicy};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::kubectl::Kubectl;
use crate::operator::OPERATOR_NAMESPACE;

/// The Lease the operator replicas compete for.
pub const OPERATOR_LEASE: &str = "bulkhead-operator";

fn typed<T: DeserializeOwned>(what: &str, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Unexpected {
        what: what.to_owned(),
        problem: format!("does not parse as the API type: {e}"),
    })
}

/// One object, or `None` when it does not exist.
pub fn get<T: DeserializeOwned>(kubectl: &Kubectl, kind: &str, name: &str) -> Result<Option<T>> {
    let out = kubectl.output(
        &["get", kind, name, "-o", "json", "--ignore-not-found"],
        None,
    )?;
    if !out.success {
        return Err(Error::Command {
            command: format!("kubectl get {kind} {name}"),
            status: format!("{:?}", out.code),
            stderr: out.stderr.trim().to_owned(),
        });
    }
    if out.stdout.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value =
        serde_json::from_str(&out.stdout).map_err(|e| Error::Unexpected {
            what: format!("{kind} {name}"),
            problem: format!("kubectl printed no JSON: {e}"),
        })?;
    typed(&format!("{kind} {name}"), value).map(Some)
}

/// Every object of a cluster-scoped kind, by name.
pub fn list<T: DeserializeOwned>(kubectl: &Kubectl, kind: &str) -> Result<BTreeMap<String, T>> {
    let list = kubectl.json(&["get", kind])?;
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().cloned().unwrap_or_default() {
        let name = item["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.insert(name.clone(), typed(&format!("{kind} {name}"), item)?);
    }
    Ok(out)
}

pub fn rule_map(kubectl: &Kubectl, node: &str) -> Result<Option<NodeRuleMap>> {
    get(kubectl, "noderulemaps.bulkhead.dev", node)
}

pub fn rule_maps(kubectl: &Kubectl) -> Result<BTreeMap<String, NodeRuleMap>> {
    list(kubectl, "noderulemaps.bulkhead.dev")
}

pub fn identity_maps(kubectl: &Kubectl) -> Result<BTreeMap<String, IdentityMap>> {
    list(kubectl, "identitymaps.bulkhead.dev")
}

pub fn policy(kubectl: &Kubectl, name: &str) -> Result<Option<SegmentationPolicy>> {
    get(kubectl, "segmentationpolicies.bulkhead.dev", name)
}

pub fn mapping(kubectl: &Kubectl, name: &str) -> Result<Option<LabelMapping>> {
    get(kubectl, "labelmappings.bulkhead.dev", name)
}

/// Who holds the operator's Lease now.
pub fn lease_holder(kubectl: &Kubectl) -> Result<Option<String>> {
    let out = kubectl.output(
        &[
            "get",
            "lease",
            "-n",
            OPERATOR_NAMESPACE,
            OPERATOR_LEASE,
            "-o",
            "jsonpath={.spec.holderIdentity}",
            "--ignore-not-found",
        ],
        None,
    )?;
    Ok(Some(out.stdout.trim().to_owned()).filter(|h| out.success && !h.is_empty()))
}

/// The events.k8s.io Events about an object of `kind` named `name`, oldest first.
pub fn events_about(kubectl: &Kubectl, kind: &str, name: &str) -> Result<Vec<serde_json::Value>> {
    let list = kubectl.json(&["get", "events.events.k8s.io", "-A"])?;
    let mut events: Vec<serde_json::Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
        .collect();
    events.sort_by_key(|e| {
        e["metadata"]["creationTimestamp"]
            .as_str()
            .map(str::to_owned)
    });
    Ok(events)
}

/// Identity number → labels, and address prefix → identity, from the shards.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    pub labels: BTreeMap<u32, Labels>,
    pub prefixes: BTreeMap<String, u32>,
}

impl Directory {
    pub fn from_shards<'a>(shards: impl IntoIterator<Item = &'a IdentityMap>) -> Self {
        let mut dir = Self::default();
        for shard in shards {
            for entry in &shard.spec.identities {
                dir.labels.insert(entry.id, entry.labels.clone());
            }
            for prefix in &shard.spec.prefixes {
                dir.prefixes.insert(prefix.cidr.clone(), prefix.identity);
            }
        }
        dir
    }

    /// The identity whose labels are exactly `labels`.
    pub fn identity_of(&self, labels: &Labels) -> Option<u32> {
        self.labels
            .iter()
            .find(|(_, l)| *l == labels)
            .map(|(id, _)| *id)
    }

    /// A printable name for an identity: its labels, or `#<n>` for a
    /// reserved identity (no labels in the shards).
    pub fn describe(&self, id: u32) -> String {
        match self.labels.get(&id) {
            Some(labels) => labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            None => format!("#{id}"),
        }
    }
}

/// The sum of every sample of a metric family in Prometheus text,
/// e.g. `bulkhead_operator_writes_total` over all kinds.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    metric_sum_where(text, name, "")
}

/// The sum of the samples of a metric family whose labels contain `label`,
/// e.g. `kind="noderulemap"`.
pub fn metric_sum_where(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(label))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let family = key.split('{').next()?;
            (family == name).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_every_label_set_of_one_family() {
        let text = "# HELP x\nbulkhead_operator_writes_total{kind=\"noderulemap\"} 3\n\
                    bulkhead_operator_writes_total{kind=\"identitymap\"} 16\n\
                    bulkhead_operator_writes_totally 99\nbulkhead_operator_leader 1\n";
        assert_eq!(metric_sum(text, "bulkhead_operator_writes_total"), 19.0);
        assert_eq!(metric_sum(text, "bulkhead_operator_leader"), 1.0);
        assert_eq!(metric_sum(text, "absent"), 0.0);
        let kind = "kind=\"identitymap\"";
        assert_eq!(
            metric_sum_where(text, "bulkhead_operator_writes_total", kind),
            16.0
        );
    }
}
