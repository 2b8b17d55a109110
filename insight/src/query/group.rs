//! Group-by aggregates: top talkers and everything built on them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use bulkhead_api::flow::{FlowEndpoint, FlowRecord};
use serde::{Deserialize, Serialize};

use super::endpoint::label_key;
use super::{QueryError, VerdictFilter};

/// One key to group by.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum GroupKey {
    /// `source.<label key>`.
    SourceLabel(String),
    /// `destination.<label key>`.
    DestinationLabel(String),
    SourceNamespace,
    DestinationNamespace,
    SourceName,
    DestinationName,
    /// The reporting node.
    Node,
    Port,
    Protocol,
    /// `allow`, `deny` or `would-deny` ([`VerdictFilter::class`]).
    Verdict,
    Direction,
    /// The Service the client sent to: `namespace/name`, or its address
    /// when the record names none; no value for flows not sent to one.
    Service,
}

impl GroupKey {
    /// This key's value in one record; `None` when the record has none (a
    /// label the endpoint does not carry, a name nobody knows).
    pub fn value(&self, r: &FlowRecord) -> Option<String> {
        match self {
            GroupKey::SourceLabel(k) => r.source.labels.get(k).cloned(),
            GroupKey::DestinationLabel(k) => r.destination.labels.get(k).cloned(),
            GroupKey::SourceNamespace => r.source.namespace.clone(),
            GroupKey::DestinationNamespace => r.destination.namespace.clone(),
            GroupKey::SourceName => r.source.name.clone(),
            GroupKey::DestinationName => r.destination.name.clone(),
            GroupKey::Node => Some(r.node.clone()),
            GroupKey::Port => Some(r.port.to_string()),
            GroupKey::Protocol => Some(protocol_name(r.protocol).to_string()),
            GroupKey::Verdict => Some(VerdictFilter::class(r.verdict, r.would_verdict).to_string()),
            GroupKey::Direction => Some(direction_name(r.direction).to_string()),
            GroupKey::Service => r
                .service
                .as_ref()
                .map(|s| s.service().unwrap_or_else(|| s.address.to_string())),
        }
    }
}

/// The wire name of a protocol (`TCP`, `ICMPv6`).
pub fn protocol_name(p: bulkhead_api::policy::Protocol) -> &'static str {
    use bulkhead_api::policy::Protocol;
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        Protocol::Icmp => "ICMP",
        Protocol::Icmpv6 => "ICMPv6",
    }
}

/// The wire name of a direction (`ingress`, `egress`).
pub fn direction_name(d: bulkhead_api::rule_map::Direction) -> &'static str {
    match d {
        bulkhead_api::rule_map::Direction::Ingress => "ingress",
        bulkhead_api::rule_map::Direction::Egress => "egress",
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupKey::SourceLabel(k) => write!(f, "source.{k}"),
            GroupKey::DestinationLabel(k) => write!(f, "destination.{k}"),
            GroupKey::SourceNamespace => f.write_str("source.namespace"),
            GroupKey::DestinationNamespace => f.write_str("destination.namespace"),
            GroupKey::SourceName => f.write_str("source.name"),
            GroupKey::DestinationName => f.write_str("destination.name"),
            GroupKey::Node => f.write_str("node"),
            GroupKey::Port => f.write_str("port"),
            GroupKey::Protocol => f.write_str("protocol"),
            GroupKey::Verdict => f.write_str("verdict"),
            GroupKey::Direction => f.write_str("direction"),
            GroupKey::Service => f.write_str("service"),
        }
    }
}

impl FromStr for GroupKey {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Self, QueryError> {
        let fail = |reason: String| QueryError::GroupKey {
            input: s.to_string(),
            reason,
        };
        let t = s.trim();
        Ok(match t {
            "source.namespace" => GroupKey::SourceNamespace,
            "destination.namespace" => GroupKey::DestinationNamespace,
            "source.name" => GroupKey::SourceName,
            "destination.name" => GroupKey::DestinationName,
            "node" => GroupKey::Node,
            "port" => GroupKey::Port,
            "protocol" => GroupKey::Protocol,
            "verdict" => GroupKey::Verdict,
            "direction" => GroupKey::Direction,
            "service" => GroupKey::Service,
            _ => {
                if let Some(k) = t.strip_prefix("source.") {
                    GroupKey::SourceLabel(label_key(k).map_err(fail)?)
                } else if let Some(k) = t.strip_prefix("destination.") {
                    GroupKey::DestinationLabel(label_key(k).map_err(fail)?)
                } else {
                    return Err(fail(
                        "expected source.<label key>, destination.<label key>, \
                         source.namespace, destination.namespace, source.name, \
                         destination.name, node, port, protocol, verdict, direction or service"
                            .into(),
                    ));
                }
            }
        })
    }
}

