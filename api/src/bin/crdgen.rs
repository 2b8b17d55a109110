//! Writes every Bulkhead CRD as YAML: to `DIR/<plural>.bulkhead.dev.yaml`
//! when given a directory, else all of them to standard output.

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args().nth(1);
    for crd in bulkhead_api::crds() {
        let yaml = serde_yaml::to_string(&crd)?;
        match &target {
            Some(dir) => {
                let name = crd.metadata.name.clone().unwrap_or_default();
                std::fs::write(format!("{dir}/{name}.yaml"), &yaml)?;
            }
            None => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "---\n{yaml}")?;
            }
        }
    }
    Ok(())
}
