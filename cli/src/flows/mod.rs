//! `kubectl bulkhead flows`: flow history from the collector or an export.
//!
//! ```text
//!  --since/--from/... ─► query parameters ─┬─► collector GET /api/v1/flows (direct or via
//!                                          │   the API server's service proxy)
//!                                          └─► --flows FILE: the same parameters parsed by
//!                                              bulkhead_insight (as the collector does), the
//!                                              same FlowFilter applied to each record
//!                                                        │
//!                                            table | json | jsonl (and "records lost on node N")
//! ```

mod render;
pub mod source;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;

use anyhow::Context;
use bulkhead_api::flow::FlowRecord;
use serde::{Deserialize, Serialize};

use crate::args::{FlowQueryArgs, FlowsArgs, FlowsCommand, FlowsFormat};

/// Records lost on one node, as the collector reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub node: String,
    pub records: u64,
}

/// What a query returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub records: Vec<FlowRecord>,
    #[serde(default)]
    pub lost: Vec<Lost>,
    /// The collector's page was full: the next page starts here.
    #[serde(
        default,
        rename = "nextOffset",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_offset: Option<usize>,
}

/// The query as the collector's parameters.
pub fn parameters(q: &FlowQueryArgs, export: bool) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    p.insert("since".to_string(), q.since.clone());
    let optional = [
        ("until", q.until.clone()),
        ("from", q.from.clone()),
        ("to", q.to.clone()),
        ("verdict", q.verdict.clone()),
        ("port", q.port.map(|v| v.to_string())),
        ("protocol", q.protocol.clone()),
        ("node", q.node.clone()),
        (
            "limit",
            q.limit
                .or(export.then_some(bulkhead_insight::query::params::MAX_LIMIT))
                .map(|v| v.to_string()),
        ),
    ];
    for (k, v) in optional {
        if let Some(v) = v {
            p.insert(k.to_string(), v);
        }
    }
    p
}

pub fn run(args: &FlowsArgs) -> anyhow::Result<()> {
    let export = matches!(args.export, Some(FlowsCommand::Export { .. }));
    let mut params = parameters(&args.query, export);
    // `--to service:ns/name`: the flows sent to that Service, whichever
    // backend answered: by the name records carry, and for records without
    // one (standalone agents, older records) by its ClusterIP now.
    if let Some(spec) = params
        .get("to")
        .and_then(|t| t.strip_prefix("service:"))
        .map(str::to_owned)
    {
        params.remove("to");
        let name = bulkhead_insight::query::ServiceName::parse(&spec)
            .map_err(|e| anyhow::anyhow!("--to service:{spec}: {e}"))?;
        params.insert("serviceName".into(), name.to_string());
        match source::service_address(&spec) {
            Ok(vip) => {
                params.insert("service".into(), vip);
            }
            Err(e) => eprintln!(
                "note: {e:#}; matching records that name {name} only (not unnamed records by address)"
            ),
        }
    }
    let source = source::Source::from_args(&args.query)?;
    let answer = source.query(&params)?;
    if let Some(FlowsCommand::Export { out: Some(path) }) = &args.export {
        let mut text = String::new();
        render::jsonl(&answer, &mut text)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "{} records written to {}",
            answer.records.len(),
            path.display()
        );
        return Ok(());
    }
    let format = if export {
        FlowsFormat::Jsonl
    } else {
        args.output
    };
    print(format, &answer)?;
    if !args.follow {
        return Ok(());
    }
    // Follow: ask again for what started since the newest window printed,
    // and print only records not printed yet.
    let mut seen: HashSet<String> = answer.records.iter().map(key).collect();
    let mut since = newest(&answer).unwrap_or_else(jiff::Timestamp::now);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let mut p = params.clone();
        p.insert("since".into(), since.to_string());
        p.remove("until");
        let next = source.query(&p)?;
        let fresh = Answer {
            records: next
                .records
                .into_iter()
                .filter(|r| seen.insert(key(r)))
                .collect(),
            lost: Vec::new(),
            next_offset: None,
        };
        if let Some(t) = newest(&fresh) {
            since = t;
        }
        if !fresh.records.is_empty() {
            print(format, &fresh)?;
        }
    }
}

fn newest(a: &Answer) -> Option<jiff::Timestamp> {
    a.records.iter().map(|r| r.start).max()
}

fn key(r: &FlowRecord) -> String {
    format!("{}|{:?}|{}", r.start, r.edge(), r.node)
}

fn print(format: FlowsFormat, answer: &Answer) -> anyhow::Result<()> {
    let mut text = String::new();
    match format {
        FlowsFormat::Table => render::table(answer, &mut text),
        FlowsFormat::Json => {
            text = serde_json::to_string_pretty(answer)?;
            text.push('\n');
        }
        FlowsFormat::Jsonl => render::jsonl(answer, &mut text)?,
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
