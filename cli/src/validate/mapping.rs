//! The CEL rules of `LabelMapping` and `ExternalNode`, in Rust.

use std::net::IpAddr;

use bulkhead_api::mapping::{EndpointMatch, MappingRule};
use bulkhead_api::{ExternalNodeSpec, LabelMappingSpec};

use super::{check_selector, is_cidr, Violation};

/// Every rule the LabelMapping CRD would enforce, in field order.
pub fn label_mapping(spec: &LabelMappingSpec) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        check_rule(rule, &format!("spec.rules[{i}]"), &mut out);
    }
    out
}

/// Every rule the ExternalNode CRD would enforce.
pub fn external_node(spec: &ExternalNodeSpec) -> Vec<Violation> {
    spec.addresses
        .iter()
        .enumerate()
        .filter(|(_, a)| a.parse::<IpAddr>().is_err())
        .map(|(i, a)| {
            Violation::new(
                format!("spec.addresses[{i}]"),
                format!("every address must be a valid IPv4 or IPv6 address (got {a:?})"),
            )
        })
        .collect()
}

fn check_rule(rule: &MappingRule, field: &str, out: &mut Vec<Violation>) {
    check_match(&rule.match_, &format!("{field}.match"), out);
    if rule.labels.is_empty() && rule.copy_labels.is_empty() {
        out.push(Violation::new(
            field,
            "a mapping rule must set labels or copyLabels, or it does nothing",
        ));
    }
    if let Some(key) = rule.labels.keys().find(|k| !is_label_key(k)) {
        out.push(Violation::new(
            format!("{field}.labels"),
            format!(
                "segmentation label keys must be valid Kubernetes label keys, such as app or corp.example/tier (got {key:?})"
            ),
        ));
    }
    if !rule.copy_labels.is_empty() && rule.match_.cidrs.is_some() {
        out.push(Violation::new(
            format!("{field}.copyLabels"),
            "copyLabels cannot be used with cidrs: an address range has no labels to copy",
        ));
    }
}

fn check_match(m: &EndpointMatch, field: &str, out: &mut Vec<Violation>) {
    let set = [
        m.pods.is_some(),
        m.nodes.is_some(),
        m.external_nodes.is_some(),
        m.cidrs.is_some(),
        m.hostnames.is_some(),
    ];
    if set.iter().filter(|x| **x).count() != 1 {
        out.push(Violation::new(
            field,
            "match sets exactly one of pods, nodes, externalNodes, cidrs or hostnames",
        ));
    }
    if let Some(pods) = &m.pods {
        let selectors = [
            ("podSelector", &pods.pod_selector),
            ("namespaceSelector", &pods.namespace_selector),
            ("nodeSelector", &pods.node_selector),
        ];
        for (name, selector) in selectors {
            if let Some(selector) = selector {
                check_selector(selector, &format!("{field}.pods.{name}"), out);
            }
        }
    }
    if let Some(selector) = &m.nodes {
        check_selector(selector, &format!("{field}.nodes"), out);
    }
    if let Some(selector) = &m.external_nodes {
        check_selector(selector, &format!("{field}.externalNodes"), out);
    }
    for (i, cidr) in m.cidrs.iter().flatten().enumerate() {
        if !is_cidr(cidr) {
            out.push(Violation::new(
                format!("{field}.cidrs[{i}]"),
                format!("every entry of cidrs must be a valid IPv4 or IPv6 CIDR such as 10.20.0.0/16 (got {cidr:?})"),
            ));
        }
    }
}

/// A Kubernetes label key: an optional DNS-style prefix and a slash, then a
/// name of 1 to 63 characters that starts and ends with a letter or digit.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        let edge =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        edge(p.chars().next())
            && edge(p.chars().last())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    });
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let name_ok = (1..=63).contains(&name.len())
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    prefix_ok && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(spec_yaml: &str) -> Vec<String> {
        let spec: LabelMappingSpec = serde_yaml::from_str(spec_yaml).expect("test spec parses");
        label_mapping(&spec)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn label_keys() {
        for good in ["app", "corp.example/tier", "a", "A_b-c.d", "x/y"] {
            assert!(is_label_key(good), "{good}");
        }
        for bad in [
            "",
            "-app",
            "app-",
            "Corp/app",
            "a/b/c",
            "/app",
            "app/",
            &"x".repeat(64),
        ] {
            assert!(!is_label_key(bad), "{bad}");
        }
    }

    #[test]
    fn valid_mapping() {
        let spec = "\
rules:
- match: {pods: {namespaceSelector: {matchLabels: {team: shop}}}}
  copyLabels: [{key: app, fromLabel: app}, {key: env, fromLabel: env, source: namespace}]
- match: {cidrs: [10.20.0.0/16]}
  labels: {role: mainframe}
";
        assert_eq!(violations(spec), Vec::<String>::new());
    }

    #[test]
    fn each_cel_rule_names_its_field() {
        let cases = [
            (
                "{match: {cidrs: [10.20.0.0/99]}, labels: {role: x}}",
                "spec.rules[0].match.cidrs[0]: every entry of cidrs must be a valid IPv4 or IPv6 CIDR such as 10.20.0.0/16 (got \"10.20.0.0/99\")",
            ),
            (
                "{match: {cidrs: [10.20.0.0/16], hostnames: [db*]}, labels: {role: x}}",
                "spec.rules[0].match: match sets exactly one of pods, nodes, externalNodes, cidrs or hostnames",
            ),
            (
                "{match: {nodes: {}}}",
                "spec.rules[0]: a mapping rule must set labels or copyLabels, or it does nothing",
            ),
            (
                "{match: {nodes: {}}, labels: {'Bad Key': x}}",
                "spec.rules[0].labels: segmentation label keys must be valid Kubernetes label keys, such as app or corp.example/tier (got \"Bad Key\")",
            ),
            (
                "{match: {cidrs: [10.0.0.0/8]}, copyLabels: [{key: app, fromLabel: app}]}",
                "spec.rules[0].copyLabels: copyLabels cannot be used with cidrs: an address range has no labels to copy",
            ),
            (
                "{match: {pods: {podSelector: {matchExpressions: [{key: app, operator: In}]}}}, labels: {a: b}}",
                "spec.rules[0].match.pods.podSelector.matchExpressions[0]: values must be non-empty for the In and NotIn operators and empty for Exists and DoesNotExist",
            ),
        ];
        for (rule, expected) in cases {
            assert_eq!(
                violations(&format!("rules: [{rule}]")),
                vec![expected.to_string()],
                "{rule}"
            );
        }
    }

    #[test]
    fn external_node_addresses() {
        let spec: ExternalNodeSpec =
            serde_yaml::from_str("addresses: [10.0.0.1, 'fd00::1', db.example]").expect("parses");
        let got: Vec<String> = external_node(&spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec!["spec.addresses[2]: every address must be a valid IPv4 or IPv6 address (got \"db.example\")"]
        );
    }
}
