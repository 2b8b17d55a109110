//! Which protocol and port (or ICMP type) to simulate.

use std::collections::BTreeSet;
use std::fmt;

use bulkhead_api::policy::Protocol;
use bulkhead_policy::netpol::PortRef;
use bulkhead_policy::Snapshot;

use crate::args::SimulateArgs;
use crate::error::{Error, Result};

/// A protocol and a destination port (for ICMP and ICMPv6, a message type).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortProtocol {
    /// The protocol.
    pub protocol: Protocol,
    /// The port or ICMP type.
    pub port: u16,
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, protocol_name(self.protocol))
    }
}

/// The protocol's name as manifests write it.
pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        Protocol::Icmp => "ICMP",
        Protocol::Icmpv6 => "ICMPv6",
    }
}

/// The echo request type: what `ping` sends, the natural ICMP question.
pub fn echo_request(protocol: Protocol) -> u16 {
    match protocol {
        Protocol::Icmpv6 => 128,
        _ => 8,
    }
}

/// `TCP`, `udp`, `ICMPv6`... (any case).
pub fn parse_protocol(text: &str) -> std::result::Result<Protocol, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        "icmp" => Protocol::Icmp,
        "icmpv6" | "icmp6" => Protocol::Icmpv6,
        _ => {
            return Err(format!(
                "unknown protocol {text:?}: expected TCP, UDP, SCTP, ICMP or ICMPv6"
            ))
        }
    })
}

/// `80/TCP`, `53/udp`, `443` (TCP), `ICMP` (echo request), `0/ICMP` (type 0).
pub fn parse_port_protocol(text: &str) -> std::result::Result<PortProtocol, String> {
    let text = text.trim();
    let (port, protocol) = match text.split_once('/') {
        Some((port, protocol)) => (Some(port), parse_protocol(protocol)?),
        None if text.chars().all(|c| c.is_ascii_digit()) => (Some(text), Protocol::Tcp),
        None => (None, parse_protocol(text)?),
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("{p:?} is not a port number (0-65535)"))?,
        None if protocol.has_ports() => {
            return Err(format!("{text}: a port is needed, such as 80/{text}"))
        }
        None => echo_request(protocol),
    };
    check(PortProtocol { protocol, port })
}

fn check(pp: PortProtocol) -> std::result::Result<PortProtocol, String> {
    if pp.protocol.has_ports() && pp.port == 0 {
        return Err(format!("{pp}: port 0 is not a destination port"));
    }
    if !pp.protocol.has_ports() && pp.port > 255 {
        return Err(format!("{pp}: ICMP types go from 0 to 255"));
    }
    Ok(pp)
}

/// The one protocol and port of a single-flow simulation.
pub fn single(args: &SimulateArgs) -> Result<PortProtocol> {
    let usage = |m: String| Error::Usage(m);
    if !args.ports.is_empty() {
        if args.ports.len() > 1 || !args.port.is_empty() || !args.protocol.is_empty() {
            return Err(usage(
                "one flow takes one port and protocol; use --matrix for several".into(),
            ));
        }
        return Ok(args.ports[0]);
    }
    if args.port.len() > 1 || args.protocol.len() > 1 {
        return Err(usage(
            "one flow takes one --port and one --protocol; use --matrix for several".into(),
        ));
    }
    let protocol = args.protocol.first().copied().unwrap_or(Protocol::Tcp);
    let port = match args.port.first() {
        Some(port) => *port,
        None if protocol.has_ports() => {
            return Err(usage(format!(
                "--port is required for {}",
                protocol_name(protocol)
            )))
        }
        None => echo_request(protocol),
    };
    check(PortProtocol { protocol, port }).map_err(usage)
}

/// The protocols and ports of a matrix: those asked for, or else those the
/// policies name (80/TCP when they name none).
pub fn for_matrix(args: &SimulateArgs, snapshot: &Snapshot) -> Result<Vec<PortProtocol>> {
    let mut set: BTreeSet<PortProtocol> = args.ports.iter().copied().collect();
    let protocols = if args.protocol.is_empty() {
        vec![Protocol::Tcp]
    } else {
        args.protocol.clone()
    };
    for protocol in &protocols {
        if args.port.is_empty() && !protocol.has_ports() {
            set.insert(PortProtocol {
                protocol: *protocol,
                port: echo_request(*protocol),
            });
        }
        for port in &args.port {
            set.insert(
                check(PortProtocol {
                    protocol: *protocol,
                    port: *port,
                })
                .map_err(Error::Usage)?,
            );
        }
    }
    if args.port.is_empty() && args.ports.is_empty() {
        let named = named_by_policies(snapshot);
        let wanted =
            |pp: &PortProtocol| args.protocol.is_empty() || args.protocol.contains(&pp.protocol);
        set.extend(named.into_iter().filter(wanted));
        if set.is_empty() {
            let protocol = args.protocol.first().copied().unwrap_or(Protocol::Tcp);
            set.insert(PortProtocol { protocol, port: 80 });
        }
    }
    Ok(set.into_iter().collect())
}

/// The first port of every port range the policies name, and the ICMP types;
/// for NetworkPolicies also the numbers their named ports have on the pods.
pub fn named_by_policies(snapshot: &Snapshot) -> BTreeSet<PortProtocol> {
    let mut out = named_by_network_policies(snapshot);
    let rules = snapshot
        .policies
        .values()
        .flat_map(|p| p.ingress.iter().chain(&p.egress));
    let specs = rules.flat_map(|r| &r.ports);
    let named =
        specs.filter_map(
            |spec| match (spec.protocol.has_ports(), spec.port, spec.icmp_type) {
                (true, Some(port), _) => Some(PortProtocol {
                    protocol: spec.protocol,
                    port,
                }),
                (true, None, _) => None,
                (false, _, Some(t)) => Some(PortProtocol {
                    protocol: spec.protocol,
                    port: u16::from(t),
                }),
                (false, _, None) => Some(PortProtocol {
                    protocol: spec.protocol,
                    port: echo_request(spec.protocol),
                }),
            },
        );
    out.extend(named);
    out
}

