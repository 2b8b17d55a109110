//! The loader behind `simulate` and `compile` rejects what the API server
//! rejects, naming the same field: every case of the shared table
//! (`api/tests/fixtures/malformed.yaml`, also run against the CRDs' CEL rules
//! in `api/tests/cel.rs` and a real API server in `e2e/tests/control_plane.rs`).

use std::path::Path;

use kubectl_bulkhead::load::{load_text, Inventory};

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    valid: bool,
    field: Option<String>,
    message: Option<String>,
    object: serde_json::Value,
}

#[test]
fn every_malformed_object_is_rejected_naming_its_field_as_the_api_server_does() {
    let cases: Vec<Case> =
        serde_yaml::from_str(include_str!("../../api/tests/fixtures/malformed.yaml"))
            .expect("the shared fixture");
    let mut failures = Vec::new();
    for case in &cases {
        let text = serde_yaml::to_string(&case.object).expect("yaml");
        let mut inventory = Inventory::default();
        let mut errors = Vec::new();
        load_text(Path::new("case.yaml"), &text, &mut inventory, &mut errors);
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        if case.valid {
            if !said.is_empty() {
                failures.push(format!("{}: should load, got {said:?}", case.name));
            }
            continue;
        }
        let field = case.field.as_deref().expect("field");
        let named = said
            .iter()
            .any(|e| e.contains(field) && case.message.as_deref().is_none_or(|m| e.contains(m)));
        if !named {
            failures.push(format!(
                "{}: should fail at {field} ({:?}), got {said:?}",
                case.name, case.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree with the API server:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
