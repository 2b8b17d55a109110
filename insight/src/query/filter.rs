//! Which records a query selects.

use std::fmt;
use std::str::FromStr;

use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use bulkhead_api::policy::Protocol;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{EndpointMatch, QueryError};

/// `--verdict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictFilter {
    /// Let through (including what `full` mode would deny).
    Allow,
    /// Dropped.
    Deny,
    /// Let through, but `full` mode would deny it: what enforcing would break.
    WouldDeny,
}

impl VerdictFilter {
    pub fn matches(self, verdict: FlowVerdict, would: FlowVerdict) -> bool {
        match self {
            VerdictFilter::Allow => verdict == FlowVerdict::Allow,
            VerdictFilter::Deny => verdict == FlowVerdict::Deny,
            VerdictFilter::WouldDeny => verdict == FlowVerdict::Allow && would == FlowVerdict::Deny,
        }
    }

    /// `allow`, `deny` or `would-deny` for a record's verdicts: the class a
    /// group-by on `verdict` reports.
    pub fn class(verdict: FlowVerdict, would: FlowVerdict) -> Self {
        match (verdict, would) {
            (FlowVerdict::Deny, _) => VerdictFilter::Deny,
            (FlowVerdict::Allow, FlowVerdict::Deny) => VerdictFilter::WouldDeny,
            (FlowVerdict::Allow, FlowVerdict::Allow) => VerdictFilter::Allow,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            VerdictFilter::Allow => "allow",
            VerdictFilter::Deny => "deny",
            VerdictFilter::WouldDeny => "would-deny",
        }
    }
}

impl fmt::Display for VerdictFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VerdictFilter {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, QueryError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" | "allowed" => Ok(VerdictFilter::Allow),
            "deny" | "denied" => Ok(VerdictFilter::Deny),
            "would-deny" | "woulddeny" | "would_deny" => Ok(VerdictFilter::WouldDeny),
            _ => Err(QueryError::Verdict(s.to_string())),
        }
    }
}

/// `TCP`, `udp`, `icmpv6`, ... or an IANA number (`6`).
pub fn parse_protocol(s: &str) -> Result<Protocol, QueryError> {
    let t = s.trim();
    let by_name = match t.to_ascii_lowercase().as_str() {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "sctp" => Some(Protocol::Sctp),
        "icmp" => Some(Protocol::Icmp),
        "icmpv6" | "icmp6" => Some(Protocol::Icmpv6),
        _ => None,
    };
    by_name
        .or_else(|| t.parse::<u8>().ok().and_then(Protocol::from_number))
        .ok_or_else(|| QueryError::Protocol(s.to_string()))
}

/// What `kubectl bulkhead flows` and the collector's query API filter on.
/// Every field that is set must hold. A record is in `[since, until)` when
/// its window starts there; the stores return buckets, whose start is the
/// bucket's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<EndpointMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<EndpointMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<VerdictFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The reporting node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Flows sent to this Service address (a ClusterIP), whichever backend
    /// answered (`FlowRecord::service`). With `service_name` set too, it
    /// only stands in for the name in records that carry none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<std::net::IpAddr>,
    /// Flows sent to this Service, by the name their record carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<ServiceName>,
}

/// A Service, by namespace and name (`serviceName=ns/name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceName {
    pub namespace: String,
    pub name: String,
}

