//! `simulate --from A --to B`: one flow's verdict, the deciding rule and the
//! mode of each side.

use std::collections::BTreeMap;
use std::fmt::Write;

use bulkhead_api::Labels;
use bulkhead_policy::simulate::SideVerdict;
use bulkhead_policy::{FlowQuery, FlowVerdict, Output, Verdict};
use serde::Serialize;

use crate::args::{Format, SimulateArgs};
use crate::endpoint::{describe, resolve};
use crate::error::{Error, Result};
use crate::ports::{self, protocol_name};
use crate::{render, to_json, Compiled};

/// The answer for one flow, as `-o json` prints it: the simulator's verdict
/// plus what was asked.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report<'a> {
    /// `--from` as resolved.
    pub from: String,
    /// `--to` as resolved.
    pub to: String,
    /// The protocol.
    pub protocol: &'static str,
    /// The port (ICMP: the message type).
    pub port: u16,
    /// `verdict` (`allow` or `deny`), addresses and each side's judgement.
    #[serde(flatten)]
    pub result: &'a FlowVerdict,
    /// What the flow would get if every managed side were in full enforcement.
    pub would_be: Verdict,
    /// The side that decided: `egress` (of the source) or `ingress` (of the destination).
    pub decided_by: Option<&'static str>,
    /// The label sets of the identities involved.
    pub identities: BTreeMap<u32, Labels>,
}

/// Runs the command: resolves both ends, simulates, renders.
pub fn run(args: &SimulateArgs, compiled: &Compiled) -> Result<String> {
    let missing = |flag: &str| Error::Usage(format!("{flag} is required without --matrix"));
    let from = args.from.as_deref().ok_or_else(|| missing("--from"))?;
    let to = args.to.as_deref().ok_or_else(|| missing("--to"))?;
    if to.trim().starts_with(crate::simulate_service::PREFIX) {
        return crate::simulate_service::run(args, compiled, from, to);
    }
    if from.trim().starts_with(crate::simulate_service::PREFIX) {
        return Err(Error::Usage(
            "--from service:...: a Service sends nothing; it is only a destination".into(),
        ));
    }
    let inventory = &compiled.inventory;
    let flow = ports::single(args)?;
    let query = FlowQuery {
        from: resolve("--from", from, inventory)?,
        to: resolve("--to", to, inventory)?,
        protocol: flow.protocol,
        port: flow.port,
    };
    let result = bulkhead_policy::simulate(&compiled.output, &query)?;
    let report = report(&query, &result, &compiled.output);
    match args.output {
        Format::Json => to_json(&report),
        Format::Text => Ok(text(&report, &compiled.output)),
    }
}

/// Builds the report of one simulated flow.
pub fn report<'a>(query: &FlowQuery, result: &'a FlowVerdict, out: &Output) -> Report<'a> {
    let sides = || result.egress.iter().chain(&result.ingress);
    let would_be = if sides().any(|s| s.would_be == Verdict::Deny) {
        Verdict::Deny
    } else {
        Verdict::Allow
    };
    let decided_by = result.deciding_side().map(|side| {
        if result
            .egress
            .as_ref()
            .is_some_and(|e| std::ptr::eq(e, side))
        {
            "egress"
        } else {
            "ingress"
        }
    });
    let identities = sides()
        .flat_map(|s| [s.identity, s.peer_identity])
        .filter_map(|id| out.identities.get(&id).map(|l| (id, l.clone())))
        .collect();
    Report {
        from: describe(&query.from),
        to: describe(&query.to),
        protocol: protocol_name(query.protocol),
        port: query.port,
        result,
        would_be,
        decided_by,
        identities,
    }
}

/// The report for a person.
pub fn text(report: &Report<'_>, out: &Output) -> String {
    let r = report.result;
    let mut s = String::new();
    let verdict = render::verdict(r.verdict).to_uppercase();
    let _ = write!(
        s,
        "{} -> {}  {}/{}: {verdict}",
        report.from, report.to, report.port, report.protocol
    );
    if r.verdict == Verdict::Allow && report.would_be == Verdict::Deny {
        s.push_str(" (would be DENY under full enforcement)");
    }
    s.push('\n');
    let source_id = r
        .egress
        .as_ref()
        .map(|e| e.identity)
        .or(r.ingress.as_ref().map(|i| i.peer_identity));
    let destination_id = r
        .ingress
        .as_ref()
        .map(|i| i.identity)
        .or(r.egress.as_ref().map(|e| e.peer_identity));
    let ends = [
        ("source", &report.from, r.source, source_id),
        ("destination", &report.to, r.destination, destination_id),
    ];
    for (role, name, address, id) in ends {
        let id = id
            .map(|id| render::identity(out, id))
            .unwrap_or_else(|| "unknown".to_string());
        let name = if name == &address.to_string() {
            String::new()
        } else {
            format!("{name} ")
        };
        let _ = writeln!(s, "  {role:<12} {name}{address}, identity {id}");
    }
    for (direction, side, end) in [
        ("egress", &r.egress, &report.from),
        ("ingress", &r.ingress, &report.to),
    ] {
        match side {
            Some(side) => {
                let _ = writeln!(s, "  {direction:<12} {}", side_text(side));
            }
            None => {
                let _ = writeln!(
                    s,
                    "  {direction:<12} {end} is not a managed endpoint: nothing to enforce"
                );
            }
        }
    }
    if let (Some(by), Some(side)) = (report.decided_by, r.deciding_side()) {
        let _ = writeln!(s, "  decided by   the {by} of {}", side.endpoint);
    }
    s
}

fn side_text(side: &SideVerdict) -> String {
    let mode = render::mode(side.mode);
    let mut s = format!(
        "{} on {} ({mode}): {}",
        side.endpoint,
        side.node,
        render::verdict(side.verdict)
    );
    if side.failsafe {
        s.push_str(", a failsafe port of the host");
        return s;
    }
    if side.verdict != side.would_be {
        let _ = write!(
            s,
            ", would be {} under full enforcement",
            render::verdict(side.would_be)
        );
    }
    match &side.rule {
        Some(rule) => {
            let action = serde_json::to_value(rule.action).ok();
            let action = action.as_ref().and_then(|a| a.as_str()).unwrap_or("?");
            let _ = write!(
                s,
                "; rule {} of policy {} ({action}, id {})",
                rule.rule, rule.policy, rule.id
            );
        }
        None => {
            let _ = write!(s, "; no rule matched, the {mode} default");
        }
    }
    s
}
