//! `what-if -o table` and `-o markdown`.

use std::fmt::Write;
use std::path::PathBuf;

use bulkhead_insight::query::protocol_name;
use bulkhead_insight::whatif::{Change, EndpointGroup, WhatIf};
use jiff::Timestamp;

/// What was asked, for the headline.
#[derive(Debug)]
pub struct Context<'a> {
    pub drafts: &'a [PathBuf],
    pub delete: &'a [String],
    pub as_enforced: bool,
    pub since: Timestamp,
    pub until: Timestamp,
}

/// `app=web,env=prod`, `name`, or `app=web,env=prod (name)`.
pub fn group(g: &EndpointGroup) -> String {
    let labels = g
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    match (&g.name, labels.is_empty()) {
        (Some(n), true) => n.clone(),
        (Some(n), false) => format!("{labels} ({n})"),
        (None, false) => labels,
        (None, true) => "unlabeled".into(),
    }
}

fn port(c: &Change) -> String {
    format!("{}/{}", c.port, protocol_name(c.protocol))
}

fn what(ctx: &Context<'_>) -> String {
    let mut parts: Vec<String> = ctx
        .drafts
        .iter()
        .map(|p| format!("`{}`", p.display()))
        .collect();
    parts.extend(ctx.delete.iter().map(|d| format!("deleting `{d}`")));
    let mut s = parts.join(", ");
    if ctx.as_enforced {
        s.push_str(", judged as enforced (full mode)");
    }
    s
}

pub fn table(r: &WhatIf, ctx: &Context<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} records from {} to {} replayed under today's policy and the draft ({}).",
        r.records,
        ctx.since,
        ctx.until,
        what(ctx).replace('`', "")
    );
    for (title, list) in [
        ("Newly denied", &r.newly_denied),
        ("Newly allowed", &r.newly_allowed),
    ] {
        let _ = writeln!(out, "\n{title}: {}", list.len());
        if list.is_empty() {
            continue;
        }
        let rows: Vec<[String; 5]> = list
            .iter()
            .map(|c| {
                [
                    group(&c.from),
                    group(&c.to),
                    port(c),
                    c.flows.to_string(),
                    c.last_seen.to_string(),
                ]
            })
            .collect();
        let header = ["FROM", "TO", "PORT", "FLOWS", "LAST SEEN"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut l = String::from("  ");
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                if i == 4 {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<w$}  ");
                }
            }
            l
        };
        let _ = writeln!(out, "{}", line(header));
        for row in &rows {
            let _ = writeln!(
                out,
                "{}",
                line([&row[0], &row[1], &row[2], &row[3], &row[4]])
            );
        }
    }
    out
}

pub fn markdown(r: &WhatIf, ctx: &Context<'_>) -> String {
    let mut out = String::from("### Bulkhead what-if\n\n");
    let _ = writeln!(
        out,
        "Replayed **{}** flow records from {} to {} under today's policy and under the draft ({}).\n",
        r.records,
        ctx.since,
        ctx.until,
        what(ctx)
    );
    if r.newly_denied.is_empty() {
        out.push_str(":white_check_mark: Nothing observed in the window would be newly denied.\n");
    } else {
        let flows: u64 = r.newly_denied.iter().map(|c| c.flows).sum();
        let _ = writeln!(
            out,
            ":warning: **{} observed traffic groups ({flows} connections) would be newly denied.**",
            r.newly_denied.len()
        );
    }
    for (title, list) in [
        ("Newly denied", &r.newly_denied),
        ("Newly allowed", &r.newly_allowed),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n#### {title}\n\n| From | To | Port | Flows | Last seen |\n|---|---|---|---:|---|"
        );
        for c in list {
            let _ = writeln!(
                out,
                "| `{}` | `{}` | {} | {} | {} |",
                group(&c.from),
                group(&c.to),
                port(c),
                c.flows,
                c.last_seen
            );
        }
    }
    out
}
