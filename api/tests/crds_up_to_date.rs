//! The committed CRDs must be what the types generate, in both places they
//! are committed: `crds/*.yaml` and the Helm chart's `crds/` (Helm installs
//! the CRDs from there). Run `make crds` after changing a type, and commit
//! the result.

use std::collections::BTreeSet;
use std::path::Path;

const DIRS: [&str; 2] = ["../crds", "../charts/bulkhead/crds"];

#[test]
fn committed_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for dir in DIRS.map(|d| root.join(d)) {
        let mut expected = BTreeSet::new();
        for crd in bulkhead_api::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let file = format!("{name}.yaml");
            let path = dir.join(&file);
            expected.insert(file);
            let generated = serde_yaml::to_string(&crd).expect("CRD serializes");
            match std::fs::read_to_string(&path) {
                Ok(committed) if committed == generated => {}
                Ok(_) => stale.push(format!("{} differs from the types", path.display())),
                Err(e) => stale.push(format!("{} cannot be read: {e}", path.display())),
            }
        }
        // A CRD that was removed or renamed must not linger in either place.
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    if !expected.contains(&file) {
                        stale.push(format!(
                            "{} is not a CRD the types generate",
                            dir.join(file).display()
                        ));
                    }
                }
            }
            Err(e) => stale.push(format!("{} cannot be listed: {e}", dir.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "CRDs drifted; run `make crds` and commit:\n{}",
        stale.join("\n")
    );
}
