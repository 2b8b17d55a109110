//! `kubectl bulkhead why --from A --to B --port P`: the newest denied flow
//! of the window, the rule (or the mode) that denied it, who owns that, and
//! the command that asks for an exception.
//!
//! ```text
//!  history (--flows FILE | collector) ─► newest deny (else would-deny) ─┐
//!  today's policies (--cluster DIR | API server) ───────────────────────┼─► explain() ─► text | json
//!                     deciding rule ─► owner_of(policy, rule)           │
//!                     no rule (the mode) ─► owners of the policies in scope
//! ```

use std::collections::BTreeMap;

use bulkhead_api::flow::{FlowEndpoint, FlowReason, FlowRecord, FlowVerdict, RuleRef};
use bulkhead_api::governance::Ownership;
use bulkhead_api::rule_map::Direction;
use bulkhead_api::SegmentationPolicySpec;
use bulkhead_policy::governance::owner_of;
use serde::Serialize;

/// Who answers for a denial: a policy, the rule if one decided, its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answerer {
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub ownership: Ownership,
}

/// The explanation of one denied flow.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The newest denied record (or would-be denied, in visibility mode).
    pub record: FlowRecord,
    /// Whether it was really dropped (not only would be, once enforced).
    pub enforced: bool,
    /// The rule that decided, when one did (else the mode's default did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding: Option<RuleRef>,
    /// Whom to ask.
    pub answerers: Vec<Answerer>,
    /// The command that requests an exception for this flow.
    pub request: String,
}

/// Explains the newest deny in `records` (already filtered to the flow asked about).
pub fn explain(
    records: &[FlowRecord],
    policies: &BTreeMap<String, SegmentationPolicySpec>,
) -> Option<Explanation> {
    let newest = |verdict: fn(&FlowRecord) -> bool| {
        records
            .iter()
            .filter(|r| verdict(r))
            .max_by_key(|r| r.start)
    };
    let (record, enforced) = match newest(|r| r.verdict == FlowVerdict::Deny) {
        Some(r) => (r, true),
        None => (newest(|r| r.would_verdict == FlowVerdict::Deny)?, false),
    };
    let (subject, peer) = match record.direction {
        Direction::Ingress => (&record.destination, &record.source),
        Direction::Egress => (&record.source, &record.destination),
    };
    let deciding = record
        .rule
        .clone()
        .filter(|_| record.reason == FlowReason::Policy);
    let answerers = match &deciding {
        Some(rule) => vec![Answerer {
            policy: rule.policy.clone(),
            rule: Some(rule.name.clone()),
            ownership: policies
                .get(&rule.policy)
                .map(|s| owner_of(s, Some(&rule.name)))
                .unwrap_or_default(),
        }],
        // The mode denied: whoever governs the endpoint, those that set a mode first.
        None => {
            let mut scoped: Vec<(&String, &SegmentationPolicySpec)> = policies
                .iter()
                .filter(|(_, s)| {
                    s.scope.cluster_wide
                        || s.scope
                            .selector
                            .as_ref()
                            .is_some_and(|sel| !sel.is_empty() && sel.matches(&subject.labels))
                })
                .collect();
            scoped.sort_by_key(|(_, s)| std::cmp::Reverse(s.enforcement));
            scoped
                .into_iter()
                .map(|(name, s)| Answerer {
                    policy: name.clone(),
                    rule: None,
                    ownership: s.ownership.clone(),
                })
                .collect()
        }
    };
    let request = request_command(record, subject, peer);
    Some(Explanation {
        record: record.clone(),
        enforced,
        deciding,
        answerers,
        request,
    })
}

fn selector(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

fn request_command(record: &FlowRecord, subject: &FlowEndpoint, peer: &FlowEndpoint) -> String {
    let direction = match record.direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    };
    let peer_flag = if peer.labels.is_empty() {
        let bits = if peer.address.is_ipv4() { 32 } else { 128 };
        format!("{}/{bits}", peer.address)
    } else {
        selector(&peer.labels)
    };
    let short = |e: &FlowEndpoint| {
        let app = e.labels.get("app").cloned();
        app.or_else(|| e.name.clone())
            .unwrap_or_else(|| "peer".into())
    };
    let name = format!(
        "{}-to-{}-{}",
        short(&record.source),
        short(&record.destination),
        record.port
    );
    let name: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "kubectl bulkhead exception request {name} --direction {direction} --scope {} --peer {peer_flag} --port {}/{} --reason \"...\" --ticket TICKET --expires 30d",
        selector(&subject.labels),
        record.port,
        wire(record.protocol),
    )
}

/// How a value is spelled on the wire (`TCP`, `full`).
pub fn wire<T: Serialize>(value: T) -> String {
    let value = serde_json::to_value(value).ok();
    value
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn endpoint(e: &FlowEndpoint) -> String {
    let name = match (&e.namespace, &e.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n} "),
        (None, Some(n)) => format!("{n} "),
        _ => String::new(),
    };
    let labels = if e.labels.is_empty() {
        "no segmentation labels".to_string()
    } else {
        selector(&e.labels)
    };
    format!("{name}({}, {labels})", e.address)
}

fn ownership(o: &Ownership) -> String {
    let fields = [
        ("owner", &o.owner),
        ("contact", &o.contact),
        ("ticket", &o.ticket),
        ("review by", &o.review_by),
    ];
    let set: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v}")))
        .collect();
    if set.is_empty() {
        "no owner recorded (set spec.owner and spec.contact)".into()
    } else {
        set.join(", ")
    }
}

