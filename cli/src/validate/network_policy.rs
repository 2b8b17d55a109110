//! NetworkPolicy fields, as `kubectl apply`'s strict validation knows them.
//!
//! The typed object ignores a field it does not know, so a misspelt
//! `namespaceSelecter` would silently turn a peer into "this namespace
//! only". Bulkhead has no schema of its own for this kind; the shape below
//! is the `networking.k8s.io/v1` one. Values are checked when the object is
//! converted (`bulkhead_policy::convert::network_policy`).

use serde_yaml::Value;

use super::Violation;

/// What a field holds.
enum Shape {
    /// Known fields, each with its shape.
    Object(&'static [(&'static str, &'static Shape)]),
    /// A list of one shape.
    List(&'static Shape),
    /// Anything (labels, metadata, scalars).
    Any,
}

static ANY: Shape = Shape::Any;
static REQUIREMENT: Shape = Shape::Object(&[("key", &ANY), ("operator", &ANY), ("values", &ANY)]);
static REQUIREMENTS: Shape = Shape::List(&REQUIREMENT);
static SELECTOR: Shape =
    Shape::Object(&[("matchLabels", &ANY), ("matchExpressions", &REQUIREMENTS)]);
static IP_BLOCK: Shape = Shape::Object(&[("cidr", &ANY), ("except", &ANY)]);
static PEER: Shape = Shape::Object(&[
    ("podSelector", &SELECTOR),
    ("namespaceSelector", &SELECTOR),
    ("ipBlock", &IP_BLOCK),
]);
static PEERS: Shape = Shape::List(&PEER);
static PORT: Shape = Shape::Object(&[("protocol", &ANY), ("port", &ANY), ("endPort", &ANY)]);
static PORTS: Shape = Shape::List(&PORT);
static INGRESS_RULE: Shape = Shape::Object(&[("from", &PEERS), ("ports", &PORTS)]);
static EGRESS_RULE: Shape = Shape::Object(&[("to", &PEERS), ("ports", &PORTS)]);
static INGRESS: Shape = Shape::List(&INGRESS_RULE);
static EGRESS: Shape = Shape::List(&EGRESS_RULE);
static SPEC: Shape = Shape::Object(&[
    ("podSelector", &SELECTOR),
    ("policyTypes", &ANY),
    ("ingress", &INGRESS),
    ("egress", &EGRESS),
]);
static OBJECT: Shape = Shape::Object(&[
    ("apiVersion", &ANY),
    ("kind", &ANY),
    ("metadata", &ANY),
    ("spec", &SPEC),
]);

/// Fields of a NetworkPolicy manifest that the API does not know.
pub fn network_policy(object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    walk(object, &OBJECT, "", &mut out);
    out
}

fn walk(value: &Value, shape: &Shape, path: &str, out: &mut Vec<Violation>) {
    match (shape, value) {
        (Shape::Object(fields), Value::Mapping(map)) => {
            for (key, child) in map {
                let Some(key) = key.as_str() else { continue };
                let child_path = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                match fields.iter().find(|(name, _)| *name == key) {
                    Some((_, s)) => walk(child, s, &child_path, out),
                    None => out.push(Violation::new(child_path, "unknown field")),
                }
            }
        }
        (Shape::List(item), Value::Sequence(items)) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, item, &format!("{path}[{i}]"), out);
            }
        }
        (_, Value::Tagged(tagged)) => walk(&tagged.value, shape, path, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_named_known_ones_pass() {
        let value: Value = serde_yaml::from_str(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, labels: {anything: goes}}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelecter: {}
    - ipBlock: {cidr: 10.0.0.0/8, exept: []}
    - podSelector: {matchExpressions: [{key: a, operator: Exists, value: []}]}
    ports: [{port: 80, endport: 90}]
  egres: []
",
        )
        .expect("YAML");
        let fields: Vec<String> = network_policy(&value)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.ingress[0].from[0].namespaceSelecter",
                "spec.ingress[0].from[1].ipBlock.exept",
                "spec.ingress[0].from[2].podSelector.matchExpressions[0].value",
                "spec.ingress[0].ports[0].endport",
                "spec.egres",
            ]
        );
    }
}
