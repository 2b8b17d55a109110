//! CMDB rows to LabelMappings: validation (all of it before anything is
//! written), grouping, and the diff against what the cluster holds.
//!
//! ```text
//!  rows ──--map column=label──► (CIDR | hostname, labels) per row, every cell checked
//!       ──group by label set──► rules (≤ 64 addresses each) ──► LabelMappings cmdb-<source>[-N]
//!                                                                (≤ 128 rules each)
//!  desired vs existing (label bulkhead.dev/cmdb-source=<source>) ──► create | update | delete | unchanged
//! ```
//!
//! Provenance: every mapping carries the label `bulkhead.dev/cmdb-source`
//! and the annotations `bulkhead.dev/cmdb-imported-at` (when its spec last
//! changed) and `bulkhead.dev/cmdb-file`; every rule is named after the
//! source and the rows it came from. An import whose result equals what is
//! there changes nothing, not even the import time.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::mapping::{EndpointMatch, LabelMappingSpec, MappingRule};
use bulkhead_api::Labels;

use super::parse::{Cell, Row};

pub const SOURCE_LABEL: &str = "bulkhead.dev/cmdb-source";
pub const IMPORTED_AT: &str = "bulkhead.dev/cmdb-imported-at";
pub const FILE_ANNOTATION: &str = "bulkhead.dev/cmdb-file";
const ADDRESSES_PER_RULE: usize = 64;
const RULES_PER_MAPPING: usize = 128;

/// A bad cell or argument, naming the file, line, column and column name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {what}")]
pub struct RowError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub what: String,
}

/// What to read from each row.
#[derive(Clone, Debug)]
pub struct ImportConfig {
    pub file: String,
    /// Mapping names and provenance: `cmdb-<source>`.
    pub source: String,
    /// CMDB column → segmentation label key.
    pub map: Vec<(String, String)>,
    pub cidr_column: String,
    pub hostname_column: String,
    pub priority: i32,
}

/// One LabelMapping to hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub name: String,
    pub spec: LabelMappingSpec,
}

/// RFC 1123 label-ish value as Kubernetes label values allow: at most 63,
/// alphanumerics at both ends, `-`, `_`, `.` inside.
fn label_value_error(v: &str) -> Option<&'static str> {
    if v.len() > 63 {
        return Some("longer than 63 characters");
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !v.chars().all(ok_char) {
        return Some("only letters, digits, '-', '_' and '.' may appear in a label value");
    }
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends(v.chars().next()) || !ends(v.chars().last()) {
        return Some("a label value starts and ends with a letter or digit");
    }
    None
}

fn label_key_error(k: &str) -> Option<String> {
    let (prefix, name) = k.rsplit_once('/').map_or((None, k), |(p, n)| (Some(p), n));
    if name.is_empty() {
        return Some(format!("label key {k:?} has no name"));
    }
    if let Some(why) = label_value_error(name) {
        return Some(format!("label key {k:?}: {why}"));
    }
    if prefix.is_some_and(|p| p.is_empty() || p.len() > 253) {
        return Some(format!("label key {k:?}: bad prefix"));
    }
    None
}

fn hostname_error(h: &str) -> Option<&'static str> {
    if h.len() > 253 {
        return Some("longer than 253 characters");
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*');
    if !h.chars().all(ok) {
        return Some("a host name has only letters, digits, '-', '.' and '*'");
    }
    None
}

/// A CIDR, or one address as a /32 or /128.
fn cidr(v: &str) -> Result<String, String> {
    if let Ok(net) = v.parse::<ipnet::IpNet>() {
        return Ok(net.trunc().to_string());
    }
    match v.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(ipnet::IpNet::from(ip).to_string()),
        Err(_) => Err(format!("{v:?} is not an IP address or CIDR")),
    }
}

fn row_error(cfg: &ImportConfig, cell: &Cell, column: &str, what: String) -> RowError {
    RowError {
        file: cfg.file.clone(),
        line: cell.line,
        column: cell.column,
        what: format!("column {column:?}: {what}"),
    }
}

