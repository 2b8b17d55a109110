//! Unknown fields and bounds, read from the CRDs' own OpenAPI schemas.
//!
//! `kubectl apply` validates strictly by default: a misspelt field is an
//! error, not a silently dropped rule. The schema is the one `crdgen` writes,
//! so these checks cannot drift from what the API server enforces.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_yaml::Value;

use super::Violation;

/// The fields every object may carry whatever its schema says.
const OBJECT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Fields the CRD of `kind` does not know, and values outside its bounds
/// (lengths, item counts, minimum and maximum). Kinds without a Bulkhead CRD
/// pass unchecked.
pub fn unknown_fields_and_bounds(kind: &str, object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    if let Some(schema) = schemas().get(kind) {
        walk(object, schema, "", true, &mut out);
    }
    out
}

fn schemas() -> &'static BTreeMap<String, JSONSchemaProps> {
    static SCHEMAS: OnceLock<BTreeMap<String, JSONSchemaProps>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        bulkhead_api::crds()
            .into_iter()
            .filter_map(|crd| {
                let version = crd.spec.versions.into_iter().next()?;
                let schema = version.schema?.open_api_v3_schema?;
                Some((crd.spec.names.kind, schema))
            })
            .collect()
    })
}

fn walk(value: &Value, schema: &JSONSchemaProps, path: &str, root: bool, out: &mut Vec<Violation>) {
    if schema.x_kubernetes_preserve_unknown_fields == Some(true) {
        return;
    }
    match value {
        Value::Mapping(map) => {
            let properties = schema.properties.as_ref();
            let additional = match &schema.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(s)) => Some(s.as_ref()),
                _ => None,
            };
            for (key, child) in map {
                let Some(key) = key.as_str() else { continue };
                if root && OBJECT_FIELDS.contains(&key) {
                    continue;
                }
                let child_path = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(s), _) | (None, Some(s)) => walk(child, s, &child_path, false, out),
                    (None, None) if properties.is_some() => {
                        out.push(Violation::new(child_path, "unknown field"));
                    }
                    (None, None) => {}
                }
            }
        }
        Value::Sequence(items) => {
            check_count(items.len(), schema.min_items, schema.max_items, path, out);
            if let Some(JSONSchemaPropsOrArray::Schema(s)) = &schema.items {
                for (i, item) in items.iter().enumerate() {
                    walk(item, s, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        Value::String(text) => {
            let len = text.chars().count();
            if let Some(min) = schema.min_length.filter(|m| (len as i64) < *m) {
                out.push(Violation::new(
                    path,
                    format!("must be at least {min} characters long"),
                ));
            }
            if let Some(max) = schema.max_length.filter(|m| (len as i64) > *m) {
                out.push(Violation::new(
                    path,
                    format!("must be at most {max} characters long (is {len})"),
                ));
            }
        }
        Value::Number(n) => {
            let Some(n) = n.as_f64() else { return };
            if let Some(min) = schema.minimum.filter(|m| n < *m) {
                out.push(Violation::new(
                    path,
                    format!("must be at least {min} (got {n})"),
                ));
            }
            if let Some(max) = schema.maximum.filter(|m| n > *m) {
                out.push(Violation::new(
                    path,
                    format!("must be at most {max} (got {n})"),
                ));
            }
        }
        Value::Tagged(tagged) => walk(&tagged.value, schema, path, root, out),
        Value::Null | Value::Bool(_) => {}
    }
}

fn check_count(
    len: usize,
    min: Option<i64>,
    max: Option<i64>,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let len = len as i64;
    if let Some(min) = min.filter(|m| len < *m) {
        let noun = if min == 1 { "item" } else { "items" };
        out.push(Violation::new(
            path,
            format!("must have at least {min} {noun}"),
        ));
    }
    if let Some(max) = max.filter(|m| len > *m) {
        out.push(Violation::new(
            path,
            format!("must have at most {max} items (has {len})"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: &str, yaml: &str) -> Vec<String> {
        let value: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
        unknown_fields_and_bounds(kind, &value)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn accepts_a_valid_policy() {
        let yaml = "\
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: p, labels: {a: b}, annotations: {x: y}}
spec:
  scope: {selector: {matchLabels: {app: web}}}
  ingress: [{action: allow, ports: [{protocol: TCP, port: 80}]}]
";
        assert_eq!(check("SegmentationPolicy", yaml), Vec::<String>::new());
    }

    #[test]
    fn reports_unknown_fields_by_path() {
        let yaml = "\
spec:
  scope: {clusterWide: true}
  ingres: []
  egress: [{action: allow, ports: [{protocol: TCP, prot: 80}]}]
";
        assert_eq!(
            check("SegmentationPolicy", yaml),
            vec![
                "spec.ingres: unknown field",
                "spec.egress[0].ports[0].prot: unknown field"
            ]
        );
    }

    #[test]
    fn reports_bounds() {
        let yaml = "spec: {scope: {clusterWide: true}, ingress: [{action: allow, ports: [{protocol: TCP, port: 0}]}]}";
        assert_eq!(
            check("SegmentationPolicy", yaml),
            vec!["spec.ingress[0].ports[0].port: must be at least 1 (got 0)"]
        );
        assert_eq!(
            check("LabelMapping", "spec: {rules: []}"),
            vec!["spec.rules: must have at least 1 item"]
        );
        assert_eq!(
            check("ExternalNode", "spec: {addresses: []}"),
            vec!["spec.addresses: must have at least 1 item"]
        );
    }

    #[test]
    fn label_maps_take_any_key_and_core_kinds_pass() {
        let yaml = "spec: {rules: [{match: {nodes: {}}, labels: {anything: goes}}]}";
        assert_eq!(check("LabelMapping", yaml), Vec::<String>::new());
        assert_eq!(check("Pod", "spec: {whatever: 1}"), Vec::<String>::new());
    }
}
