//! Segmentation labels per endpoint, from LabelMappings.
//!
//! Every rule of every mapping that matches an endpoint proposes labels. For
//! each key the highest priority decides; when sources at that priority
//! disagree the key stays unset and the disagreement is reported as a
//! conflict. Nothing is guessed.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::mapping::{EndpointMatch, LabelSource, MappingRule};
use bulkhead_api::{LabelMappingSpec, Labels};
use ipnet::IpNet;

use crate::output::{EndpointRef, LabelConflict};

/// A mapping rule with its CIDRs parsed once.
#[derive(Debug)]
pub(crate) struct PreparedRule {
    mapping: String,
    priority: i32,
    name: String,
    rule: MappingRule,
    cidrs: Vec<IpNet>,
}

/// All mapping rules, ready to match.
#[derive(Debug, Default)]
pub(crate) struct PreparedMappings {
    rules: Vec<PreparedRule>,
    /// Warnings per mapping (unparsable CIDRs).
    pub(crate) warnings: BTreeMap<String, Vec<String>>,
}

/// What a label source looks like to the mapping rules.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    /// A pod with its namespace's and node's labels.
    Pod {
        labels: &'a Labels,
        namespace: &'a Labels,
        node: &'a Labels,
    },
    /// A Kubernetes Node.
    Node { name: &'a str, labels: &'a Labels },
    /// An ExternalNode.
    External {
        hostname: &'a str,
        labels: &'a Labels,
    },
    /// An address range.
    Cidr(IpNet),
}

/// One rule's value for one key: ((priority, specificity), value, mapping, rule).
type Proposal<'a> = ((i32, u8), &'a str, &'a str, &'a str);

/// The labels an endpoint ends up with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) labels: Labels,
    pub(crate) conflicts: Vec<LabelConflict>,
    /// Mappings that set at least one label in effect.
    pub(crate) contributors: BTreeSet<String>,
    /// Implicit NetworkPolicy labels (see `netpol`): part of the identity,
    /// never segmentation labels. Empty unless NetworkPolicies are compiled.
    pub(crate) implicit: Labels,
}

impl PreparedMappings {
    pub(crate) fn new(mappings: &BTreeMap<String, LabelMappingSpec>) -> Self {
        let mut prepared = Self::default();
        for (mapping, spec) in mappings {
            for (i, rule) in spec.rules.iter().enumerate() {
                let name = rule.name.clone().unwrap_or_else(|| format!("rules[{i}]"));
                let mut cidrs = Vec::new();
                for c in rule.match_.cidrs.iter().flatten() {
                    match c.parse::<IpNet>() {
                        Ok(net) => cidrs.push(net.trunc()),
                        Err(_) => {
                            prepared
                                .warnings
                                .entry(mapping.clone())
                                .or_default()
                                .push(format!(
                                    "{name}: match.cidrs entry {c:?} is not a valid CIDR; ignored"
                                ))
                        }
                    }
                }
                prepared.rules.push(PreparedRule {
                    mapping: mapping.clone(),
                    priority: spec.priority,
                    name,
                    rule: rule.clone(),
                    cidrs,
                });
            }
        }
        prepared
    }

    /// Every address range some mapping labels.
    pub(crate) fn cidrs(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.rules.iter().flat_map(|r| r.cidrs.iter().copied())
    }

    /// The labels of one endpoint.
    pub(crate) fn resolve(&self, endpoint: &EndpointRef, source: Source<'_>) -> Resolved {
        let mut proposals: BTreeMap<&str, Vec<Proposal<'_>>> = BTreeMap::new();
        for prepared in &self.rules {
            let Some(specificity) = prepared.matches(source) else {
                continue;
            };
            let rank = (prepared.priority, specificity);
            let rule = &prepared.rule;
            for (k, v) in &rule.labels {
                proposals
                    .entry(k)
                    .or_default()
                    .push((rank, v, &prepared.mapping, &prepared.name));
            }
            for copy in &rule.copy_labels {
                if let Some(v) = copied_value(source, copy.source, &copy.from_label) {
                    let entry = proposals.entry(&copy.key).or_default();
                    entry.push((rank, v, &prepared.mapping, &prepared.name));
                }
            }
        }
        let mut resolved = Resolved::default();
        for (key, mut candidates) in proposals {
            let top = candidates.iter().map(|c| c.0).max().unwrap_or_default();
            candidates.retain(|c| c.0 == top);
            candidates.sort();
            candidates.dedup();
            let first = candidates[0].1;
            if candidates.iter().all(|c| c.1 == first) {
                resolved.labels.insert(key.to_string(), first.to_string());
                resolved
                    .contributors
                    .extend(candidates.iter().map(|c| c.2.to_string()));
            } else {
                let mut sources: Vec<(String, String, String)> = candidates
                    .iter()
                    .map(|c| (c.2.to_string(), c.3.to_string(), c.1.to_string()))
                    .collect();
                sources.sort();
                resolved.conflicts.push(LabelConflict {
                    endpoint: endpoint.clone(),
                    key: key.to_string(),
                    priority: top.0,
                    sources,
                });
            }
        }
        resolved
    }
}

impl PreparedRule {
    /// `None` when the rule does not apply; else how specific the match is:
    /// for an address range, the length of the rule's longest range that
    /// contains it (so a narrower range inside a labeled one inherits its
    /// labels, and the narrowest labeled range wins); 0 for everything else.
    fn matches(&self, source: Source<'_>) -> Option<u8> {
        let m: &EndpointMatch = &self.rule.match_;
        let hit = match source {
            Source::Pod {
                labels,
                namespace,
                node,
            } => m.pods.as_ref().is_some_and(|p| {
                p.pod_selector.as_ref().is_none_or(|s| s.matches(labels))
                    && p.namespace_selector
                        .as_ref()
                        .is_none_or(|s| s.matches(namespace))
                    && p.node_selector.as_ref().is_none_or(|s| s.matches(node))
            }),
            Source::Node { name, labels } => {
                m.nodes.as_ref().is_some_and(|s| s.matches(labels))
                    || m.hostnames.iter().flatten().any(|h| glob_match(h, name))
            }
            Source::External { hostname, labels } => {
                m.external_nodes.as_ref().is_some_and(|s| s.matches(labels))
                    || m.hostnames
                        .iter()
                        .flatten()
                        .any(|h| glob_match(h, hostname))
            }
            Source::Cidr(net) => {
                return self
                    .cidrs
                    .iter()
                    .filter(|c| c.contains(&net))
                    .map(|c| c.prefix_len())
                    .max();
            }
        };
        hit.then_some(0)
    }
}

fn copied_value<'a>(source: Source<'a>, from: LabelSource, label: &str) -> Option<&'a str> {
    let labels = match (source, from) {
        (Source::Pod { labels, .. }, LabelSource::Object) => labels,
        (Source::Pod { namespace, .. }, LabelSource::Namespace) => namespace,
        (Source::Pod { node, .. }, LabelSource::Node) => node,
        (Source::Node { labels, .. }, LabelSource::Object | LabelSource::Node) => labels,
        (Source::External { labels, .. }, LabelSource::Object | LabelSource::Node) => labels,
        _ => return None,
    };
    labels.get(label).map(String::as_str)
}

/// `*` matches any run of characters (none included); everything else is literal.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        let cases = [
            ("db-*", "db-1", true),
            ("db-*", "web-1", false),
            ("*.corp", "a.b.corp", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("*", "", true),
            ("ab*ba", "aba", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} vs {text}");
        }
    }
}
