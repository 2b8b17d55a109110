//! Waiting for the operator to have published a change, not for a while.
//!
//! ```text
//!  lab.barrier()        resourceVersion of every object of the kinds below
//!  ... kubectl changes ...
//!  lab.wait_published() per kind: the highest new or changed version, or
//!                       (something was deleted) the highest old one + 1;
//!                       waits until an operator's
//!                       bulkhead_operator_published_resource_version{kind}
//!                       reaches it (operator/src/observed.rs)
//! ```
//!
//! A deletion's event carries a version above every version that existed
//! before it, so "published > the highest old version" proves the deletion
//! was taken in. Kinds nothing changed in need nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Lab;
use crate::error::{Error, Result};
use crate::wait::wait_until;

/// The kinds the operator compiles from that tests change, as `kubectl get`
/// names them; the operator's `kind` label is the lowercased `kind`.
const KINDS: &str =
    "pods,namespaces,networkpolicies,segmentationpolicies,labelmappings,endpointslices";

/// Every watched object's resourceVersion at one moment: (kind label, key) -> version.
#[derive(Debug, Clone, Default)]
pub struct Barrier {
    versions: BTreeMap<(String, String), u64>,
}

impl Barrier {
    /// What the operator must have published since `self` was taken, to
    /// reflect `now`: per kind label, the version to reach.
    fn targets(&self, now: &Barrier) -> BTreeMap<String, u64> {
        let mut targets: BTreeMap<String, u64> = BTreeMap::new();
        for (key, v) in &now.versions {
            if self.versions.get(key) != Some(v) {
                let t = targets.entry(key.0.clone()).or_default();
                *t = (*t).max(*v);
            }
        }
        for (key, _) in self
            .versions
            .iter()
            .filter(|(k, _)| !now.versions.contains_key(*k))
        {
            let highest_before = self
                .versions
                .iter()
                .filter(|((kind, _), _)| *kind == key.0)
                .map(|(_, v)| *v)
                .max()
                .unwrap_or(0);
            let t = targets.entry(key.0.clone()).or_default();
            *t = (*t).max(highest_before + 1);
        }
        targets
    }
}

impl Lab {
    /// The versions of every object of the kinds the operator compiles from.
    pub fn barrier(&self) -> Result<Barrier> {
        let list = self.kubectl().json(&["get", KINDS, "--all-namespaces"])?;
        let mut versions = BTreeMap::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let meta = &item["metadata"];
            let (Some(kind), Some(name)) = (item["kind"].as_str(), meta["name"].as_str()) else {
                continue;
            };
            let version = meta["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| Error::Unexpected {
                    what: format!("{kind} {name}"),
                    problem: format!(
                        "resourceVersion {} is not a number",
                        meta["resourceVersion"]
                    ),
                })?;
            let namespace = meta["namespace"].as_str().unwrap_or("");
            versions.insert(
                (kind.to_lowercase(), format!("{namespace}/{name}")),
                version,
            );
        }
        Ok(Barrier { versions })
    }

    /// Waits until an operator has published every change made since
    /// `before` (see the module doc); names the kinds still behind on a timeout.
    pub fn wait_published(&self, before: &Barrier, timeout: Duration) -> Result<()> {
        let targets = before.targets(&self.barrier()?);
        if targets.is_empty() {
            return Ok(());
        }
        let what = format!("an operator to publish {targets:?} (kind: resourceVersion)");
        wait_until(&what, timeout, || {
            let published = self.published_versions()?;
            let behind = targets
                .iter()
                .any(|(kind, want)| published.get(kind).is_none_or(|got| got < want));
            Ok((!behind).then_some(()))
        })
    }

    /// Per kind, the highest `bulkhead_operator_published_resource_version`
    /// any running operator reports.
    pub fn published_versions(&self) -> Result<BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for operator in self.operators.values() {
            let Ok(text) = operator.metrics() else {
                continue; // a replica that is down reports nothing
            };
            for (kind, v) in published_samples(&text) {
                let e = out.entry(kind).or_default();
                *e = (*e).max(v);
            }
        }
        Ok(out)
    }
}

/// `bulkhead_operator_published_resource_version{kind="pod"} 7` lines.
fn published_samples(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("bulkhead_operator_published_resource_version{kind=\""))
        .filter_map(|rest| {
            let (kind, value) = rest.split_once("\"} ")?;
            Some((kind.to_owned(), value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier(entries: &[(&str, &str, u64)]) -> Barrier {
        Barrier {
            versions: entries
                .iter()
                .map(|(k, n, v)| ((k.to_string(), n.to_string()), *v))
                .collect(),
        }
    }

    #[test]
    fn targets_are_the_new_versions_and_past_the_old_ones_for_deletions() {
        let before = barrier(&[
            ("pod", "a/x", 10),
            ("pod", "a/y", 12),
            ("namespace", "/a", 3),
        ]);
        let now = barrier(&[
            ("pod", "a/x", 20),
            ("namespace", "/a", 3),
            ("networkpolicy", "a/p", 21),
        ]);
        let t = before.targets(&now);
        assert_eq!(
            t.get("pod"),
            Some(&20),
            "the relabel of x, after the delete of y (13)"
        );
        assert_eq!(t.get("networkpolicy"), Some(&21));
        assert_eq!(t.get("namespace"), None, "nothing changed");
        let only_delete = barrier(&[("pod", "a/x", 10)]);
        assert_eq!(before.targets(&only_delete).get("pod"), Some(&13));
        assert!(before.targets(&before.clone()).is_empty());
    }

    #[test]
    fn reads_the_gauge_lines_of_the_operators_metrics() {
        let text = "# HELP x\nbulkhead_operator_published_resource_version{kind=\"pod\"} 1234\n\
                    bulkhead_operator_published_resource_version{kind=\"namespace\"} 7\nother 1\n";
        assert_eq!(
            published_samples(text),
            [("pod".to_string(), 1234), ("namespace".to_string(), 7)]
        );
    }
}
