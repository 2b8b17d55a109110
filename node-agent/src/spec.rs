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

/// Parses the whole object when the text has a `kind`, the bare spec
/// otherwise. YAML is a superset of JSON, so one parser serves both.
fn parse_either<O, S>(path: &Path, text: &str, spec_of: impl Fn(O) -> S) -> Result<S>
where
    O: DeserializeOwned,
    S: DeserializeOwned,
{
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let is_object = value.get("kind").is_some() && value.get("spec").is_some();
    let parsed = if is_object {
        serde_yaml::from_value::<O>(value).map(spec_of)
    } else {
        serde_yaml::from_value::<S>(value)
    };
    parsed.map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
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
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "host: [").expect("write");
        let err = read_rule_map(&bad).expect_err("malformed");
        assert!(err.to_string().contains("bad.yaml"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
