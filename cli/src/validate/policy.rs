//! The CEL rules of `SegmentationPolicy`, in Rust.

use bulkhead_api::governance::Ownership;
use bulkhead_api::policy::{
    EnforcementMode, Peer, PortSpec, Protocol, ReservedPeer, Rule, SegmentationPolicySpec,
    ServiceRef,
};
use bulkhead_api::promotion::Promotion;
use bulkhead_api::SegmentationExceptionSpec;
use ipnet::IpNet;

use super::{check_selector, is_cidr, Violation};

/// Every rule the SegmentationPolicy CRD would enforce, in field order.
pub fn segmentation_policy(spec: &SegmentationPolicySpec) -> Vec<Violation> {
    let mut out = Vec::new();
    let scope = &spec.scope;
    let has_selector = scope.selector.as_ref().is_some_and(|s| !s.is_empty());
    if scope.cluster_wide == has_selector {
        out.push(Violation::new(
            "spec.scope",
            "scope must have a non-empty selector, or set clusterWide: true and no selector; \
             an empty selector does not silently mean every endpoint",
        ));
    }
    if let Some(selector) = &scope.selector {
        check_selector(selector, "spec.scope.selector", &mut out);
    }
    for (direction, rules) in [("ingress", &spec.ingress), ("egress", &spec.egress)] {
        for (i, rule) in rules.iter().enumerate() {
            check_rule(rule, &format!("spec.{direction}[{i}]"), &mut out);
        }
    }
    if let Some(promotion) = &spec.promotion {
        check_promotion(spec.enforcement, promotion, &mut out);
    }
    check_ownership(&spec.ownership, "spec", "policy", &mut out);
    out
}

/// The ownership rules a policy and each rule carry, and the date's format.
fn check_ownership(o: &Ownership, field: &str, what: &str, out: &mut Vec<Violation>) {
    if o.owner.is_some() && o.contact.is_none() {
        out.push(Violation::new(
            format!("{field}.contact"),
            format!("an owner needs a contact: whom a person calls when this {what} blocks a flow"),
        ));
    }
    if let Some(date) = &o.review_by {
        if date.parse::<jiff::civil::Date>().is_err() {
            out.push(Violation::new(
                format!("{field}.reviewBy"),
                format!("{date:?} is not a date like 2026-06-30"),
            ));
        }
    }
}

/// Every rule the SegmentationException CRD would enforce (the admission
/// policy's, which need the requester's identity and the clock, are the
/// API server's).
pub fn segmentation_exception(spec: &SegmentationExceptionSpec) -> Vec<Violation> {
    let mut out = Vec::new();
    let has_selector = spec.scope.selector.as_ref().is_some_and(|s| !s.is_empty());
    if spec.scope.cluster_wide == has_selector {
        out.push(Violation::new(
            "spec.scope",
            "scope must have a non-empty selector, or set clusterWide: true and no selector; \
             an empty selector does not silently mean every endpoint",
        ));
    }
    for (i, peer) in spec.peers.iter().enumerate() {
        check_peer(peer, &format!("spec.peers[{i}]"), &mut out);
    }
    for (i, port) in spec.ports.iter().enumerate() {
        check_port(port, &format!("spec.ports[{i}]"), &mut out);
    }
    let icmp = |p: &PortSpec| matches!(p.protocol, Protocol::Icmp | Protocol::Icmpv6);
    if !spec.ports.iter().all(|p| p.port.is_some() || icmp(p)) {
        out.push(Violation::new(
            "spec.ports",
            "every port of an exception names a port: an exception is narrow, never every port of a protocol",
        ));
    }
    let wide = |p: &Peer| {
        p.reserved == Some(ReservedPeer::World)
            || p.cidr.as_deref().is_some_and(|c| c.ends_with("/0"))
    };
    if spec.peers.iter().any(wide) {
        out.push(Violation::new(
            "spec.peers",
            "an exception's peers are narrow: not world and not a /0 range",
        ));
    }
    if spec.approved_by.as_ref() == Some(&spec.requester) {
        out.push(Violation::new(
            "spec.approvedBy",
            "the requester cannot approve their own exception",
        ));
    }
    if spec.expires_at.parse::<jiff::Timestamp>().is_err() {
        out.push(Violation::new(
            "spec.expiresAt",
            format!(
                "{:?} is not an RFC 3339 time like 2026-03-01T00:00:00Z",
                spec.expires_at
            ),
        ));
    }
    out
}