/// Checks the arguments against the first row and every cell of every row;
/// the first error is returned and nothing is planned.
pub fn plan(cfg: &ImportConfig, rows: &[Row]) -> Result<Vec<Desired>, RowError> {
    let arg_error = |what: String| RowError {
        file: cfg.file.clone(),
        line: 1,
        column: 1,
        what,
    };
    if cfg.map.is_empty() {
        return Err(arg_error("no --map column=label given".into()));
    }
    if let Some(why) = label_value_error(&cfg.source) {
        return Err(arg_error(format!("--source {:?}: {why}", cfg.source)));
    }
    for (_, key) in &cfg.map {
        if let Some(why) = label_key_error(key) {
            return Err(arg_error(format!("--map: {why}")));
        }
    }
    // (kind, labels) → (addresses, rows)
    type Group = (BTreeSet<String>, BTreeSet<usize>);
    let mut groups: BTreeMap<(bool, Labels), Group> = BTreeMap::new();
    for row in rows {
        let get = |c: &str| row.cells.get(c).filter(|c| !c.value.trim().is_empty());
        let missing = |c: &str| RowError {
            file: cfg.file.clone(),
            line: row.line,
            column: 1,
            what: format!("column {c:?} is missing or empty"),
        };
        let mut labels = Labels::new();
        for (column, key) in &cfg.map {
            let cell = get(column).ok_or_else(|| missing(column))?;
            let v = cell.value.trim();
            if let Some(why) = label_value_error(v) {
                return Err(row_error(cfg, cell, column, format!("{v:?}: {why}")));
            }
            labels.insert(key.clone(), v.to_string());
        }
        let (addr, host) = (get(&cfg.cidr_column), get(&cfg.hostname_column));
        if addr.is_none() && host.is_none() {
            return Err(RowError {
                file: cfg.file.clone(),
                line: row.line,
                column: 1,
                what: format!(
                    "neither column {:?} nor {:?} holds a value: nothing to label",
                    cfg.cidr_column, cfg.hostname_column
                ),
            });
        }
        if let Some(cell) = addr {
            let c = cidr(cell.value.trim())
                .map_err(|why| row_error(cfg, cell, &cfg.cidr_column, why))?;
            let g = groups.entry((false, labels.clone())).or_default();
            g.0.insert(c);
            g.1.insert(row.line);
        }
        if let Some(cell) = host {
            let h = cell.value.trim().to_ascii_lowercase();
            if let Some(why) = hostname_error(&h) {
                return Err(row_error(
                    cfg,
                    cell,
                    &cfg.hostname_column,
                    format!("{h:?}: {why}"),
                ));
            }
            let g = groups.entry((true, labels)).or_default();
            g.0.insert(h);
            g.1.insert(row.line);
        }
    }
    let mut rules = Vec::new();
    for ((hostnames, labels), (addresses, lines)) in groups {
        let addresses: Vec<String> = addresses.into_iter().collect();
        for chunk in addresses.chunks(ADDRESSES_PER_RULE) {
            let rows: Vec<String> = lines.iter().map(usize::to_string).collect();
            let mut rows = rows.join(",");
            if rows.len() > 200 {
                rows = format!(
                    "{} rows from line {}",
                    lines.len(),
                    lines.first().unwrap_or(&0)
                );
            } else {
                rows = format!("lines {rows}");
            }
            let match_ = if hostnames {
                EndpointMatch {
                    hostnames: Some(chunk.to_vec()),
                    ..Default::default()
                }
            } else {
                EndpointMatch {
                    cidrs: Some(chunk.to_vec()),
                    ..Default::default()
                }
            };
            rules.push(MappingRule {
                name: Some(format!("cmdb {} {rows}", cfg.source)),
                match_,
                labels: labels.clone(),
                copy_labels: Vec::new(),
            });
        }
    }
    let shards: Vec<&[MappingRule]> = rules.chunks(RULES_PER_MAPPING).collect();
    let many = shards.len() > 1;
    Ok(shards
        .into_iter()
        .enumerate()
        .map(|(i, rules)| Desired {
            name: if many {
                format!("cmdb-{}-{}", cfg.source.to_ascii_lowercase(), i + 1)
            } else {
                format!("cmdb-{}", cfg.source.to_ascii_lowercase())
            },
            spec: LabelMappingSpec {
                priority: cfg.priority,
                rules: rules.to_vec(),
            },
        })
        .collect())
}

/// What an import does to one mapping.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Create(Desired),
    Update {
        desired: Desired,
        before: LabelMappingSpec,
    },
    Unchanged(String),
    Delete(String),
}

/// Desired mappings against the ones of this source in the cluster.
pub fn diff(desired: Vec<Desired>, existing: &BTreeMap<String, LabelMappingSpec>) -> Vec<Change> {
    let mut out = Vec::new();
    let names: BTreeSet<String> = desired.iter().map(|d| d.name.clone()).collect();
    for d in desired {
        match existing.get(&d.name) {
            None => out.push(Change::Create(d)),
            Some(before) if *before == d.spec => out.push(Change::Unchanged(d.name)),
            Some(before) => out.push(Change::Update {
                before: before.clone(),
                desired: d,
            }),
        }
    }
    for name in existing.keys().filter(|n| !names.contains(*n)) {
        out.push(Change::Delete(name.clone()));
    }
    out
}

fn rule_line(r: &MappingRule) -> String {
    let labels: Vec<String> = r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let (kind, list) = match (&r.match_.cidrs, &r.match_.hostnames) {
        (Some(c), _) => ("cidrs", c.join(",")),
        (_, Some(h)) => ("hostnames", h.join(",")),
        _ => ("?", String::new()),
    };
    format!("{kind} {list} -> {}", labels.join(","))
}

/// The diff a person reads (`--dry-run`, and after an import).
pub fn render(changes: &[Change]) -> String {
    let mut out = String::new();
    for c in changes {
        match c {
            Change::Create(d) => {
                out.push_str(&format!("create labelmapping/{}\n", d.name));
                for r in &d.spec.rules {
                    out.push_str(&format!("  + {}\n", rule_line(r)));
                }
            }
            Change::Update { desired, before } => {
                out.push_str(&format!("update labelmapping/{}\n", desired.name));
                let old: BTreeSet<String> = before.rules.iter().map(rule_line).collect();
                let new: BTreeSet<String> = desired.spec.rules.iter().map(rule_line).collect();
                for l in old.difference(&new) {
                    out.push_str(&format!("  - {l}\n"));
                }
                for l in new.difference(&old) {
                    out.push_str(&format!("  + {l}\n"));
                }
                if before.priority != desired.spec.priority {
                    out.push_str(&format!(
                        "  ~ priority {} -> {}\n",
                        before.priority, desired.spec.priority
                    ));
                }
            }
            Change::Unchanged(n) => out.push_str(&format!("unchanged labelmapping/{n}\n")),
            Change::Delete(n) => out.push_str(&format!("delete labelmapping/{n}\n")),
        }
    }
    out
}
