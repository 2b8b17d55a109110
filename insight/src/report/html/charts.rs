//! SVG charts, drawn at a fixed viewBox and scaled by the browser.

use std::fmt::Write;

use super::{esc, ALLOW, EXPOSED, EXPOSED_RISKY, SELECTIVE, VISIBILITY};
use crate::coverage::{DayCoverage, ModeCounts};
use crate::exposure::Exposure;
use crate::report::Report;
use crate::talkers::Talker;

fn legend(o: &mut String, items: &[(&str, &str)]) {
    o.push_str("<div class=\"legend\">");
    for (color, name) in items {
        let _ = write!(
            o,
            "<span><i style=\"background:{color}\"></i>{}</span>",
            esc(name)
        );
    }
    o.push_str("</div>");
}

fn stacked(o: &mut String, y: f64, label: &str, m: &ModeCounts, width: f64) {
    let _ = write!(
        o,
        "<text x=\"0\" y=\"{}\" font-size=\"13\">{}</text>",
        y + 15.0,
        esc(label)
    );
    let mut x = 120.0;
    let total = m.total.max(1) as f64;
    for (count, color, name) in [
        (m.full, ALLOW, "full"),
        (m.selective, SELECTIVE, "selective"),
        (m.visibility, VISIBILITY, "visibility"),
    ] {
        let w = width * count as f64 / total;
        if w > 0.0 {
            let _ = write!(
                o,
                "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"22\" fill=\"{color}\"><title>{name}: {count}</title></rect>"
            );
            if w > 28.0 {
                let _ = write!(
                    o,
                    "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\" fill=\"#fff\">{count}</text>",
                    x + 4.0,
                    y + 15.0
                );
            }
        }
        x += w;
    }
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}% full</text>",
        120.0 + width + 6.0,
        y + 15.0,
        m.percent_full
    );
}

/// Endpoints and applications by mode, as two stacked bars.
pub fn modes(o: &mut String, r: &Report) {
    o.push_str("<svg viewBox=\"0 0 560 80\" width=\"100%\" role=\"img\" aria-label=\"modes\">");
    stacked(o, 8.0, "endpoints", &r.coverage.endpoints, 340.0);
    let apps = format!("applications ({})", r.coverage.group_key);
    stacked(o, 44.0, &apps, &r.coverage.applications, 340.0);
    o.push_str("</svg>");
    legend(
        o,
        &[
            (ALLOW, "full"),
            (SELECTIVE, "selective"),
            (VISIBILITY, "visibility"),
        ],
    );
}

/// Endpoints seen per mode per day, as stacked columns.
pub fn trend(o: &mut String, days: &[DayCoverage]) {
    if days.is_empty() {
        o.push_str("<p class=\"muted\">No flows in the window.</p>");
        return;
    }
    let (w, h, left, bottom) = (560.0, 170.0, 36.0, 22.0);
    let max = days
        .iter()
        .map(|d| d.endpoints.total)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let step = (w - left) / days.len() as f64;
    let bar = (step * 0.8).max(1.0);
    let _ = write!(
        o,
        "<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"daily trend\">"
    );
    let _ = write!(
        o,
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{w}\" y2=\"{0}\" stroke=\"#999\"/><line x1=\"{left}\" y1=\"8\" x2=\"{w}\" y2=\"8\" stroke=\"#ddd\" stroke-dasharray=\"3 3\"/>\
         <text x=\"{1}\" y=\"12\" font-size=\"11\" text-anchor=\"end\">{max}</text><text x=\"{1}\" y=\"{0}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        h - bottom,
        left - 6.0
    );
    for (i, d) in days.iter().enumerate() {
        let x = left + i as f64 * step;
        let mut y = h - bottom;
        for (count, color) in [
            (d.endpoints.full, ALLOW),
            (d.endpoints.selective, SELECTIVE),
            (d.endpoints.visibility, VISIBILITY),
        ] {
            let bh = (h - bottom - 8.0) * count as f64 / max;
            y -= bh;
            if bh > 0.0 {
                let _ = write!(
                    o,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{}: {count}</title></rect>",
                    esc(&d.day)
                );
            }
        }
    }
    // First and last day under their bars; every day is in the bars' titles.
    let first = days.first().map(|d| d.day.as_str()).unwrap_or_default();
    let last = match days {
        [_, .., last] => last.day.as_str(),
        _ => "",
    };
    let under = |i: usize| (left + i as f64 * step + bar / 2.0).clamp(left + 32.0, w - 32.0);
    let _ = write!(
        o,
        "<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text><text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text></svg>",
        under(0),
        h - 6.0,
        esc(first),
        under(days.len() - 1),
        h - 6.0,
        esc(last)
    );
    legend(
        o,
        &[
            (ALLOW, "full"),
            (SELECTIVE, "selective"),
            (VISIBILITY, "visibility"),
        ],
    );
}

