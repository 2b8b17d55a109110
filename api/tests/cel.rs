//! The CRDs' CEL rules, evaluated client-side against the generated schema:
//! each bad object is rejected with the message a person will read, and
//! each good one passes.

use kube::core::cel::Validator;
use serde_json::Value;

fn schema_of(kind: &str) -> Value {
    let crd = bulkhead_api::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("known kind");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("schema")).expect("json")
}

/// Validates `spec` (YAML) of `kind`; returns the messages of failed rules.
fn errors(kind: &str, spec: &str) -> Vec<String> {
    let spec: Value = serde_yaml::from_str(spec).expect("test yaml");
    let object = serde_json::json!({
        "apiVersion": "bulkhead.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "t"},
        "spec": spec,
    });
    match Validator::new().validate(&schema_of(kind), &object, None) {
        Ok(()) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.message.clone()).collect(),
    }
}

#[test]
fn segmentation_policy_rules() {
    let ok_scope = "scope: {selector: {matchLabels: {app: web}}}\n";
    let cases: Vec<(String, Option<&str>)> = vec![
        (ok_scope.into(), None),
        ("scope: {clusterWide: true}\n".into(), None),
        ("scope: {}\n".into(), Some("scope must have a non-empty selector")),
        ("scope: {selector: {}}\n".into(), Some("scope must have a non-empty selector")),
        (
            "scope: {clusterWide: true, selector: {matchLabels: {a: b}}}\n".into(),
            Some("scope must have a non-empty selector"),
        ),
        (
            format!("{ok_scope}ingress:\n- {{action: allow, peers: [{{cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}}\n"),
            None,
        ),
        (
            format!("{ok_scope}ingress:\n- {{action: allow, peers: [{{cidr: 10.0.0.0/33}}]}}\n"),
            Some("cidr must be a valid IPv4 or IPv6 CIDR"),
        ),
        (
            format!("{ok_scope}ingress:\n- {{action: allow, peers: [{{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]}}\n"),
            Some("every except entry must lie inside cidr"),
        ),
        (
            format!("{ok_scope}ingress:\n- {{action: allow, peers: [{{reserved: world, cidr: 10.0.0.0/8}}]}}\n"),
            Some("a peer sets exactly one of selector, cidr or reserved"),
        ),
        (
            format!("{ok_scope}ingress:\n- {{action: allow, peers: [{{reserved: world, except: [10.0.0.0/8]}}]}}\n"),
            Some("except is only allowed together with cidr"),
        ),
        (
            format!("{ok_scope}egress:\n- {{action: deny, ports: [{{protocol: TCP, port: 90, endPort: 80}}]}}\n"),
            Some("endPort must be greater than or equal to port"),
        ),
        (
            format!("{ok_scope}egress:\n- {{action: deny, ports: [{{protocol: TCP, endPort: 80}}]}}\n"),
            Some("endPort needs port"),
        ),
        (
            format!("{ok_scope}promotion: {{to: full, after: {{observedFor: 35d, quietFor: 14d}}}}\n"),
            None,
        ),
        (
            format!("{ok_scope}enforcement: selective\npromotion: {{to: full, after: {{observedFor: 0s, quietFor: 20s}}}}\n"),
            None,
        ),
        (
            format!("{ok_scope}enforcement: full\npromotion: {{to: full, after: {{observedFor: 35d, quietFor: 14d}}}}\n"),
            Some("promotion.to must be stricter than enforcement"),
        ),
        (
            format!("{ok_scope}enforcement: selective\npromotion: {{to: selective, after: {{observedFor: 35d, quietFor: 14d}}}}\n"),
            Some("promotion.to must be stricter than enforcement"),
        ),
        (
            format!("{ok_scope}promotion: {{to: visibility, after: {{observedFor: 35d, quietFor: 14d}}}}\n"),
            Some("promotion.to must be selective or full"),
        ),
        (
            format!("{ok_scope}egress:\n- {{action: deny, ports: [{{protocol: ICMP, port: 8}}]}}\n"),
            Some("ICMP and ICMPv6 have no ports"),
        ),
        (
            format!("{ok_scope}egress:\n- {{action: deny, ports: [{{protocol: UDP, icmpType: 8}}]}}\n"),
            Some("icmpType is only allowed with protocol ICMP or ICMPv6"),
        ),
        (
            format!("{ok_scope}egress:\n- {{action: allow, ports: [{{protocol: ICMPv6, icmpType: 128}}, {{protocol: SCTP, port: 9, endPort: 10}}]}}\n"),
            None,
        ),
        (
            "scope: {selector: {matchExpressions: [{key: app, operator: In}]}}\n".into(),
            Some("values must be non-empty for the In and NotIn operators"),
        ),
        (
            "scope: {selector: {matchExpressions: [{key: app, operator: Exists, values: [x]}]}}\n".into(),
            Some("values must be non-empty for the In and NotIn operators"),
        ),
    ];
    for (spec, expected) in cases {
        let got = errors("SegmentationPolicy", &spec);
        match expected {
            None => assert!(got.is_empty(), "{spec} should pass, got {got:?}"),
            Some(msg) => assert!(
                got.iter().any(|m| m.contains(msg)),
                "{spec} should fail with {msg:?}, got {got:?}"
            ),
        }
    }
}

#[test]
fn label_mapping_and_external_node_rules() {
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        (
            "LabelMapping",
            "rules:\n- {match: {pods: {}}, labels: {app: web}}\n",
            None,
        ),
        (
            "LabelMapping",
            "rules:\n- {match: {cidrs: [10.0.0.0/8]}, labels: {role: mainframe}}\n",
            None,
        ),
        (
            "LabelMapping",
            "rules:\n- {match: {pods: {}}}\n",
            Some("must set labels or copyLabels"),
        ),
        (
            "LabelMapping",
            "rules:\n- {match: {pods: {}, nodes: {}}, labels: {a: b}}\n",
            Some("match sets exactly one of"),
        ),
        (
            "LabelMapping",
            "rules:\n- {match: {cidrs: [not-a-cidr]}, labels: {a: b}}\n",
            Some("every entry of cidrs must be a valid"),
        ),
        (
            "LabelMapping",
            "rules:\n- {match: {cidrs: [10.0.0.0/8]}, copyLabels: [{key: a, fromLabel: b}]}\n",
            Some("copyLabels cannot be used with cidrs"),
        ),
        (
            "ExternalNode",
            "addresses: [192.0.2.10, '2001:db8::10']\n",
            None,
        ),
        (
            "ExternalNode",
            "addresses: [db01.example]\n",
            Some("every address must be a valid"),
        ),
    ];
    for (kind, spec, expected) in cases {
        let got = errors(kind, spec);
        match expected {
            None => assert!(got.is_empty(), "{kind} {spec} should pass, got {got:?}"),
            Some(msg) => assert!(
                got.iter().any(|m| m.contains(msg)),
                "{kind} {spec} should fail with {msg:?}, got {got:?}"
            ),
        }
    }
}
