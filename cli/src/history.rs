//! Where `recommend` and `what-if` read history and today's cluster from.
//!
//! ```text
//!  --flows FILE (offline) │ --collector URL │ the collector's Service via the API server
//!        └──────────── flows::source::Source, GET /api/v1/flows?since=&until=&limit=&offset= (every page) ─► records
//!  --cluster DIR (offline: manifests, as simulate reads them) │ the API server (live objects)
//!        └──────────── Snapshot (namespaces, nodes, external nodes, mappings, policies)
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use bulkhead_api::flow::FlowRecord;
use bulkhead_insight::query::params;
use bulkhead_policy::snapshot::Snapshot;
use clap::Args;
use jiff::Timestamp;

use crate::flows::source::Source;

/// The window of history, and where history and today's cluster come from.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// From this time: RFC 3339, or a duration back from now (90d, 12h).
    #[arg(long, default_value = "90d")]
    pub since: String,
    /// Until this time (exclusive), in the same forms [default: now]. With
    /// RFC 3339 times on both ends, offline runs are reproducible.
    #[arg(long)]
    pub until: Option<String>,
    /// Read an export (flow/v1 JSON lines, `flows export`) instead of a collector.
    #[arg(long, value_name = "FILE", conflicts_with = "collector")]
    pub flows: Option<PathBuf>,
    /// The collector's URL, instead of the API server's service proxy.
    #[arg(long, value_name = "URL", env = "BULKHEAD_COLLECTOR")]
    pub collector: Option<String>,
    /// The collector's Service, as namespace/name:port, for the service proxy.
    #[arg(long, default_value = "bulkhead-system/bulkhead-collector:9470")]
    pub service: String,
    /// Today's cluster from manifests (files or directories, as `simulate`
    /// reads them) instead of the API server.
    #[arg(long, value_name = "DIR")]
    pub cluster: Option<PathBuf>,
    /// Read at most this many records (pages of 100,000): the bound on the
    /// memory history takes (about 1 KiB a record).
    #[arg(long, default_value_t = crate::reports::args::DEFAULT_MAX_RECORDS, value_name = "N")]
    pub max_records: usize,
}

/// The window, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: Timestamp,
    pub until: Timestamp,
}

impl HistoryArgs {
    /// `--since` and `--until` as times.
    pub fn window(&self, now: Timestamp) -> anyhow::Result<Window> {
        let since = params::time("since", &self.since, now).map_err(flag_error)?;
        let until = match &self.until {
            Some(u) => params::time("until", u, now).map_err(flag_error)?,
            None => now,
        };
        if since >= until {
            anyhow::bail!("--since {since} is not before --until {until}");
        }
        Ok(Window { since, until })
    }

    /// Every record of the window, page by page, up to `--max-records`.
    pub fn records(&self, window: Window) -> anyhow::Result<Vec<FlowRecord>> {
        let source = Source::new(
            self.flows.as_ref(),
            self.collector.as_deref(),
            &self.service,
        )?;
        let mut p = BTreeMap::new();
        p.insert("since".to_string(), window.since.to_string());
        p.insert("until".to_string(), window.until.to_string());
        let answer = source.query_all(&p, self.max_records)?;
        for lost in &answer.lost {
            eprintln!(
                "warning: {} records lost on node {} in the window",
                lost.records, lost.node
            );
        }
        Ok(answer.records)
    }

    /// Today's cluster: `--cluster` manifests, else the API server's objects.
    pub fn cluster(&self) -> anyhow::Result<Snapshot> {
        match &self.cluster {
            Some(dir) => {
                let inventory = crate::load::load(std::slice::from_ref(dir))?;
                for w in &inventory.warnings {
                    eprintln!("warning: {w}");
                }
                Ok(inventory.snapshot)
            }
            None => crate::live::snapshot()
                .context("reading today's cluster from the API server (or pass --cluster DIR)"),
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn flag_error(e: params::ParamError) -> anyhow::Error {
    anyhow::anyhow!("--{}: {}", e.param, e.message)
}