fn check_promotion(
    enforcement: Option<EnforcementMode>,
    promotion: &Promotion,
    out: &mut Vec<Violation>,
) {
    if enforcement.is_some_and(|from| promotion.to <= from) {
        out.push(Violation::new(
            "spec",
            "promotion.to must be stricter than enforcement (visibility < selective < full)",
        ));
    }
    if promotion.to == EnforcementMode::Visibility {
        out.push(Violation::new(
            "spec.promotion",
            "promotion.to must be selective or full: promoting to visibility enforces nothing",
        ));
    }
    // The schema's patterns: a whole number and a unit; quietFor above zero.
    let after = &promotion.after;
    for (field, value, zero_ok) in [
        ("observedFor", &after.observed_for, true),
        ("quietFor", &after.quiet_for, false),
    ] {
        let well_formed = bulkhead_insight::query::params::duration(value)
            .is_some_and(|d| zero_ok || d.is_positive())
            && value.len() <= 16
            && value.chars().next().is_some_and(|c| c.is_ascii_digit());
        if !well_formed {
            out.push(Violation::new(
                format!("spec.promotion.after.{field}"),
                format!("{value:?} is not a duration like 35d, 12h or 20s"),
            ));
        }
    }
}

fn check_rule(rule: &Rule, field: &str, out: &mut Vec<Violation>) {
    check_ownership(&rule.ownership, field, "rule", out);
    if let Some(at) = &rule.expires {
        if rule.ownership.ticket.is_none() {
            out.push(Violation::new(
                format!("{field}.ticket"),
                "a rule that expires needs a ticket saying why it is temporary",
            ));
        }
        if at.parse::<jiff::Timestamp>().is_err() {
            out.push(Violation::new(
                format!("{field}.expires"),
                format!("{at:?} is not an RFC 3339 time like 2026-03-01T00:00:00Z"),
            ));
        }
    }
    for (i, peer) in rule.peers.iter().enumerate() {
        check_peer(peer, &format!("{field}.peers[{i}]"), out);
    }
    for (i, port) in rule.ports.iter().enumerate() {
        check_port(port, &format!("{field}.ports[{i}]"), out);
    }
}

