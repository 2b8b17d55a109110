//! `flow/v1`: the committed JSON Schema is the one the types generate, the
//! examples in docs/flows.md are valid records, and the schema refuses what
//! the types refuse.

use std::path::PathBuf;

use bulkhead_api::flow::{record_schema, FlowRecord};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&record_schema()).expect("schema");
    text.push('\n');
    text
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = repo().join("docs/flow-v1.schema.json");
    if std::env::var_os("BULKHEAD_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, schema_text()).expect("write the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == schema_text(),
        "{} is stale: run BULKHEAD_UPDATE_SCHEMA=1 cargo test -p bulkhead-api --test flow_schema",
        path.display()
    );
}

/// The JSON objects of docs/flows.md's ```json blocks.
fn doc_examples() -> Vec<serde_json::Value> {
    let doc = std::fs::read_to_string(repo().join("docs/flows.md")).expect("docs/flows.md");
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in doc.lines() {
        match (&mut block, line.trim()) {
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                out.push(serde_json::from_str(b).expect("a JSON example in docs/flows.md"));
                block = None;
            }
            (Some(b), l) => b.push_str(l),
            _ => {}
        }
    }
    out
}

#[test]
fn the_documented_examples_are_valid_records() {
    let schema = record_schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let examples = doc_examples();
    assert!(!examples.is_empty(), "docs/flows.md shows a record");
    for example in examples {
        let errors: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:?} in {example}");
        let record: FlowRecord =
            serde_json::from_value(example.clone()).expect("the type reads it");
        assert_eq!(
            serde_json::to_value(&record).expect("serialize"),
            example,
            "round trip"
        );
    }
}

#[test]
fn the_schema_refuses_what_the_types_refuse() {
    let schema = record_schema();
    let validator = jsonschema::validator_for(&schema).expect("schema");
    let good = doc_examples().remove(0);
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        ("an unknown field", Box::new(|r| r["extra"] = 1.into())),
        (
            "no node",
            Box::new(|r| {
                r.as_object_mut().expect("object").remove("node");
            }),
        ),
        ("a bad verdict", Box::new(|r| r["verdict"] = "maybe".into())),
        ("a bad protocol", Box::new(|r| r["protocol"] = "tcp".into())),
        (
            "a port out of range",
            Box::new(|r| r["port"] = 70000.into()),
        ),
        ("a negative count", Box::new(|r| r["flows"] = (-1).into())),
        (
            "a bad endpoint kind",
            Box::new(|r| r["source"]["kind"] = "vm".into()),
        ),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(!validator.is_valid(&bad), "the schema accepts {what}");
        assert!(
            serde_json::from_value::<FlowRecord>(bad).is_err(),
            "the type accepts {what}"
        );
    }
}
