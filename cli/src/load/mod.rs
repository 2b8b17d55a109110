//! Reading manifests into a compiler [`Snapshot`].
//!
//! ```text
//!  PATH... ─► files (*.yaml, *.yml, *.json; directories recursively, sorted)
//!        ─► documents (multi-document YAML; `kind: List` items too)
//!        ─► object.rs: kind → schema check → typed object → CEL rules → snapshot entry
//!        ─► Inventory: the snapshot, where each object came from, warnings
//! ```
//!
//! Every error names the file (with the line where the parser can tell),
//! the object and the field. All errors are collected, so one run shows
//! everything a pull request has to fix.

mod error;
pub mod locate;
mod object;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use bulkhead_policy::snapshot::{self, Snapshot};
use serde::Deserialize;
use serde_yaml::Value;

pub use error::{LoadError, LoadErrors, Location};
pub use object::Kind;

/// What the input holds.
#[derive(Debug, Default)]
pub struct Inventory {
    /// The compiler's input.
    pub snapshot: Snapshot,
    /// Where each object was defined, by kind and name (`namespace/name` for pods).
    pub origins: BTreeMap<(Kind, String), Location>,
    /// Nodes that pods run on but that the input does not define.
    pub implied_nodes: BTreeSet<String>,
    /// Documents that were skipped, and why.
    pub warnings: Vec<String>,
    /// SegmentationExceptions by name, with the status the operator wrote
    /// (not in the snapshot: [`crate::exceptions`] adds the enforced ones).
    pub exceptions: BTreeMap<String, bulkhead_api::SegmentationException>,
}

/// Loads every manifest under `paths`.
pub fn load(paths: &[PathBuf]) -> Result<Inventory, LoadErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        match discover(path) {
            Ok(found) => files.extend(found),
            Err(err) => errors.push(err),
        }
    }
    let mut inventory = Inventory::default();
    for file in files {
        match fs::read_to_string(&file) {
            Ok(text) => load_text(&file, &text, &mut inventory, &mut errors),
            Err(source) => errors.push(LoadError::Io {
                path: file.display().to_string(),
                source,
            }),
        }
    }
    imply_nodes(&mut inventory);
    if errors.is_empty() {
        Ok(inventory)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Loads the documents of one file's text into `inventory`.
pub fn load_text(file: &Path, text: &str, inventory: &mut Inventory, errors: &mut Vec<LoadError>) {
    for (document, deserializer) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let at = Location {
            file: file.to_path_buf(),
            document,
            item: None,
            position: None,
        };
        let value = match Value::deserialize(deserializer) {
            Ok(value) => value,
            Err(err) => {
                // The parser cannot resynchronise after a syntax error: stop this file.
                let position = err.location().map(|l| locate::Position {
                    line: l.line(),
                    column: l.column(),
                });
                let mut message = err.to_string();
                if let Some(p) = position {
                    // Said once, in front.
                    message = message.replacen(
                        &format!(" at line {} column {}", p.line, p.column),
                        "",
                        1,
                    );
                }
                errors.push(LoadError::Syntax {
                    at: at.at(position),
                    message,
                });
                return;
            }
        };
        if value.is_null() {
            continue;
        }
        let source = object::Source { text, at };
        if is_list(&value) {
            let items = value
                .get("items")
                .and_then(Value::as_sequence)
                .cloned()
                .unwrap_or_default();
            for (i, item) in items.into_iter().enumerate() {
                let at = Location {
                    item: Some(i),
                    ..source.at.clone()
                };
                object::load_object(&object::Source { text, at }, item, inventory, errors);
            }
        } else {
            object::load_object(&source, value, inventory, errors);
        }
    }
}

fn is_list(value: &Value) -> bool {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    kind.ends_with("List") && value.get("items").is_some_and(Value::is_sequence)
}

/// The manifests a path names: the file itself, or every `*.yaml`, `*.yml`
/// and `*.json` under a directory (hidden entries skipped), sorted so the
/// result never depends on the file system's order.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|source| LoadError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| LoadError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let child = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if child.is_dir() {
                pending.push(child);
            } else if is_manifest(&child) {
                found.push(child);
            }
        }
    }
    if found.is_empty() {
        return Err(LoadError::NoManifests(path.display().to_string()));
    }
    found.sort();
    Ok(found)
}

fn is_manifest(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    matches!(ext.to_ascii_lowercase().as_str(), "yaml" | "yml" | "json")
}

/// A pod may name a Node the input does not define: the node exists all the
/// same, with no labels and no addresses we know of.
fn imply_nodes(inventory: &mut Inventory) {
    let snapshot = &mut inventory.snapshot;
    let named: BTreeSet<String> = snapshot
        .pods
        .values()
        .filter_map(|p| p.node.clone())
        .collect();
    for node in named {
        if !snapshot.nodes.contains_key(&node) {
            snapshot
                .nodes
                .insert(node.clone(), snapshot::Node::default());
            inventory.implied_nodes.insert(node);
        }
    }
}

/// serde_yaml ends a typed error with "at line L column C"; the location is
/// printed first instead.
pub(crate) fn strip_location(message: &str) -> String {
    let Some(i) = message.rfind(" at line ") else {
        return message.to_string();
    };
    let tail = &message[i + " at line ".len()..];
    let numeric = tail
        .split_once(" column ")
        .is_some_and(|(l, c)| l.parse::<usize>().is_ok() && c.parse::<usize>().is_ok());
    if numeric {
        message[..i].to_string()
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests;
