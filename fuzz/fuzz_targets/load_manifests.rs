//! The manifest loader (`kubectl bulkhead simulate -f`, cli/src/load) on
//! arbitrary text, read as YAML and as JSON (every JSON document is YAML;
//! the loader has one parser for both): it returns errors, never panics,
//! and what it accepts the compiler compiles without a panic.

#![no_main]

use std::path::Path;

use bulkhead_policy::{compile, CompileOptions, IdentityAllocation};
use kubectl_bulkhead::load::{load_text, Inventory};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for file in ["fuzz.yaml", "fuzz.json"] {
        let mut inventory = Inventory::default();
        let mut errors = Vec::new();
        load_text(Path::new(file), text, &mut inventory, &mut errors);
        for error in &errors {
            // Rendering the message walks the source again (line lookup).
            let _ = error.to_string();
        }
        if errors.is_empty() {
            let _ = compile(
                &inventory.snapshot,
                &CompileOptions::default(),
                &IdentityAllocation::default(),
            );
        }
    }
});
