//! The report as one self-contained HTML page: inline CSS, inline SVG, no
//! scripts, no fonts or images fetched from anywhere.
//!
//! ```text
//!  header: window · KPI cards (% endpoints in full, exposure removed, risky
//!          ports removed, unlabeled, denied flows)
//!  charts.rs: modes (stacked bar) · daily trend · exposure by application
//!             · top talkers
//!  map.rs:    the traffic map (groups clustered by a label key)
//!  tables:    denials by application, unused policies and rules, unlabeled head
//! ```

mod charts;
mod map;

use std::fmt::Write;

use bulkhead_api::policy::EnforcementMode;

use super::Report;

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The wire name of a mode.
pub fn mode_name(m: EnforcementMode) -> &'static str {
    match m {
        EnforcementMode::Visibility => "visibility",
        EnforcementMode::Selective => "selective",
        EnforcementMode::Full => "full",
    }
}

pub(crate) const ALLOW: &str = "#3a8f5c";
pub(crate) const DENY: &str = "#c8322f";
pub(crate) const WOULD_DENY: &str = "#e69b22";
/// Exposure bars: not the verdict colors (a reachable port is not a denial).
pub(crate) const EXPOSED: &str = "#6b4fa0";
pub(crate) const EXPOSED_RISKY: &str = "#b07cc6";
pub(crate) const SELECTIVE: &str = "#5b8fd1";
pub(crate) const VISIBILITY: &str = "#b7bcc4";

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b9c0cc;font-size:13px}
main{padding:20px 32px;max-width:1400px}
.cards{display:flex;gap:14px;flex-wrap:wrap;margin-bottom:18px}
.card{background:#fff;border-radius:8px;padding:14px 18px;min-width:180px;box-shadow:0 1px 2px #0002}
.card .v{font-size:30px;font-weight:700}
.card .l{font-size:12px;color:#5a6272;text-transform:uppercase;letter-spacing:.04em}
section{background:#fff;border-radius:8px;padding:14px 18px;margin-bottom:18px;box-shadow:0 1px 2px #0002}
section h2{font-size:16px;margin:0 0 10px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:18px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e6ea}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
svg text{font-family:system-ui,sans-serif}
.muted{color:#5a6272;font-size:13px}
";

fn card(out: &mut String, value: &str, label: &str) {
    let _ = write!(
        out,
        "<div class=\"card\"><div class=\"v\">{}</div><div class=\"l\">{}</div></div>",
        esc(value),
        esc(label)
    );
}

/// The page.
pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">");
    let _ = write!(
        o,
        "<title>Bulkhead report {} – {}</title><style>{STYLE}</style></head><body>",
        esc(&r.window.since.to_string()),
        esc(&r.window.until.to_string())
    );
    let _ = write!(
        o,
        "<header><h1>Bulkhead segmentation report</h1><p>{} to {} · {} flows in {} records</p></header><main>",
        esc(&r.window.since.to_string()),
        esc(&r.window.until.to_string()),
        r.totals.flows,
        r.totals.records
    );
    o.push_str("<div class=\"cards\">");
    card(
        &mut o,
        &format!("{}%", r.coverage.endpoints.percent_full),
        "endpoints in full enforcement",
    );
    card(
        &mut o,
        &format!("{}%", r.coverage.applications.percent_full),
        "applications in full enforcement",
    );
    card(
        &mut o,
        &format!("{}%", r.exposure.overall.all_ports.reduction_percent),
        "exposure removed (all ports)",
    );
    card(
        &mut o,
        &format!("{}%", r.exposure.overall.risky_ports.reduction_percent),
        "exposure removed (risky ports)",
    );
    card(
        &mut o,
        &r.unlabeled.total.to_string(),
        "unlabeled in the queue",
    );
    card(&mut o, &r.totals.denied_flows.to_string(), "flows denied");
    card(
        &mut o,
        &r.totals.would_deny_flows.to_string(),
        "flows that full mode would deny",
    );
    o.push_str("</div>");

    o.push_str("<div class=\"grid\"><section><h2>Endpoints and applications by mode</h2>");
    charts::modes(&mut o, r);
    o.push_str("</section><section><h2>Daily trend: endpoints seen in each mode</h2>");
    charts::trend(&mut o, &r.coverage.daily);
    o.push_str("</section></div>");

    o.push_str("<div class=\"grid\"><section><h2>Exposure by application</h2>");
    charts::exposure(&mut o, &r.exposure);
    o.push_str("</section><section><h2>Top talkers</h2>");
    charts::talkers(&mut o, &r.top_talkers);
    o.push_str("</section></div>");

    let _ = write!(
        o,
        "<section><h2>Traffic map</h2><p class=\"muted\">Groups by {}, clustered by {}; edges are observed flows.</p>",
        esc(&r.traffic_map.keys.join(", ")),
        esc(&r.traffic_map.cluster_key)
    );
    map::render(&mut o, &r.traffic_map);
    o.push_str("</section>");

    tables(&mut o, r);
    o.push_str("</main></body></html>\n");
    o
}

fn tables(o: &mut String, r: &Report) {
    o.push_str(
        "<div class=\"grid\"><section><h2>Denied and would-be-denied flows by application</h2>",
    );
    if r.denials.is_empty() {
        o.push_str("<p class=\"muted\">None in the window.</p>");
    } else {
        o.push_str("<table><tr><th>application</th><th class=\"n\">denied</th><th class=\"n\">would deny</th></tr>");
        for d in &r.denials {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&d.application),
                d.denied_flows,
                d.would_deny_flows
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section><section><h2>Policies and rules that matched no flow</h2>");
    if r.unused.policies.is_empty() && r.unused.rules.is_empty() {
        o.push_str("<p class=\"muted\">Every policy and rule matched a flow.</p>");
    } else {
        o.push_str("<table><tr><th>policy</th><th>rule</th></tr>");
        for p in &r.unused.policies {
            let _ = write!(o, "<tr><td>{}</td><td>(every rule)</td></tr>", esc(p));
        }
        for u in &r.unused.rules {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&u.policy),
                esc(&u.rule)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section></div>");
    let _ = write!(
        o,
        "<section><h2>Unlabeled queue: {} ({} endpoints, {} addresses)</h2>",
        r.unlabeled.total, r.unlabeled.endpoints, r.unlabeled.addresses
    );
    o.push_str("<table><tr><th>name</th><th>kind</th><th class=\"n\">flows</th><th>peers</th><th>ports</th><th>last seen</th></tr>");
    for e in &r.unlabeled.top {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{:?}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.name),
            e.kind,
            e.flows,
            esc(&e.peers.iter().take(3).cloned().collect::<Vec<_>>().join(", ")),
            esc(&e.ports.iter().take(5).cloned().collect::<Vec<_>>().join(", ")),
            e.last_seen.map(|t| t.to_string()).unwrap_or_default()
        );
    }
    o.push_str("</table></section>");
}
