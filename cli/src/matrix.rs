//! `simulate --matrix`: who can reach whom, as a truth table in the style of
//! the upstream Kubernetes network policy tests.

use std::fmt::Write;

use bulkhead_policy::output::EndpointRef;
use bulkhead_policy::{FlowEnd, FlowQuery, Output, Verdict};
use serde::Serialize;

use crate::args::{Format, SimulateArgs};
use crate::endpoint::describe;
use crate::error::Result;
use crate::ports::{self, protocol_name, PortProtocol};
use crate::{to_json, Compiled};

/// One cell: a flow and its verdicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cell {
    /// The client.
    pub from: String,
    /// The server.
    pub to: String,
    /// The protocol.
    pub protocol: &'static str,
    /// The port (ICMP: the message type).
    pub port: u16,
    /// `allow` or `deny`; absent when the flow cannot be simulated.
    pub verdict: Option<Verdict>,
    /// The verdict under full enforcement of every managed side.
    pub would_be: Option<Verdict>,
    /// Why the flow could not be simulated (no common address family, say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole matrix, as `-o json` prints it.
#[derive(Debug, Serialize)]
pub struct Matrix {
    /// Rows and columns, in order.
    pub endpoints: Vec<String>,
    /// Protocol and port of each table.
    pub ports: Vec<String>,
    /// Every (from, to, port) with from ≠ to.
    pub cells: Vec<Cell>,
}

/// Runs the command.
pub fn run(args: &SimulateArgs, compiled: &Compiled) -> Result<String> {
    let flows = ports::for_matrix(args, &compiled.inventory.snapshot)?;
    let matrix = build(&compiled.output, &compiled.inventory.snapshot, &flows);
    match args.output {
        Format::Json => to_json(&matrix),
        Format::Text => Ok(text(&matrix, &flows)),
    }
}

/// The ends of the matrix: every pod with a node and an address (host-network
/// pods are their node), then every ExternalNode with an address.
pub fn endpoints(out: &Output, snapshot: &bulkhead_policy::Snapshot) -> Vec<FlowEnd> {
    out.endpoints
        .iter()
        .filter(|(_, facts)| !facts.addresses.is_empty())
        .filter_map(|(r, facts)| match r {
            EndpointRef::Pod(key) => {
                let host_network = snapshot.pods.get(key).is_some_and(|p| p.host_network);
                (facts.node.is_some() && !host_network).then(|| FlowEnd::Pod(key.clone()))
            }
            EndpointRef::ExternalNode(name) => Some(FlowEnd::Host(name.clone())),
            EndpointRef::Node(_) | EndpointRef::Cidr(_) => None,
        })
        .collect()
}

/// Simulates every flow between distinct ends, for every port.
pub fn build(out: &Output, snapshot: &bulkhead_policy::Snapshot, flows: &[PortProtocol]) -> Matrix {
    let ends = endpoints(out, snapshot);
    let mut cells = Vec::new();
    for flow in flows {
        for from in &ends {
            for to in ends.iter().filter(|to| *to != from) {
                let query = FlowQuery {
                    from: from.clone(),
                    to: to.clone(),
                    protocol: flow.protocol,
                    port: flow.port,
                };
                let mut cell = Cell {
                    from: describe(from),
                    to: describe(to),
                    protocol: protocol_name(flow.protocol),
                    port: flow.port,
                    verdict: None,
                    would_be: None,
                    error: None,
                };
                match bulkhead_policy::simulate(out, &query) {
                    Ok(result) => {
                        let sides = result.egress.iter().chain(&result.ingress);
                        let denies = sides.into_iter().any(|s| s.would_be == Verdict::Deny);
                        cell.verdict = Some(result.verdict);
                        cell.would_be = Some(if denies {
                            Verdict::Deny
                        } else {
                            Verdict::Allow
                        });
                    }
                    Err(err) => cell.error = Some(err.to_string()),
                }
                cells.push(cell);
            }
        }
    }
    Matrix {
        endpoints: ends.iter().map(describe).collect(),
        ports: flows.iter().map(ToString::to_string).collect(),
        cells,
    }
}

/// One table per port: rows are clients, numbered columns are servers.
pub fn text(matrix: &Matrix, flows: &[PortProtocol]) -> String {
    let mut s = String::new();
    let n = matrix.endpoints.len();
    if n == 0 {
        return "no managed endpoints: pods need spec.nodeName and status.podIP\n".to_string();
    }
    let index_width = n.to_string().len();
    let name_width = matrix
        .endpoints
        .iter()
        .map(|e| e.chars().count())
        .max()
        .unwrap_or(0);
    let column = index_width.max(1) + 1;
    let mut cells = matrix.cells.iter();
    for flow in flows {
        let _ = writeln!(s, "{flow}  (rows: from, columns: to)");
        let _ = write!(s, "{:width$}", "", width = index_width + name_width + 3);
        for c in 1..=n {
            let _ = write!(s, "{c:>column$}");
        }
        s.push('\n');
        let (mut allowed, mut denied, mut would_deny) = (0, 0, 0);
        for (r, name) in matrix.endpoints.iter().enumerate() {
            let _ = write!(s, "{:>index_width$}  {name:<name_width$} ", r + 1);
            for c in 0..n {
                let mark = if r == c {
                    '-'
                } else {
                    let cell = cells.next();
                    match cell.and_then(|c| c.verdict.zip(c.would_be)) {
                        Some((Verdict::Deny, _)) => {
                            denied += 1;
                            'X'
                        }
                        Some((Verdict::Allow, Verdict::Deny)) => {
                            // It passes: visibility or selective mode lets it.
                            allowed += 1;
                            would_deny += 1;
                            '~'
                        }
                        Some((Verdict::Allow, Verdict::Allow)) => {
                            allowed += 1;
                            '.'
                        }
                        None => '?',
                    }
                };
                let _ = write!(s, "{mark:>column$}");
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "{allowed} allowed, {denied} denied; under full enforcement {would_deny} of the allowed would be denied\n"
        );
    }
    s.push_str(
        "legend: . allowed   X denied   ~ allowed by visibility or selective mode, \
         denied under full enforcement   ? not simulated (no common address family)   - self\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_api::policy::Protocol;

    #[test]
    fn renders_marks_in_row_major_order() {
        let cell = |from: &str, to: &str, verdict, would_be| Cell {
            from: from.into(),
            to: to.into(),
            protocol: "TCP",
            port: 80,
            verdict: Some(verdict),
            would_be: Some(would_be),
            error: None,
        };
        use Verdict::{Allow, Deny};
        let matrix = Matrix {
            endpoints: vec!["x/a".into(), "x/b".into(), "y/c".into()],
            ports: vec!["80/TCP".into()],
            cells: vec![
                cell("x/a", "x/b", Allow, Allow),
                cell("x/a", "y/c", Deny, Deny),
                cell("x/b", "x/a", Allow, Deny),
                cell("x/b", "y/c", Allow, Allow),
                cell("y/c", "x/a", Deny, Deny),
                cell("y/c", "x/b", Allow, Allow),
            ],
        };
        let flows = [PortProtocol {
            protocol: Protocol::Tcp,
            port: 80,
        }];
        let got = text(&matrix, &flows);
        let expected = "\
80/TCP  (rows: from, columns: to)
        1 2 3
1  x/a  - . X
2  x/b  ~ - .
3  y/c  X . -
4 allowed, 2 denied; under full enforcement 1 of the allowed would be denied
";
        assert!(got.starts_with(expected), "{got}");
    }
}
