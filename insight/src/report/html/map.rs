//! The traffic map as SVG: clusters (one per value of the cluster key) on a
//! large circle, each cluster's groups on a ring of its own, edges as curves
//! colored by verdict.
//!
//! Legibility at a few hundred groups comes from the clusters: up to
//! [`DETAILED`] groups every edge is drawn group to group; beyond that,
//! edges inside a cluster stay group to group and edges between clusters
//! are bundled into one curve per cluster pair and verdict, as wide as the
//! log of its flows. Every element carries a `<title>` with its numbers.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::fmt::Write;

use super::{esc, ALLOW, DENY, WOULD_DENY};
use crate::report::map::{MapEdge, TrafficMap};

/// Above this many groups, edges between clusters are bundled.
pub const DETAILED: usize = 60;

/// The canvas is at least this wide, and grows with the clusters.
const MIN_W: f64 = 1200.0;
/// Room outside a ring for radiating labels and the cluster title.
const MARGIN: f64 = 100.0;
const SPACING: f64 = 14.0;

fn color(verdict: &str) -> &'static str {
    match verdict {
        "deny" => DENY,
        "would-deny" => WOULD_DENY,
        _ => ALLOW,
    }
}

struct Placed {
    x: f64,
    y: f64,
    angle: f64,
    cluster: usize,
}

struct Cluster {
    name: String,
    x: f64,
    y: f64,
    r: f64,
    members: Vec<usize>,
}

fn layout(m: &TrafficMap) -> (Vec<Cluster>, Vec<Placed>, (f64, f64)) {
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, n) in m.nodes.iter().enumerate() {
        by.entry(n.cluster.as_str()).or_default().push(i);
    }
    let mut clusters: Vec<Cluster> = by
        .into_iter()
        .map(|(name, mut members)| {
            members.sort_by(|a, b| m.nodes[*b].flows.cmp(&m.nodes[*a].flows).then(a.cmp(b)));
            let r = (members.len() as f64 * SPACING / (2.0 * PI)).max(26.0);
            Cluster {
                name: name.to_string(),
                x: 0.0,
                y: 0.0,
                r,
                members,
            }
        })
        .collect();
    let biggest = clusters.iter().map(|c| c.r).fold(0.0, f64::max);
    let n = clusters.len();
    // Neighbouring clusters on the big circle must not overlap: the chord
    // between their centres, 2·ring·sin(π/n), holds two rings and margins.
    let ring = if n < 2 {
        0.0
    } else {
        (biggest + MARGIN) / (PI / n as f64).sin().min(1.0)
    };
    let h = 2.0 * (ring + biggest + MARGIN);
    let w = h.max(MIN_W);
    let (cx, cy) = (w / 2.0, h / 2.0);
    for (i, c) in clusters.iter_mut().enumerate() {
        let a = 2.0 * PI * i as f64 / n as f64 - PI / 2.0;
        let r = if n == 1 { 0.0 } else { ring };
        c.x = cx + r * a.cos();
        c.y = cy + r * a.sin();
    }
    let mut placed: Vec<Placed> = (0..m.nodes.len())
        .map(|_| Placed {
            x: 0.0,
            y: 0.0,
            angle: 0.0,
            cluster: 0,
        })
        .collect();
    for (ci, c) in clusters.iter().enumerate() {
        let k = c.members.len().max(1) as f64;
        for (j, &i) in c.members.iter().enumerate() {
            let a = 2.0 * PI * j as f64 / k - PI / 2.0;
            placed[i] = Placed {
                x: c.x + c.r * a.cos(),
                y: c.y + c.r * a.sin(),
                angle: a,
                cluster: ci,
            };
        }
    }
    (clusters, placed, (w, h))
}

/// Up to this many groups in a cluster, labels are horizontal beside their
/// node; beyond it they radiate outwards so neighbours do not overlap.
const HORIZONTAL: usize = 12;

fn label(o: &mut String, p: &Placed, text: &str, members: usize, detailed: bool) {
    let (cos, sin) = (p.angle.cos(), p.angle.sin());
    if members <= HORIZONTAL {
        let anchor = if cos > 0.3 {
            "start"
        } else if cos < -0.3 {
            "end"
        } else {
            "middle"
        };
        let dy = if anchor != "middle" {
            4.0
        } else if sin > 0.0 {
            20.0
        } else {
            -12.0
        };
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"{anchor}\" fill=\"#333\">{}</text>",
            p.x + 10.0 * cos,
            p.y + dy,
            esc(text)
        );
        return;
    }
    let (flip, anchor, dx) = if cos < 0.0 {
        (180.0, "end", -10)
    } else {
        (0.0, "start", 10)
    };
    let font = if detailed { 11 } else { 9 };
    let _ = write!(
        o,
        "<text transform=\"translate({:.1},{:.1}) rotate({:.1})\" x=\"{dx}\" dy=\"3\" font-size=\"{font}\" text-anchor=\"{anchor}\" fill=\"#333\">{}</text>",
        p.x,
        p.y,
        p.angle.to_degrees() + flip,
        esc(text)
    );
}

fn width(flows: u64) -> f64 {
    (1.0 + (flows.max(1) as f64).log10()).min(8.0)
}

