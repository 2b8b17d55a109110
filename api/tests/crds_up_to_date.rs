//! The committed `crds/*.yaml` must be what the types generate: run
//! `make crds` after changing a type, and commit the result.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut stale = Vec::new();
    for crd in bulkhead_api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let path = dir.join(format!("{name}.yaml"));
        let generated = serde_yaml::to_string(&crd).expect("CRD serializes");
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == generated => {}
            Ok(_) => stale.push(format!("{} differs from the types", path.display())),
            Err(e) => stale.push(format!("{} cannot be read: {e}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "CRDs drifted; run `make crds` and commit:\n{}",
        stale.join("\n")
    );
}