/// Per application: the share of possible pairs still reachable, over all
/// ports and over the risky ports.
pub fn exposure(o: &mut String, e: &Exposure) {
    let rows: Vec<_> = std::iter::once(&e.overall)
        .chain(e.applications.iter().take(14))
        .collect();
    let h = 24.0 * rows.len() as f64 + 10.0;
    let _ = write!(
        o,
        "<svg viewBox=\"0 0 560 {h}\" width=\"100%\" role=\"img\" aria-label=\"exposure\">"
    );
    for (i, g) in rows.iter().enumerate() {
        let y = 4.0 + 24.0 * i as f64;
        let weight = if i == 0 { " font-weight=\"700\"" } else { "" };
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{}\" font-size=\"12\"{weight}>{}</text>",
            y + 13.0,
            esc(&g.name)
        );
        for (j, (reach, color)) in [(&g.all_ports, EXPOSED), (&g.risky_ports, EXPOSED_RISKY)]
            .iter()
            .enumerate()
        {
            let share = if reach.possible == 0 {
                0.0
            } else {
                reach.reachable as f64 / reach.possible as f64
            };
            let yy = y + 9.0 * j as f64;
            let _ = write!(
                o,
                "<rect x=\"130\" y=\"{yy}\" width=\"260\" height=\"8\" fill=\"#e3e6ea\"/><rect x=\"130\" y=\"{yy}\" width=\"{:.1}\" height=\"8\" fill=\"{color}\"><title>{} of {} reachable</title></rect>",
                260.0 * share,
                reach.reachable,
                reach.possible
            );
        }
        let _ = write!(
            o,
            "<text x=\"398\" y=\"{}\" font-size=\"11\">{}% / {}% removed</text>",
            y + 13.0,
            g.all_ports.reduction_percent,
            g.risky_ports.reduction_percent
        );
    }
    o.push_str("</svg>");
    legend(
        o,
        &[
            (EXPOSED, "share of all ports still reachable"),
            (EXPOSED_RISKY, "share of risky ports still reachable"),
        ],
    );
    let _ = write!(
        o,
        "<p class=\"muted\">{} sources per destination; the shorter the bar, the more the policy removed (right: removed over all / risky ports).</p>",
        e.sources
    );
}

/// Flows sent and received by the top groups.
pub fn talkers(o: &mut String, talkers: &[Talker]) {
    if talkers.is_empty() {
        o.push_str("<p class=\"muted\">No flows in the window.</p>");
        return;
    }
    let max = talkers
        .iter()
        .map(|t| t.sent.flows + t.received.flows)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let h = 22.0 * talkers.len() as f64 + 6.0;
    let _ = write!(
        o,
        "<svg viewBox=\"0 0 560 {h}\" width=\"100%\" role=\"img\" aria-label=\"top talkers\">"
    );
    for (i, t) in talkers.iter().enumerate() {
        let y = 3.0 + 22.0 * i as f64;
        // A group without the key is `-` in JSON; a reader needs words.
        let name = t
            .group
            .iter()
            .map(|(k, v)| {
                if v == "-" {
                    format!("(no {k})")
                } else {
                    v.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        let sent = 300.0 * t.sent.flows as f64 / max;
        let recv = 300.0 * t.received.flows as f64 / max;
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}. {}</text><rect x=\"130\" y=\"{y}\" width=\"{sent:.1}\" height=\"16\" fill=\"#2f6db5\"><title>sent {}</title></rect><rect x=\"{:.1}\" y=\"{y}\" width=\"{recv:.1}\" height=\"16\" fill=\"#8fb3e0\"><title>received {}</title></rect><text x=\"{:.1}\" y=\"{}\" font-size=\"11\">{} flows · {} peers</text>",
            y + 12.0,
            t.rank,
            esc(&name),
            t.sent.flows,
            130.0 + sent,
            t.received.flows,
            136.0 + sent + recv,
            y + 12.0,
            t.sent.flows + t.received.flows,
            t.peers
        );
    }
    o.push_str("</svg>");
    legend(o, &[("#2f6db5", "sent"), ("#8fb3e0", "received")]);
}
