//! `compile` and `labels` on fixture directories.

mod support;

use std::fs;

use bulkhead_api::{IdentityMap, NodeRuleMap};
use support::{fixture, run, scratch};

#[test]
fn compile_writes_one_rule_map_per_node_and_the_shards() {
    let out = scratch("compile");
    fs::write(out.join("noderulemap-gone.yaml"), "stale").expect("write");
    fs::write(out.join("notes.txt"), "kept").expect("write");
    let dir = out.to_str().expect("utf-8 path");
    let r = run(&["compile", &fixture("basic"), "--out", dir, "--shards", "2"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .starts_with("wrote 3 NodeRuleMaps and 2 IdentityMap shards to "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("unlabeled:"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("b-from-a: mode full, 1 endpoint in scope"),
        "{}",
        r.stdout
    );
    assert!(
        !out.join("noderulemap-gone.yaml").exists(),
        "stale maps are removed"
    );
    assert!(out.join("notes.txt").exists(), "other files are left alone");

    for node in ["n1", "n2", "vm1"] {
        let text =
            fs::read_to_string(out.join(format!("noderulemap-{node}.yaml"))).expect("map written");
        let map: NodeRuleMap = serde_yaml::from_str(&text).expect("a NodeRuleMap");
        assert_eq!(map.metadata.name.as_deref(), Some(node));
        assert!(
            text.starts_with("apiVersion: bulkhead.dev/v1alpha1\nkind: NodeRuleMap\n"),
            "{text}"
        );
    }
    let n1: NodeRuleMap =
        serde_yaml::from_str(&fs::read_to_string(out.join("noderulemap-n1.yaml")).expect("read"))
            .expect("parse");
    let names: Vec<&str> = n1.spec.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["x/a", "x/b"]);
    for shard in 0..2 {
        let text = fs::read_to_string(out.join(format!("identitymap-{shard}.yaml")))
            .expect("shard written");
        let map: IdentityMap = serde_yaml::from_str(&text).expect("an IdentityMap");
        assert_eq!(map.metadata.name, Some(format!("shard-{shard}")));
        assert_eq!((map.spec.shard, map.spec.shards), (shard, 2));
    }
}

#[test]
fn compile_writes_json_when_asked() {
    let out = scratch("compile-json");
    let dir = out.to_str().expect("utf-8 path");
    let r = run(&["compile", &fixture("basic"), "--out", dir, "-o", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let text = fs::read_to_string(out.join("noderulemap-n1.json")).expect("json map");
    let map: NodeRuleMap = serde_json::from_str(&text).expect("a NodeRuleMap");
    assert_eq!(map.metadata.name.as_deref(), Some("n1"));
}

#[test]
fn labels_lists_endpoints_and_the_queue() {
    let v = run(&["labels", &fixture("basic"), "-o", "json"]).json();
    let endpoints = v["endpoints"].as_array().expect("endpoints");
    let xa = endpoints
        .iter()
        .find(|e| e["endpoint"] == "x/a")
        .expect("x/a listed");
    assert_eq!(xa["labels"], serde_json::json!({"app": "a", "env": "ex"}));
    assert_eq!(
        (
            xa["kind"].as_str(),
            xa["node"].as_str(),
            xa["mode"].as_str()
        ),
        (Some("pod"), Some("n1"), Some("visibility"))
    );
    assert_eq!(
        xa["addresses"],
        serde_json::json!(["10.1.0.1", "fd00:1::1"])
    );
    let unlabeled: Vec<&str> = v["unlabeled"]
        .as_array()
        .expect("unlabeled")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert_eq!(unlabeled, ["node/n1", "node/n2"]);

    let r = run(&["labels", &fixture("basic")]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.starts_with("ENDPOINT "), "{}", r.stdout);
    assert!(r.stdout.contains("unlabeled (2):"), "{}", r.stdout);
}