impl TryFrom<String> for GroupKey {
    type Error = QueryError;
    fn try_from(s: String) -> Result<Self, QueryError> {
        s.parse()
    }
}

impl From<GroupKey> for String {
    fn from(k: GroupKey) -> String {
        k.to_string()
    }
}

/// The keys of a group-by, in order (`source.app,destination.app,port`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupBy(pub Vec<GroupKey>);

impl GroupBy {
    /// Parses a comma-separated list; refuses an empty one and repeated keys.
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        let mut keys = Vec::new();
        for part in s.split(',') {
            let key: GroupKey = part.parse()?;
            if keys.contains(&key) {
                return Err(QueryError::GroupKey {
                    input: part.to_string(),
                    reason: "repeated".into(),
                });
            }
            keys.push(key);
        }
        Ok(GroupBy(keys))
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// One group: its key values (in [`GroupBy`] order, `None` where a record
/// had no value), the counters summed over the records that count
/// ([`FlowRecord::counts`]), and how many distinct (source address,
/// destination address) pairs talked in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub key: Vec<Option<String>>,
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
    pub peers: u64,
}

impl Group {
    /// The order every aggregate answers in: most bytes first, then by key.
    pub fn sort(groups: &mut [Group]) {
        groups.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.key.cmp(&b.key)));
    }
}

/// Sums records per group, counting each two-sided flow once.
pub fn aggregate<'a>(
    records: impl IntoIterator<Item = &'a FlowRecord>,
    by: &GroupBy,
) -> Vec<Group> {
    type Acc = (u64, u64, u64, BTreeSet<(IpAddr, IpAddr)>);
    let mut acc: BTreeMap<Vec<Option<String>>, Acc> = BTreeMap::new();
    for r in records.into_iter().filter(|r| r.counts()) {
        let key: Vec<Option<String>> = by.0.iter().map(|k| k.value(r)).collect();
        let e = acc.entry(key).or_default();
        e.0 = e.0.saturating_add(r.flows);
        e.1 = e.1.saturating_add(r.packets);
        e.2 = e.2.saturating_add(r.bytes);
        e.3.insert(pair(&r.source, &r.destination));
    }
    let mut groups: Vec<Group> = acc
        .into_iter()
        .map(|(key, (flows, packets, bytes, peers))| Group {
            key,
            flows,
            packets,
            bytes,
            peers: peers.len() as u64,
        })
        .collect();
    Group::sort(&mut groups);
    groups
}

fn pair(src: &FlowEndpoint, dst: &FlowEndpoint) -> (IpAddr, IpAddr) {
    (src.address, dst.address)
}

#[cfg(test)]
mod tests {
    use bulkhead_api::flow::FlowVerdict;
    use bulkhead_api::rule_map::Direction;

    use super::super::filter::tests::record;
    use super::*;