impl ServiceName {
    /// `namespace/name`.
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        let fail = || QueryError::Service(s.to_string());
        let (namespace, name) = s.trim().split_once('/').ok_or_else(fail)?;
        let ok = |p: &str| !p.is_empty() && !p.contains('/') && !p.contains(char::is_whitespace);
        if !ok(namespace) || !ok(name) {
            return Err(fail());
        }
        Ok(ServiceName {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    /// Whether a record's `service` is this one: by its name, or, for a
    /// record without a name, by `fallback` (the Service's address now).
    pub fn matches(
        &self,
        svc: &bulkhead_api::flow::ServiceAddress,
        fallback: Option<std::net::IpAddr>,
    ) -> bool {
        match (&svc.namespace, &svc.name) {
            (Some(ns), Some(name)) => *ns == self.namespace && *name == self.name,
            _ => fallback.is_some_and(|a| svc.address == a),
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FlowFilter {
    /// Refuses a range that cannot hold anything (since at or after until).
    pub fn validate(&self) -> Result<(), QueryError> {
        match (self.since, self.until) {
            (Some(since), Some(until)) if since >= until => {
                Err(QueryError::EmptyRange { since, until })
            }
            _ => Ok(()),
        }
    }

    pub fn matches(&self, r: &FlowRecord) -> bool {
        self.since.is_none_or(|s| r.start >= s)
            && self.until.is_none_or(|u| r.start < u)
            && self.from.as_ref().is_none_or(|m| m.matches(&r.source))
            && self.to.as_ref().is_none_or(|m| m.matches(&r.destination))
            && self
                .verdict
                .is_none_or(|v| v.matches(r.verdict, r.would_verdict))
            && self.port.is_none_or(|p| r.port == p)
            && self.protocol.is_none_or(|p| r.protocol == p)
            && self.node.as_ref().is_none_or(|n| &r.node == n)
            && self.service_matches(r)
    }

    fn service_matches(&self, r: &FlowRecord) -> bool {
        match (&self.service_name, self.service) {
            (None, None) => true,
            (None, Some(a)) => r.service.as_ref().is_some_and(|s| s.address == a),
            (Some(n), fallback) => r.service.as_ref().is_some_and(|s| n.matches(s, fallback)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowReason, SCHEMA};
    use bulkhead_api::policy::EnforcementMode;
    use bulkhead_api::rule_map::Direction;

    use super::*;

    pub(crate) fn record(src: (&str, &str), dst: (&str, &str), port: u16) -> FlowRecord {
        let side = |(addr, app): (&str, &str)| FlowEndpoint {
            address: addr.parse().expect("ip"),
            identity: 1000,
            labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            kind: EndpointKind::Pod,
            name: Some(format!("shop/{app}-0")),
            namespace: Some("shop".into()),
            reported: true,
        };
        FlowRecord {
            schema: SCHEMA.into(),
            start: "2026-01-01T10:00:00Z".parse().expect("ts"),
            end: "2026-01-01T10:00:10Z".parse().expect("ts"),
            node: "n1".into(),
            source: side(src),
            destination: side(dst),
            port,
            protocol: Protocol::Tcp,
            direction: Direction::Egress,
            verdict: FlowVerdict::Allow,
            would_verdict: FlowVerdict::Allow,
            mode: EnforcementMode::Visibility,
            reason: FlowReason::Default,
            rule: None,
            flows: 1,
            packets: 10,
            bytes: 1000,
            service: None,
            source_hidden_by_snat: false,
        }
    }

    #[test]
    fn verdict_classes() {
        use FlowVerdict::{Allow as A, Deny as D};
        let cases = [
            (A, A, VerdictFilter::Allow),
            (A, D, VerdictFilter::WouldDeny),
            (D, D, VerdictFilter::Deny),
            (D, A, VerdictFilter::Deny),
        ];
        for (v, w, class) in cases {
            assert_eq!(VerdictFilter::class(v, w), class);
            assert!(class.matches(v, w));
        }
        assert!(
            VerdictFilter::Allow.matches(A, D),
            "would-deny was let through"
        );
        assert!(!VerdictFilter::WouldDeny.matches(A, A));
        assert!(!VerdictFilter::WouldDeny.matches(D, D));
        assert_eq!("would-deny".parse(), Ok(VerdictFilter::WouldDeny));
        assert_eq!(
            "maybe".parse::<VerdictFilter>().map_err(|e| e.to_string()),
            Err("verdict \"maybe\": expected allow, deny or would-deny".into())
        );
    }

    #[test]
    fn protocols() {
        assert_eq!(parse_protocol("tcp"), Ok(Protocol::Tcp));
        assert_eq!(parse_protocol("ICMPv6"), Ok(Protocol::Icmpv6));
        assert_eq!(parse_protocol("17"), Ok(Protocol::Udp));
        assert_eq!(
            parse_protocol("gre"),
            Err(QueryError::Protocol("gre".into()))
        );
        assert_eq!(parse_protocol("47"), Err(QueryError::Protocol("47".into())));
    }

    #[test]
    fn a_service_address_matches_flows_sent_to_it_whatever_the_backend() {
        let vip: std::net::IpAddr = "10.96.0.10".parse().expect("ip");
        let mut via = record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432);
        via.service = Some(bulkhead_api::flow::ServiceAddress {
            address: vip,
            port: 80,
            namespace: None,
            name: None,
            port_name: None,
        });
        let direct = record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432);
        let f = FlowFilter {
            service: Some(vip),
            ..Default::default()
        };
        assert_eq!((f.matches(&via), f.matches(&direct)), (true, false));
        let other = FlowFilter {
            service: Some("10.96.0.11".parse().expect("ip")),
            ..Default::default()
        };
        assert!(!other.matches(&via));
    }

    #[test]
    fn a_service_name_matches_named_records_and_the_address_only_unnamed_ones() {
        let vip: std::net::IpAddr = "10.96.0.10".parse().expect("ip");
        let via = |ns: Option<&str>, address: &str| {
            let mut r = record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432);
            r.service = Some(bulkhead_api::flow::ServiceAddress {
                address: address.parse().expect("ip"),
                port: 5432,
                namespace: ns.map(str::to_string),
                name: ns.map(|_| "db".to_string()),
                port_name: None,
            });
            r
        };
        let shop = via(Some("shop"), "10.96.0.10");
        // Named shop/db at an address the Service no longer has.
        let moved = via(Some("shop"), "10.96.0.99");
        let other = via(Some("lab"), "10.96.0.10");
        let unnamed = via(None, "10.96.0.10");
        let unnamed_elsewhere = via(None, "10.96.0.11");
        let direct = record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432);
        let name = ServiceName::parse("shop/db").expect("name");
        assert_eq!(name.to_string(), "shop/db");
        let by_name = FlowFilter {
            service_name: Some(name.clone()),
            ..Default::default()
        };
        let with_fallback = FlowFilter {
            service: Some(vip),
            ..by_name.clone()
        };
        let all = [&shop, &moved, &other, &unnamed, &unnamed_elsewhere, &direct];
        let hits = |f: &FlowFilter| all.iter().map(|r| f.matches(r)).collect::<Vec<_>>();
        assert_eq!(hits(&by_name), [true, true, false, false, false, false]);
        assert_eq!(
            hits(&with_fallback),
            [true, true, false, true, false, false]
        );
        for bad in ["shop", "/db", "shop/", "a/b/c", "sh op/db"] {
            assert_eq!(
                ServiceName::parse(bad),
                Err(QueryError::Service(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn filter_truth_table() {
        let mut denied = record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432);
        denied.verdict = FlowVerdict::Deny;
        denied.would_verdict = FlowVerdict::Deny;
        let mut would = record(("10.0.0.1", "web"), ("10.0.0.3", "cache"), 6379);
        would.would_verdict = FlowVerdict::Deny;
        let mut udp = record(("10.0.1.1", "dns"), ("10.0.0.1", "web"), 53);
        udp.protocol = Protocol::Udp;
        udp.node = "n2".into();
        let plain = record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432);
        let ep = |s: &str| Some(EndpointMatch::parse(s).expect(s));
        let ts = |s: &str| Some(s.parse::<Timestamp>().expect(s));
        let cases: Vec<(&str, FlowFilter, [bool; 4])> = vec![
            (
                "everything",
                FlowFilter::default(),
                [true, true, true, true],
            ),
            (
                "from web",
                FlowFilter {
                    from: ep("app=web"),
                    ..Default::default()
                },
                [true, true, false, true],
            ),
            (
                "to web",
                FlowFilter {
                    to: ep("app=web"),
                    ..Default::default()
                },
                [false, false, true, false],
            ),
            (
                "deny",
                FlowFilter {
                    verdict: Some(VerdictFilter::Deny),
                    ..Default::default()
                },
                [true, false, false, false],
            ),
            (
                "would-deny",
                FlowFilter {
                    verdict: Some(VerdictFilter::WouldDeny),
                    ..Default::default()
                },
                [false, true, false, false],
            ),
            (
                "allow",
                FlowFilter {
                    verdict: Some(VerdictFilter::Allow),
                    ..Default::default()
                },
                [false, true, true, true],
            ),
            (
                "port",
                FlowFilter {
                    port: Some(5432),
                    ..Default::default()
                },
                [true, false, false, true],
            ),
            (
                "udp",
                FlowFilter {
                    protocol: Some(Protocol::Udp),
                    ..Default::default()
                },
                [false, false, true, false],
            ),
            (
                "node",
                FlowFilter {
                    node: Some("n2".into()),
                    ..Default::default()
                },
                [false, false, true, false],
            ),
            (
                "to a range",
                FlowFilter {
                    to: ep("10.0.0.2/31"),
                    ..Default::default()
                },
                [true, true, false, true],
            ),
            (
                "since includes the start",
                FlowFilter {
                    since: ts("2026-01-01T10:00:00Z"),
                    ..Default::default()
                },
                [true, true, true, true],
            ),
            (
                "until excludes the start",
                FlowFilter {
                    until: ts("2026-01-01T10:00:00Z"),
                    ..Default::default()
                },
                [false, false, false, false],
            ),
            (
                "since after the start",
                FlowFilter {
                    since: ts("2026-01-01T10:00:05Z"),
                    ..Default::default()
                },
                [false, false, false, false],
            ),
            (
                "from web to db on 5432",
                FlowFilter {
                    from: ep("app=web"),
                    to: ep("shop/db-0"),
                    port: Some(5432),
                    verdict: Some(VerdictFilter::Allow),
                    ..Default::default()
                },
                [false, false, false, true],
            ),
        ];
        let records = [&denied, &would, &udp, &plain];
        for (name, filter, want) in cases {
            let got: Vec<bool> = records.iter().map(|r| filter.matches(r)).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn empty_range_is_refused() {
        let f = FlowFilter {
            since: Some("2026-01-02T00:00:00Z".parse().expect("ts")),
            until: Some("2026-01-01T00:00:00Z".parse().expect("ts")),
            ..Default::default()
        };
        assert!(matches!(f.validate(), Err(QueryError::EmptyRange { .. })));
        assert_eq!(FlowFilter::default().validate(), Ok(()));
    }
}
