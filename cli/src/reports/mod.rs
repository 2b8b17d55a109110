//! `top-talkers`, `unlabeled` and `report`: thin over `bulkhead_insight`.
//!
//! ```text
//!  --flows FILE | --collector URL | service proxy ─► flows::source (GET /api/v1/flows)
//!                                                          │ records in [--since, --until)
//!  PATH... (cluster YAML) | the API server ─► compile ─► Output │
//!                                    └──────────┬──────────┘
//!                   insight::talkers · insight::unlabeled · insight::report
//!                                               ▼
//!                              table | json | csv | html (| LabelMapping YAML)
//! ```

pub mod args;
mod report_cmd;
mod talkers_cmd;
mod unlabeled_cmd;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use bulkhead_api::flow::FlowRecord;
use bulkhead_insight::query::params;
use bulkhead_insight::report::Window;

use crate::args::InputArgs;
use crate::flows::source::Source;
use args::{ClusterArgs, HistoryArgs};

pub use report_cmd::run as report;
pub use talkers_cmd::run as top_talkers;
pub use unlabeled_cmd::run as unlabeled;

/// Every record of the window, page by page, up to `--max-records`.
pub fn history(h: &HistoryArgs, default_since: &str) -> anyhow::Result<(Vec<FlowRecord>, Window)> {
    let now = jiff::Timestamp::now();
    let mut p = BTreeMap::new();
    p.insert(
        "since".to_string(),
        h.since.clone().unwrap_or_else(|| default_since.to_string()),
    );
    if let Some(u) = &h.until {
        p.insert("until".to_string(), u.clone());
    }
    // Resolve relative times once, so the file, the collector and the
    // report's header agree on the window (and every page asks the same).
    let q = params::parse(&p, &[], now)?;
    let since = q.filter.since.unwrap_or(now);
    let until = q.filter.until.unwrap_or(now);
    p.insert("since".into(), since.to_string());
    p.insert("until".into(), until.to_string());
    let source = Source::new(h.flows.as_ref(), h.collector.as_deref(), &h.service)?;
    let answer = source.query_all(&p, h.max_records)?;
    for l in &answer.lost {
        eprintln!("warning: {} records lost on node {}", l.records, l.node);
    }
    Ok((answer.records, Window { since, until }))
}

/// Loads and compiles the manifests, printing the loader's warnings; with
/// no paths, today's cluster from the API server (KUBECONFIG), pods included.
pub fn cluster(paths: &[PathBuf], c: &ClusterArgs) -> anyhow::Result<crate::Compiled> {
    let input = InputArgs {
        paths: paths.to_vec(),
        network_policies: c.network_policies,
        default_mode: c.default_mode,
        failsafe_ports: c.failsafe_ports.clone(),
    };
    let compiled = if paths.is_empty() {
        let snapshot = crate::live::snapshot_with_pods()
            .context("reading today's cluster from the API server (or give the manifests' PATH)")?;
        let inventory = crate::load::Inventory {
            snapshot,
            origins: Default::default(),
            implied_nodes: Default::default(),
            // The ones the operator's status says it enforces count.
            exceptions: crate::live::exceptions()?,
            warnings: Vec::new(),
        };
        crate::compile_inventory(inventory, &input, None, false)?
    } else {
        crate::load_and_compile(&input, None, false)?
    };
    for w in &compiled.inventory.warnings {
        eprintln!("warning: {w}");
    }
    Ok(compiled)
}

/// Writes `text` to the file or to standard output.
pub fn emit(text: &str, out: Option<&std::path::Path>) -> anyhow::Result<()> {
    if let Some(path) = out {
        return std::fs::write(path, text).with_context(|| format!("writing {}", path.display()));
    }
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