/// The explanation for a person.
pub fn text(e: &Explanation) -> String {
    let r = &e.record;
    let verdict = if e.enforced {
        "denied"
    } else {
        "would be denied once enforced"
    };
    let mut out = format!(
        "{verdict}: {} -> {} {}/{} at {} on node {} ({} mode)\n",
        endpoint(&r.source),
        endpoint(&r.destination),
        wire(r.protocol),
        r.port,
        r.start,
        r.node,
        wire(r.mode),
    );
    match &e.deciding {
        Some(rule) => out.push_str(&format!(
            "deciding rule: {} of policy {}\n",
            rule.name, rule.policy
        )),
        None => out.push_str(&format!(
            "deciding rule: none matched; the {} mode's default ({}) decided\n",
            wire(r.mode),
            wire(r.reason)
        )),
    }
    if e.answerers.is_empty() {
        out.push_str("no SegmentationPolicy governs the endpoint any more\n");
    }
    for a in &e.answerers {
        let rule = a
            .rule
            .as_deref()
            .map_or(String::new(), |r| format!(" rule {r}"));
        out.push_str(&format!(
            "  policy {}{rule}: {}\n",
            a.policy,
            ownership(&a.ownership)
        ));
    }
    out.push_str(
        "to ask for an exception (a time-bound allow; someone in the approvers' group approves it):\n  ",
    );
    out.push_str(&e.request);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: serde_json::Value) -> FlowRecord {
        let mut base = serde_json::json!({
            "schema": "flow/v1",
            "start": "2026-04-01T10:00:00Z", "end": "2026-04-01T10:00:01Z",
            "node": "n2",
            "source": {"address": "10.0.2.2", "identity": 300, "labels": {"app": "report"},
                       "kind": "pod", "name": "report", "namespace": "prod", "reported": false},
            "destination": {"address": "10.0.2.1", "identity": 301, "labels": {"app": "db"},
                            "kind": "pod", "name": "db", "namespace": "prod", "reported": true},
            "port": 5432, "protocol": "TCP", "direction": "ingress",
            "verdict": "deny", "wouldVerdict": "deny", "mode": "full", "reason": "default",
            "flows": 1, "packets": 1, "bytes": 60
        });
        for (k, v) in json.as_object().expect("object") {
            base[k] = v.clone();
        }
        serde_json::from_value(base).expect("a flow/v1 record")
    }

    fn policies() -> BTreeMap<String, SegmentationPolicySpec> {
        let db: SegmentationPolicySpec = serde_yaml::from_str(
            r#"
scope: {selector: {matchLabels: {app: db}}}
enforcement: full
owner: payments
contact: payments-oncall
ingress:
- {name: no-batch, action: deny, owner: dba, contact: "dba@example.com", peers: [{selector: {matchLabels: {app: batch}}}]}
"#,
        )
        .expect("policy");
        let web: SegmentationPolicySpec = serde_yaml::from_str(
            "scope: {selector: {matchLabels: {app: web}}}\nowner: web\ncontact: web-team",
        )
        .expect("policy");
        BTreeMap::from([("db".into(), db), ("web".into(), web)])
    }

    #[test]
    fn the_mode_denied_so_the_owners_of_the_policies_in_scope_answer() {
        let older = record(serde_json::json!({"start": "2026-04-01T09:00:00Z", "port": 5432}));
        let allowed = record(
            serde_json::json!({"start": "2026-04-01T11:00:00Z", "verdict": "allow", "wouldVerdict": "allow"}),
        );
        let e = explain(
            &[older, record(serde_json::json!({})), allowed],
            &policies(),
        )
        .expect("a deny");
        assert!(e.enforced);
        assert_eq!(
            e.record.start.to_string(),
            "2026-04-01T10:00:00Z",
            "the newest deny"
        );
        assert_eq!(e.deciding, None);
        assert_eq!(e.answerers.len(), 1, "only db governs the destination");
        assert_eq!(e.answerers[0].ownership.owner.as_deref(), Some("payments"));
        assert_eq!(
            e.request,
            "kubectl bulkhead exception request report-to-db-5432 --direction ingress --scope app=db --peer app=report --port 5432/TCP --reason \"...\" --ticket TICKET --expires 30d"
        );
        let text = text(&e);
        assert!(
            text.contains("owner payments, contact payments-oncall"),
            "{text}"
        );
        assert!(
            text.contains("none matched; the full mode's default (default) decided"),
            "{text}"
        );
    }

    #[test]
    fn a_rule_denied_so_its_own_owner_answers_and_would_denies_count_in_visibility() {
        let by_rule = record(serde_json::json!({
            "reason": "policy", "rule": {"policy": "db", "name": "no-batch", "id": 7},
            "verdict": "allow", "mode": "visibility",
            "source": {"address": "10.0.3.3", "identity": 302, "labels": {}, "kind": "world", "reported": false}
        }));
        let e = explain(&[by_rule], &policies()).expect("a would-deny");
        assert!(!e.enforced);
        let a = &e.answerers[0];
        assert_eq!(
            (a.policy.as_str(), a.rule.as_deref()),
            ("db", Some("no-batch"))
        );
        assert_eq!(
            a.ownership.owner.as_deref(),
            Some("dba"),
            "the rule's owner over the policy's"
        );
        assert!(e.request.contains("--peer 10.0.3.3/32"), "{}", e.request);
        assert!(explain(&[], &policies()).is_none());
    }
}
