//! How flow records look on a terminal.

use std::fmt::Write;

use bulkhead_api::flow::{FlowEndpoint, FlowRecord, FlowVerdict};
use bulkhead_insight::query::{direction_name, protocol_name};

use super::Answer;

fn side(e: &FlowEndpoint) -> String {
    let who = e.name.clone().unwrap_or_else(|| e.address.to_string());
    if e.labels.is_empty() {
        who
    } else {
        let labels: Vec<String> = e
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != bulkhead_api::identity::CIDR_LABEL)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if labels.is_empty() {
            who
        } else {
            format!("{who} [{}]", labels.join(","))
        }
    }
}

fn verdict(r: &FlowRecord) -> &'static str {
    match (r.verdict, r.would_verdict) {
        (FlowVerdict::Deny, _) => "deny",
        (FlowVerdict::Allow, FlowVerdict::Deny) => "would-deny",
        (FlowVerdict::Allow, FlowVerdict::Allow) => "allow",
    }
}

/// One line per record, widest columns last; losses after the table.
pub fn table(answer: &Answer, out: &mut String) {
    let rows: Vec<[String; 9]> = answer
        .records
        .iter()
        .map(|r| {
            [
                r.start.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                r.node.clone(),
                direction_name(r.direction).to_string(),
                format!("{}/{}", r.port, protocol_name(r.protocol)),
                verdict(r).to_string(),
                r.rule.as_ref().map_or_else(
                    || format!("({:?})", r.reason).to_lowercase(),
                    |x| format!("{}/{}", x.policy, x.name),
                ),
                r.flows.to_string(),
                side(&r.source),
                match &r.service {
                    Some(svc) => format!(
                        "{} via {}:{}",
                        side(&r.destination),
                        svc.service().unwrap_or_else(|| svc.address.to_string()),
                        svc.port_name
                            .clone()
                            .unwrap_or_else(|| svc.port.to_string())
                    ),
                    None => side(&r.destination),
                },
            ]
        })
        .collect();
    let head = [
        "START",
        "NODE",
        "DIR",
        "PORT",
        "VERDICT",
        "RULE",
        "FLOWS",
        "SOURCE",
        "DESTINATION",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&head);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&cells);
    }
    if rows.is_empty() {
        out.push_str("(no flows match)\n");
    }
    for l in &answer.lost {
        let _ = writeln!(out, "records lost on node {}: {}", l.node, l.records);
    }
}

/// flow/v1 JSON lines; losses go to standard error, which JSON lines cannot carry.
pub fn jsonl(answer: &Answer, out: &mut String) -> anyhow::Result<()> {
    for r in &answer.records {
        out.push_str(&serde_json::to_string(r)?);
        out.push('\n');
    }
    for l in &answer.lost {
        eprintln!("warning: records lost on node {}: {}", l.node, l.records);
    }
    Ok(())
}
