//! Reading the standalone mode's inputs: a `NodeRuleMap` and `IdentityMap`
//! shards, each as YAML or JSON, either the whole object or its bare spec.

use std::path::Path;

use bulkhead_api::{IdentityMap, IdentityMapSpec, NodeRuleMap, NodeRuleMapSpec};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Reads a NodeRuleMap (object or spec) from `path`.
pub fn read_rule_map(path: &Path) -> Result<NodeRuleMapSpec> {
    let text = read(path)?;
    parse_either::<NodeRuleMap, NodeRuleMapSpec>(path, &text, |o| o.spec)
}

/// Reads an IdentityMap shard (object or spec) from `path`.
pub fn read_identity_map(path: &Path) -> Result<IdentityMapSpec> {
    let text = read(path)?;
    parse_either::<IdentityMap, IdentityMapSpec>(path, &text, |o| o.spec)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses the whole object when the text has a `kind` and a `spec`, the bare
/// spec otherwise. JSON (what the operator and every generator write) goes
/// through serde_json straight into the typed value; YAML through
/// serde_yaml. Neither builds a generic document tree first: a 100k-rule
/// map would cost its size many times over as one.
fn parse_either<O, S>(path: &Path, text: &str, spec_of: impl Fn(O) -> S) -> Result<S>
where
    O: DeserializeOwned,
    S: DeserializeOwned,
{
    let bad = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    if text.trim_start().starts_with('{') {
        let shape: Shape = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        return if shape.is_object() {
            serde_json::from_str::<O>(text).map(spec_of)
        } else {
            serde_json::from_str::<S>(text)
        }
        .map_err(|e| bad(e.to_string()));
    }
    let shape: Shape = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    if shape.is_object() {
        serde_yaml::from_str::<O>(text).map(spec_of)
    } else {
        serde_yaml::from_str::<S>(text)
    }
    .map_err(|e| bad(e.to_string()))
}

/// Whether a document is a whole object: read without keeping anything.
#[derive(serde::Deserialize)]
struct Shape {
    kind: Option<serde::de::IgnoredAny>,
    spec: Option<serde::de::IgnoredAny>,
}

impl Shape {
    fn is_object(&self) -> bool {
        self.kind.is_some() && self.spec.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_object_and_bare_spec() {
        let dir = std::env::temp_dir().join(format!("bh-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bare = dir.join("bare.yaml");
        std::fs::write(
            &bare,
            "nodeKind: Node\nhost: {name: n1, identity: 300, mode: full, addresses: [10.0.0.1]}\n",
        )
        .expect("write");
        let object = dir.join("object.json");
        std::fs::write(
            &object,
            r#"{"apiVersion":"bulkhead.dev/v1alpha1","kind":"NodeRuleMap","metadata":{"name":"n1"},
               "spec":{"nodeKind":"Node","host":{"name":"n1","identity":300,"mode":"full"}}}"#,
        )
        .expect("write");
        assert_eq!(read_rule_map(&bare).expect("bare").host.identity, 300);
        assert_eq!(read_rule_map(&object).expect("object").host.name, "n1");
        let bare_json = dir.join("bare.json");
        std::fs::write(
            &bare_json,
            r#" {"nodeKind":"Node","host":{"name":"n2","identity":301,"mode":"full"}}"#,
        )
        .expect("write");
        assert_eq!(
            read_rule_map(&bare_json).expect("bare JSON").host.identity,
            301
        );
        let object_yaml = dir.join("object.yaml");
        std::fs::write(
            &object_yaml,
            "kind: NodeRuleMap\napiVersion: bulkhead.dev/v1alpha1\nmetadata: {name: n3}\n\
             spec: {nodeKind: Node, host: {name: n3, identity: 302, mode: full}}\n",
        )
        .expect("write");
        assert_eq!(
            read_rule_map(&object_yaml).expect("YAML object").host.name,
            "n3"
        );
        let bad_json = dir.join("bad.json");
        std::fs::write(&bad_json, r#"{"host": {"name": 3}}"#).expect("write");
        let err = read_rule_map(&bad_json).expect_err("a number for a name");
        assert!(err.to_string().contains("bad.json"), "{err}");
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "host: [").expect("write");
        let err = read_rule_map(&bad).expect_err("malformed");
        assert!(err.to_string().contains("bad.yaml"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