fn curve(
    o: &mut String,
    (x1, y1): (f64, f64),
    (x2, y2): (f64, f64),
    (cx, cy): (f64, f64),
    verdict: &str,
    w: f64,
    title: &str,
) {
    let c = color(verdict);
    let marker = match verdict {
        "deny" => "d",
        "would-deny" => "w",
        _ => "a",
    };
    let _ = write!(
        o,
        "<path d=\"M{x1:.1},{y1:.1} Q{cx:.1},{cy:.1} {x2:.1},{y2:.1}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"{w:.1}\" stroke-opacity=\"0.7\" marker-end=\"url(#m{marker})\"><title>{}</title></path>",
        esc(title)
    );
}

fn edge_title(e: &MapEdge) -> String {
    format!(
        "{} → {}: {} allowed, {} denied, {} would deny",
        e.source, e.destination, e.allowed_flows, e.denied_flows, e.would_deny_flows
    )
}

/// Draws the map, with its legend.
pub fn render(o: &mut String, m: &TrafficMap) {
    if m.nodes.is_empty() {
        o.push_str("<p class=\"muted\">No flows in the window.</p>");
        return;
    }
    let (clusters, placed, (w, h)) = layout(m);
    let index: BTreeMap<&str, usize> = m
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let _ = write!(o, "<svg viewBox=\"0 0 {w:.0} {h:.0}\" width=\"100%\" role=\"img\" aria-label=\"traffic map\"><defs>");
    for (id, c) in [("a", ALLOW), ("d", DENY), ("w", WOULD_DENY)] {
        let _ = write!(
            o,
            "<marker id=\"m{id}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerUnits=\"userSpaceOnUse\" markerWidth=\"9\" markerHeight=\"9\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"{c}\"/></marker>"
        );
    }
    o.push_str("</defs>");
    for c in &clusters {
        let _ = write!(
            o,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{:.1}\" fill=\"#eef1f5\" stroke=\"#c9d0da\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"15\" font-weight=\"700\" text-anchor=\"middle\" fill=\"#1d2330\">{} ({})</text>",
            c.x, c.y, c.r + 8.0, c.x, c.y - c.r - if c.members.len() > HORIZONTAL { 82.0 } else { 42.0 }, esc(&c.name), c.members.len()
        );
    }
    let detailed = m.nodes.len() <= DETAILED;
    let mut bundles: BTreeMap<(usize, usize, &str), (u64, usize)> = BTreeMap::new();
    for e in &m.edges {
        let (Some(&s), Some(&d)) = (
            index.get(e.source.as_str()),
            index.get(e.destination.as_str()),
        ) else {
            continue;
        };
        let flows = e.allowed_flows + e.denied_flows + e.would_deny_flows;
        let (ps, pd) = (&placed[s], &placed[d]);
        if detailed || ps.cluster == pd.cluster {
            let ctl = if ps.cluster == pd.cluster {
                let c = &clusters[ps.cluster];
                (c.x, c.y)
            } else {
                (w / 2.0, h / 2.0)
            };
            curve(
                o,
                (ps.x, ps.y),
                (pd.x, pd.y),
                ctl,
                &e.verdict,
                width(flows),
                &edge_title(e),
            );
        } else {
            let b = bundles
                .entry((ps.cluster, pd.cluster, e.verdict.as_str()))
                .or_default();
            b.0 += flows;
            b.1 += 1;
        }
    }
    for ((s, d, verdict), (flows, edges)) in &bundles {
        let (cs, cd) = (&clusters[*s], &clusters[*d]);
        let title = format!(
            "{} → {}: {edges} edges, {flows} flows ({verdict})",
            cs.name, cd.name
        );
        // Offset by verdict so allow, would-deny and deny bundles of one pair stay apart.
        let shift = match *verdict {
            "deny" => 30.0,
            "would-deny" => 15.0,
            _ => 0.0,
        };
        curve(
            o,
            (cs.x, cs.y + shift),
            (cd.x, cd.y + shift),
            (w / 2.0, h / 2.0 + shift),
            verdict,
            width(*flows) * 1.5,
            &title,
        );
    }
    let labels = m.nodes.len() <= 320;
    for (i, n) in m.nodes.iter().enumerate() {
        let p = &placed[i];
        let r = (2.5 + (n.flows.max(1) as f64).log10()).min(8.0);
        let _ = write!(
            o,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r:.1}\" fill=\"#2f6db5\" stroke=\"#fff\"><title>{}: {} flows</title></circle>",
            p.x, p.y, esc(&n.id), n.flows
        );
        if labels {
            label(o, p, &n.id, clusters[p.cluster].members.len(), detailed);
        }
    }
    o.push_str("</svg>");
    o.push_str("<div class=\"legend\">");
    for (c, name) in [
        (ALLOW, "allowed"),
        (WOULD_DENY, "would be denied in full mode"),
        (DENY, "denied"),
    ] {
        let _ = write!(o, "<span><i style=\"background:{c}\"></i>{name}</span>");
    }
    if !detailed {
        let _ = write!(
            o,
            "<span>edges between clusters are bundled ({} groups &gt; {DETAILED})</span>",
            m.nodes.len()
        );
    }
    o.push_str("</div>");
}