fn named_by_network_policies(snapshot: &Snapshot) -> BTreeSet<PortProtocol> {
    let mut out = BTreeSet::new();
    let policies = snapshot.network_policies.values();
    let ports = policies
        .flat_map(|p| p.ingress.iter().chain(&p.egress))
        .flat_map(|r| &r.ports);
    for port in ports {
        match &port.port {
            Some(PortRef::Number(n)) => {
                out.insert(PortProtocol {
                    protocol: port.protocol,
                    port: *n,
                });
            }
            Some(PortRef::Name(name)) => {
                let declared = snapshot.pods.values().flat_map(|p| &p.named_ports);
                out.extend(
                    declared
                        .filter(|d| &d.name == name && d.protocol == port.protocol)
                        .map(|d| PortProtocol {
                            protocol: d.protocol,
                            port: d.port,
                        }),
                );
            }
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn args(extra: &[&str]) -> SimulateArgs {
        let argv = ["kubectl-bulkhead", "simulate", "dir"]
            .into_iter()
            .chain(extra.iter().copied());
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Simulate(args) => args,
            _ => panic!("not simulate"),
        }
    }

    fn pp(protocol: Protocol, port: u16) -> PortProtocol {
        PortProtocol { protocol, port }
    }

    #[test]
    fn parses_port_protocol_pairs() {
        assert_eq!(parse_port_protocol("80/TCP"), Ok(pp(Protocol::Tcp, 80)));
        assert_eq!(parse_port_protocol("53/udp"), Ok(pp(Protocol::Udp, 53)));
        assert_eq!(parse_port_protocol("443"), Ok(pp(Protocol::Tcp, 443)));
        assert_eq!(parse_port_protocol("ICMP"), Ok(pp(Protocol::Icmp, 8)));
        assert_eq!(parse_port_protocol("icmpv6"), Ok(pp(Protocol::Icmpv6, 128)));
        assert_eq!(parse_port_protocol("0/ICMP"), Ok(pp(Protocol::Icmp, 0)));
        assert!(parse_port_protocol("TCP").is_err());
        assert!(parse_port_protocol("0/TCP").is_err());
        assert!(parse_port_protocol("300/ICMP").is_err());
        assert!(parse_port_protocol("x/TCP").is_err());
    }

    #[test]
    fn single_flow_ports() {
        let flow =
            |extra: &[&str]| single(&args(&[&["--from", "a/b", "--to", "c/d"], extra].concat()));
        assert_eq!(flow(&["--port", "80"]).ok(), Some(pp(Protocol::Tcp, 80)));
        assert_eq!(
            flow(&["--protocol", "ICMP"]).ok(),
            Some(pp(Protocol::Icmp, 8))
        );
        assert_eq!(
            flow(&["--protocol", "ICMPv6"]).ok(),
            Some(pp(Protocol::Icmpv6, 128))
        );
        assert_eq!(
            flow(&["--ports", "53/UDP"]).ok(),
            Some(pp(Protocol::Udp, 53))
        );
        let err = flow(&["--protocol", "UDP"]).expect_err("no port");
        assert_eq!(err.to_string(), "--port is required for UDP");
        assert!(flow(&["--port", "80", "--port", "81"]).is_err());
        assert!(flow(&["--port", "0"]).is_err());
    }

    #[test]
    fn matrix_ports() {
        let empty = Snapshot::default();
        let got = for_matrix(
            &args(&[
                "--matrix",
                "--port",
                "80",
                "--port",
                "81",
                "--protocol",
                "TCP",
                "--protocol",
                "UDP",
            ]),
            &empty,
        )
        .expect("ok");
        assert_eq!(
            got,
            vec![
                pp(Protocol::Tcp, 80),
                pp(Protocol::Tcp, 81),
                pp(Protocol::Udp, 80),
                pp(Protocol::Udp, 81)
            ]
        );
        let got = for_matrix(
            &args(&["--matrix", "--protocol", "ICMP", "--ports", "53/UDP"]),
            &empty,
        )
        .expect("ok");
        assert_eq!(got, vec![pp(Protocol::Udp, 53), pp(Protocol::Icmp, 8)]);
        let got = for_matrix(&args(&["--matrix"]), &empty).expect("ok");
        assert_eq!(got, vec![pp(Protocol::Tcp, 80)]);
    }

    #[test]
    fn matrix_defaults_to_the_ports_policies_name() {
        let mut snapshot = Snapshot::default();
        let spec = serde_yaml::from_str(
            "scope: {clusterWide: true}\n\
             ingress: [{action: allow, ports: [{protocol: TCP, port: 8080, endPort: 8090}, {protocol: UDP}, {protocol: ICMP}]}]\n\
             egress: [{action: allow, ports: [{protocol: UDP, port: 53}]}]\n",
        )
        .expect("parses");
        snapshot.policies.insert("p".into(), spec);
        let got = for_matrix(&args(&["--matrix"]), &snapshot).expect("ok");
        assert_eq!(
            got,
            vec![
                pp(Protocol::Tcp, 8080),
                pp(Protocol::Udp, 53),
                pp(Protocol::Icmp, 8)
            ]
        );
        let got = for_matrix(&args(&["--matrix", "--protocol", "UDP"]), &snapshot).expect("ok");
        assert_eq!(got, vec![pp(Protocol::Udp, 53)]);
    }
}
