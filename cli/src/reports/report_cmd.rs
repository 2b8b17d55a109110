//! `kubectl bulkhead report`.

use anyhow::bail;
use bulkhead_api::policy::Protocol;
use bulkhead_insight::report::{self, Report, ReportOptions};
use bulkhead_insight::unlabeled::unlabeled_endpoints;

use super::args::{ReportArgs, ReportFormat};
use crate::render::Table;

fn risky(list: &[String]) -> anyhow::Result<Vec<(Protocol, u16)>> {
    if list.is_empty() {
        return Ok(ReportOptions::default().risky_ports);
    }
    list.iter()
        .map(|s| {
            let p = crate::ports::parse_port_protocol(s)
                .map_err(|e| anyhow::anyhow!("--risky-ports {s:?}: {e}"))?;
            if !p.protocol.has_ports() {
                bail!("--risky-ports {s:?}: exposure counts TCP, UDP and SCTP ports");
            }
            Ok((p.protocol, p.port))
        })
        .collect()
}

pub fn run(a: &ReportArgs) -> anyhow::Result<()> {
    let opts = ReportOptions {
        app_key: a.app_key.clone(),
        risky_ports: risky(&a.risky_ports)?,
        map_keys: a.map_by.clone(),
        cluster_key: a.cluster_by.clone(),
        ..ReportOptions::default()
    };
    let compiled = super::cluster(&a.paths, &a.cluster)?;
    let (records, window) = super::history(&a.history, "30d")?;
    let r = report::build(
        &records,
        &compiled.output,
        &unlabeled_endpoints(&compiled.output),
        window,
        &opts,
    );
    let text = match a.output {
        ReportFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
        ReportFormat::Csv => report::csv::render(&r),
        ReportFormat::Html => report::html::render(&r),
        ReportFormat::Table => summary(&r),
    };
    super::emit(&text, a.out.as_deref())?;
    if let Some(path) = &a.out {
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// The headline numbers, for a terminal.
fn summary(r: &Report) -> String {
    let mut s = format!(
        "window          {} to {}\nflows           {} ({} denied, {} would be denied in full mode)\n",
        r.window.since, r.window.until, r.totals.flows, r.totals.denied_flows, r.totals.would_deny_flows
    );
    let c = &r.coverage;
    s.push_str(&format!(
        "endpoints       {} full, {} selective, {} visibility: {}% in full enforcement\n",
        c.endpoints.full, c.endpoints.selective, c.endpoints.visibility, c.endpoints.percent_full
    ));
    s.push_str(&format!(
        "applications    {} full, {} selective, {} visibility (by {}): {}% in full enforcement\n",
        c.applications.full,
        c.applications.selective,
        c.applications.visibility,
        c.group_key,
        c.applications.percent_full
    ));
    let e = &r.exposure.overall;
    s.push_str(&format!(
        "exposure        {} of {} pairs reachable: {}% removed; risky ports {} of {}: {}% removed\n",
        e.all_ports.reachable, e.all_ports.possible, e.all_ports.reduction_percent,
        e.risky_ports.reachable, e.risky_ports.possible, e.risky_ports.reduction_percent
    ));
    s.push_str(&format!(
        "unlabeled       {} ({} endpoints, {} addresses)\nunused          {} policies, {} rules matched no flow\n\n",
        r.unlabeled.total, r.unlabeled.endpoints, r.unlabeled.addresses, r.unused.policies.len(), r.unused.rules.len()
    ));
    let mut t = Table::new(&[
        "APPLICATION",
        "ENDPOINTS",
        "REACHABLE",
        "POSSIBLE",
        "REMOVED",
        "RISKY REMOVED",
    ]);
    for g in &r.exposure.applications {
        t.row(vec![
            g.name.clone(),
            g.endpoints.to_string(),
            g.all_ports.reachable.to_string(),
            g.all_ports.possible.to_string(),
            format!("{}%", g.all_ports.reduction_percent),
            format!("{}%", g.risky_ports.reduction_percent),
        ]);
    }
    s.push_str(&t.render());
    s
}