    #[test]
    fn keys_parse_and_print() {
        let cases = [
            ("source.app", GroupKey::SourceLabel("app".into())),
            (
                "destination.bulkhead.dev/role",
                GroupKey::DestinationLabel("bulkhead.dev/role".into()),
            ),
            ("source.namespace", GroupKey::SourceNamespace),
            ("destination.namespace", GroupKey::DestinationNamespace),
            ("source.name", GroupKey::SourceName),
            ("destination.name", GroupKey::DestinationName),
            ("node", GroupKey::Node),
            ("port", GroupKey::Port),
            ("protocol", GroupKey::Protocol),
            ("verdict", GroupKey::Verdict),
            ("direction", GroupKey::Direction),
            ("service", GroupKey::Service),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<GroupKey>(), Ok(want.clone()), "{s}");
            assert_eq!(want.to_string(), s);
        }
        let bad = [
            ("app", "expected source.<label key>"),
            ("source.", "label key"),
            ("source.bad key", "label key"),
            ("dest.app", "expected source."),
        ];
        for (s, reason) in bad {
            let e = s.parse::<GroupKey>().expect_err(s).to_string();
            assert!(
                e.contains(reason) && e.contains(&format!("{s:?}")),
                "{s}: {e}"
            );
        }
        assert!(GroupBy::parse("port,port").is_err());
        assert_eq!(
            GroupBy::parse("source.app,destination.app,port").map(|g| g.to_string()),
            Ok("source.app,destination.app,port".to_string())
        );
    }

    #[test]
    fn sums_counting_records_once() {
        let a = record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432);
        // The destination's view of the same flow: must not count.
        let mut a_ingress = a.clone();
        a_ingress.direction = Direction::Ingress;
        a_ingress.node = "n2".into();
        let mut b = record(("10.0.0.5", "web"), ("10.0.0.2", "db"), 5432);
        b.bytes = 5000;
        let mut c = record(("10.0.0.1", "web"), ("10.0.0.3", "cache"), 6379);
        c.would_verdict = FlowVerdict::Deny;
        // An unmanaged source: only the ingress view exists, and it counts.
        let mut d = record(("192.0.2.9", "web"), ("10.0.0.2", "db"), 5432);
        d.source.reported = false;
        d.source.labels.clear();
        d.direction = Direction::Ingress;
        let records = [a, a_ingress, b, c, d];

        type Row<'a> = (Vec<Option<&'a str>>, u64, u64, u64);
        let cases: Vec<(&str, Vec<Row>)> = vec![
            (
                "source.app,destination.app",
                vec![
                    (vec![Some("web"), Some("db")], 2, 6000, 2),
                    (vec![None, Some("db")], 1, 1000, 1),
                    (vec![Some("web"), Some("cache")], 1, 1000, 1),
                ],
            ),
            (
                "verdict",
                vec![
                    (vec![Some("allow")], 3, 7000, 3),
                    (vec![Some("would-deny")], 1, 1000, 1),
                ],
            ),
            (
                "direction,port",
                vec![
                    (vec![Some("egress"), Some("5432")], 2, 6000, 2),
                    (vec![Some("egress"), Some("6379")], 1, 1000, 1),
                    (vec![Some("ingress"), Some("5432")], 1, 1000, 1),
                ],
            ),
            ("protocol", vec![(vec![Some("TCP")], 4, 8000, 4)]),
        ];
        for (by, want) in cases {
            let got = aggregate(&records, &GroupBy::parse(by).expect(by));
            let got: Vec<_> = got
                .iter()
                .map(|g| {
                    (
                        g.key.iter().map(|v| v.as_deref()).collect::<Vec<_>>(),
                        g.flows,
                        g.bytes,
                        g.peers,
                    )
                })
                .collect();
            assert_eq!(got, want, "{by}");
        }
    }

    #[test]
    fn groups_by_service_name_or_address() {
        let via = |ns: Option<&str>, vip: &str, src: &str, bytes: u64| {
            let mut r = record((src, "web"), ("10.0.0.2", "db"), 5432);
            r.bytes = bytes;
            r.service = Some(bulkhead_api::flow::ServiceAddress {
                address: vip.parse().expect("ip"),
                port: 5432,
                namespace: ns.map(str::to_string),
                name: ns.map(|_| "db".to_string()),
                port_name: None,
            });
            r
        };
        let records = [
            // One Service, by two of its addresses (ClusterIP, externalIP).
            via(Some("shop"), "10.96.0.10", "10.0.0.1", 100),
            via(Some("shop"), "192.0.2.7", "10.0.0.5", 50),
            via(Some("lab"), "10.96.0.20", "10.0.0.1", 10),
            via(None, "10.96.0.30", "10.0.0.1", 7),
            record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432),
        ];
        let got: Vec<(Option<String>, u64, u64)> =
            aggregate(&records, &GroupBy::parse("service").expect("by"))
                .into_iter()
                .map(|g| (g.key[0].clone(), g.bytes, g.peers))
                .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            got,
            vec![
                (None, 1000, 1),
                (s("shop/db"), 150, 2),
                (s("lab/db"), 10, 1),
                (s("10.96.0.30"), 7, 1),
            ]
        );
    }

    #[test]
    fn peers_are_distinct_pairs() {
        let a = record(("10.0.0.1", "web"), ("10.0.0.2", "db"), 5432);
        let mut later = a.clone();
        later.start = "2026-01-01T11:00:00Z".parse().expect("ts");
        let groups = aggregate([&a, &later], &GroupBy::parse("port").expect("by"));
        assert_eq!(groups.len(), 1);
        assert_eq!((groups[0].flows, groups[0].peers), (2, 1));
    }
}