fn check_peer(peer: &Peer, field: &str, out: &mut Vec<Violation>) {
    let set = [
        peer.selector.is_some(),
        peer.cidr.is_some(),
        peer.reserved.is_some(),
        peer.service.is_some(),
    ];
    if set.iter().filter(|x| **x).count() != 1 {
        out.push(Violation::new(
            field,
            "a peer sets exactly one of selector, cidr, reserved or service; \
             to name a Service and something else, write two peers",
        ));
    }
    if let Some(service) = &peer.service {
        check_service(service, &format!("{field}.service"), out);
    }
    if let Some(selector) = &peer.selector {
        check_selector(selector, &format!("{field}.selector"), out);
    }
    if peer.except.is_some() && peer.cidr.is_none() {
        out.push(Violation::new(
            format!("{field}.except"),
            "except is only allowed together with cidr",
        ));
    }
    let cidr = peer.cidr.as_deref();
    if let Some(text) = cidr.filter(|c| !is_cidr(c)) {
        out.push(Violation::new(
            format!("{field}.cidr"),
            format!("cidr must be a valid IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/64 (got {text:?})"),
        ));
    }
    let outer = cidr.and_then(|c| c.parse::<IpNet>().ok());
    for (i, text) in peer.except.iter().flatten().enumerate() {
        let at = format!("{field}.except[{i}]");
        match text.parse::<IpNet>() {
            Err(_) => out.push(Violation::new(
                at,
                format!("every except entry must be a valid CIDR (got {text:?})"),
            )),
            Ok(inner) => {
                let same_family = |o: &IpNet| o.addr().is_ipv4() == inner.addr().is_ipv4();
                if outer.is_some_and(|o| !(same_family(&o) && o.contains(&inner))) {
                    out.push(Violation::new(
                        at,
                        format!(
                            "every except entry must lie inside cidr and be of the same address family \
                             ({text} is not inside {})",
                            cidr.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    }
}

fn check_service(service: &ServiceRef, field: &str, out: &mut Vec<Violation>) {
    if !is_dns_label(&service.namespace, false) {
        out.push(Violation::new(
            format!("{field}.namespace"),
            format!(
                "service.namespace must be a namespace name: lower-case letters, digits and '-', \
                 starting and ending with a letter or digit (got {:?})",
                service.namespace
            ),
        ));
    }
    if !is_dns_label(&service.name, true) {
        out.push(Violation::new(
            format!("{field}.name"),
            format!(
                "service.name must be a Service name: lower-case letters, digits and '-', \
                 starting with a letter and ending with a letter or digit (got {:?})",
                service.name
            ),
        ));
    }
}

/// An RFC 1123 label (RFC 1035 when `letter_first`), at most 63 characters.
fn is_dns_label(text: &str, letter_first: bool) -> bool {
    let bytes = text.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let end = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && (if letter_first {
                    first.is_ascii_lowercase()
                } else {
                    end(first)
                })
                && end(last)
                && bytes.iter().all(inner)
        }
        _ => false,
    }
}

fn check_port(port: &PortSpec, field: &str, out: &mut Vec<Violation>) {
    if port.end_port.is_some() && port.port.is_none() {
        out.push(Violation::new(
            format!("{field}.endPort"),
            "endPort needs port: it ends the range that port starts",
        ));
    }
    if let (Some(first), Some(last)) = (port.port, port.end_port) {
        if last < first {
            out.push(Violation::new(
                format!("{field}.endPort"),
                format!("endPort must be greater than or equal to port ({last} < {first})"),
            ));
        }
    }
    if !port.protocol.has_ports() && (port.port.is_some() || port.end_port.is_some()) {
        out.push(Violation::new(
            field,
            "ICMP and ICMPv6 have no ports; use icmpType to match a message type",
        ));
    }
    if port.icmp_type.is_some() && port.protocol.has_ports() {
        out.push(Violation::new(
            format!("{field}.icmpType"),
            "icmpType is only allowed with protocol ICMP or ICMPv6",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violations(spec_yaml: &str) -> Vec<String> {
        let spec: SegmentationPolicySpec =
            serde_yaml::from_str(spec_yaml).expect("test spec parses");
        segmentation_policy(&spec)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_valid_policy_has_no_violations() {
        let spec = "\
scope: {selector: {matchLabels: {app: web}}}
ingress:
- action: allow
  peers: [{selector: {matchExpressions: [{key: env, operator: In, values: [prod]}]}},
          {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}, {reserved: host},
          {service: {namespace: prod, name: db}}]
  ports: [{protocol: TCP, port: 80, endPort: 90}, {protocol: ICMP, icmpType: 8}]
";
        assert_eq!(violations(spec), Vec::<String>::new());
        assert_eq!(
            violations("scope: {clusterWide: true}"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn scope_must_be_explicit() {
        for spec in [
            "scope: {}",
            "scope: {selector: {}}",
            "scope: {clusterWide: true, selector: {matchLabels: {a: b}}}",
        ] {
            let got = violations(spec);
            assert_eq!(got.len(), 1, "{spec}: {got:?}");
            assert!(
                got[0].starts_with("spec.scope: scope must have a non-empty selector"),
                "{got:?}"
            );
        }
    }

    #[test]
    fn each_cel_rule_names_its_field() {
        let cases = [
            (
                "ingress: [{action: allow, peers: [{cidr: 10.0.0.0/33}]}]",
                "spec.ingress[0].peers[0].cidr: cidr must be a valid IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/64 (got \"10.0.0.0/33\")",
            ),
            (
                "egress: [{action: deny, peers: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]}]",
                "spec.egress[0].peers[0].except[0]: every except entry must lie inside cidr and be of the same address family (192.168.0.0/16 is not inside 10.0.0.0/8)",
            ),
            (
                "egress: [{action: deny, peers: [{cidr: 10.0.0.0/8, except: [nope]}]}]",
                "spec.egress[0].peers[0].except[0]: every except entry must be a valid CIDR (got \"nope\")",
            ),
            (
                "egress: [{action: deny, peers: [{reserved: world, except: [10.0.0.0/8]}]}]",
                "spec.egress[0].peers[0].except: except is only allowed together with cidr",
            ),
            (
                "egress: [{action: deny, peers: [{reserved: world, cidr: 10.0.0.0/8}]}]",
                "spec.egress[0].peers[0]: a peer sets exactly one of selector, cidr, reserved or service; \
                 to name a Service and something else, write two peers",
            ),
            (
                "egress: [{action: allow, peers: [{selector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}]}]",
                "spec.egress[0].peers[0].selector.matchExpressions[0]: values must be non-empty for the In and NotIn operators and empty for Exists and DoesNotExist",
            ),
            (
                "ingress: [{action: allow}, {action: allow, ports: [{protocol: TCP, port: 90, endPort: 80}]}]",
                "spec.ingress[1].ports[0].endPort: endPort must be greater than or equal to port (80 < 90)",
            ),
            (
                "ingress: [{action: allow, ports: [{protocol: UDP, endPort: 80}]}]",
                "spec.ingress[0].ports[0].endPort: endPort needs port: it ends the range that port starts",
            ),
            (
                "ingress: [{action: allow, ports: [{protocol: ICMP, port: 8}]}]",
                "spec.ingress[0].ports[0]: ICMP and ICMPv6 have no ports; use icmpType to match a message type",
            ),
            (
                "ingress: [{action: allow, ports: [{protocol: TCP, icmpType: 8}]}]",
                "spec.ingress[0].ports[0].icmpType: icmpType is only allowed with protocol ICMP or ICMPv6",
            ),
        ];
        for (rules, expected) in cases {
            let spec = format!("scope: {{clusterWide: true}}\n{rules}\n");
            assert_eq!(violations(&spec), vec![expected.to_string()], "{rules}");
        }
    }
}
