//! The report as one CSV table for spreadsheets: `section,name,metric,value`,
//! one row per number (the contract is in docs/reports.md).

use std::fmt::Write;

use super::Report;
use crate::coverage::ModeCounts;
use crate::exposure::Reach;

/// Quotes a field when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

struct Rows(String);

impl Rows {
    fn row(&mut self, section: &str, name: &str, metric: &str, value: impl std::fmt::Display) {
        let _ = writeln!(
            self.0,
            "{},{},{},{}",
            field(section),
            field(name),
            field(metric),
            field(&value.to_string())
        );
    }

    fn modes(&mut self, section: &str, name: &str, m: &ModeCounts) {
        self.row(section, name, "visibility", m.visibility);
        self.row(section, name, "selective", m.selective);
        self.row(section, name, "full", m.full);
        self.row(section, name, "total", m.total);
        self.row(section, name, "percentFull", m.percent_full);
    }

    fn reach(&mut self, section: &str, name: &str, prefix: &str, r: &Reach) {
        self.row(section, name, &format!("{prefix}Possible"), r.possible);
        self.row(section, name, &format!("{prefix}Reachable"), r.reachable);
        self.row(
            section,
            name,
            &format!("{prefix}ReachableIfFull"),
            r.reachable_if_full,
        );
        self.row(
            section,
            name,
            &format!("{prefix}ReductionPercent"),
            r.reduction_percent,
        );
    }
}

/// The CSV text, with a header row.
pub fn render(r: &Report) -> String {
    let mut out = Rows(String::from("section,name,metric,value\n"));
    out.row("window", "", "since", r.window.since);
    out.row("window", "", "until", r.window.until);
    out.row("totals", "", "records", r.totals.records);
    out.row("totals", "", "flows", r.totals.flows);
    out.row("totals", "", "bytes", r.totals.bytes);
    out.row("totals", "", "deniedFlows", r.totals.denied_flows);
    out.row("totals", "", "wouldDenyFlows", r.totals.would_deny_flows);
    out.modes("coverage.endpoints", "", &r.coverage.endpoints);
    out.modes("coverage.applications", "", &r.coverage.applications);
    for a in &r.coverage.by_application {
        out.row("coverage.application", &a.name, "endpoints", a.endpoints);
        out.row(
            "coverage.application",
            &a.name,
            "endpointsFull",
            a.endpoints_full,
        );
        out.row(
            "coverage.application",
            &a.name,
            "mode",
            super::html::mode_name(a.mode),
        );
    }
    for d in &r.coverage.daily {
        out.modes("coverage.daily", &d.day, &d.endpoints);
    }
    out.row("exposure", "", "sources", r.exposure.sources);
    for g in std::iter::once(&r.exposure.overall).chain(&r.exposure.applications) {
        let section = if std::ptr::eq(g, &r.exposure.overall) {
            "exposure.overall"
        } else {
            "exposure.application"
        };
        out.row(section, &g.name, "endpoints", g.endpoints);
        out.reach(section, &g.name, "allPorts", &g.all_ports);
        out.reach(section, &g.name, "riskyPorts", &g.risky_ports);
    }
    for p in &r.exposure.by_risky_port {
        out.reach("exposure.riskyPort", &p.port, "", &p.reach);
    }
    for t in &r.top_talkers {
        let name = t.group.values().cloned().collect::<Vec<_>>().join(",");
        out.row("topTalkers", &name, "rank", t.rank);
        out.row("topTalkers", &name, "sentFlows", t.sent.flows);
        out.row("topTalkers", &name, "receivedFlows", t.received.flows);
        out.row("topTalkers", &name, "sentBytes", t.sent.bytes);
        out.row("topTalkers", &name, "receivedBytes", t.received.bytes);
        out.row("topTalkers", &name, "peers", t.peers);
    }
    for d in &r.denials {
        out.row("denials", &d.application, "deniedFlows", d.denied_flows);
        out.row(
            "denials",
            &d.application,
            "wouldDenyFlows",
            d.would_deny_flows,
        );
    }
    for p in &r.unused.policies {
        out.row("unused.policy", p, "flows", 0);
    }
    for u in &r.unused.rules {
        out.row(
            "unused.rule",
            &format!("{}/{}", u.policy, u.rule),
            "flows",
            0,
        );
    }
    out.row("unlabeled", "", "total", r.unlabeled.total);
    out.row("unlabeled", "", "endpoints", r.unlabeled.endpoints);
    out.row("unlabeled", "", "addresses", r.unlabeled.addresses);
    out.0
}
