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

/// One case of `fixtures/malformed.yaml` (shared with the CLI's and the
/// API server's tests, which must agree with these rules).
#[derive(serde::Deserialize)]
struct Case {
    name: String,
    #[serde(default)]
    valid: bool,
    #[serde(default)]
    cel: bool,
    field: Option<String>,
    message: Option<String>,
    object: Value,
}

/// The failed rules' (field, message) for `object`.
fn errors(object: &Value) -> Vec<(String, String)> {
    let kind = object["kind"].as_str().expect("kind");
    match Validator::new().validate(&schema_of(kind), object, None) {
        Ok(()) => Vec::new(),
        Err(errs) => errs
            .iter()
            .map(|e| (e.field_path.clone(), e.message.clone()))
            .collect(),
    }
}

#[test]
fn every_cel_case_is_rejected_naming_its_field_and_every_valid_case_passes() {
    let cases: Vec<Case> =
        serde_yaml::from_str(include_str!("fixtures/malformed.yaml")).expect("fixture");
    let mut checked = 0;
    for case in cases.iter().filter(|c| c.valid || c.cel) {
        let got = errors(&case.object);
        if case.valid {
            assert!(got.is_empty(), "{} should pass, got {got:?}", case.name);
            continue;
        }
        let (field, message) = (
            case.field.as_deref().expect("field"),
            case.message.as_deref().expect("a CEL case has a message"),
        );
        assert!(
            got.iter()
                .any(|(f, m)| f.contains(field) && m.contains(message)),
            "{} should fail at {field} with {message:?}, got {got:?}",
            case.name
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} CEL cases");
}
