//! Writes every Bulkhead CRD as YAML: to `DIR/<plural>.bulkhead.dev.yaml` in
//! each directory given (`make crds` passes `crds` and the Helm chart's
//! `charts/bulkhead/crds`), else all of them to standard output.

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    for crd in bulkhead_api::crds() {
        let yaml = serde_yaml::to_string(&crd)?;
        if dirs.is_empty() {
            let mut out = std::io::stdout().lock();
            writeln!(out, "---\n{yaml}")?;
        }
        for dir in &dirs {
            let name = crd.metadata.name.clone().unwrap_or_default();
            std::fs::write(format!("{dir}/{name}.yaml"), &yaml)?;
        }
    }
    Ok(())
}
