//! Numbers to names: what the agent already watches (its NodeRuleMap and the
//! IdentityMap shards) turns a [`RawEdge`] into a `flow/v1` record.
//!
//! An identity number stands for one label set for as long as it exists, so
//! the labels looked up at the end of a window are the labels the flow
//! carried when it was seen.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use bulkhead_api::flow::{
    EndpointKind, FlowEndpoint, FlowReason, FlowRecord, FlowVerdict, RuleRef, ServiceAddress,
    SCHEMA,
};
use bulkhead_api::identity;
use bulkhead_api::policy::{EnforcementMode, Protocol};
use bulkhead_api::rule_map::{Direction, NodeKind, NodeRuleMapSpec};
use bulkhead_api::IdentityMapSpec;
use ipnet::IpNet;

use super::aggregate::{
    EdgeCounts, RawEdge, REASON_FAILSAFE, REASON_POLICY, REASON_REEVALUATED, REASON_SPOOFED,
};
use crate::layout;

#[derive(Clone, Debug)]
struct Owner {
    kind: EndpointKind,
    name: String,
    namespace: Option<String>,
    reported: bool,
}

/// Everything needed to name both sides of a flow on this node.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    node: String,
    node_kind: NodeKind,
    labels: HashMap<u32, BTreeMap<String, String>>,
    /// Exact addresses (host prefixes), then wider prefixes longest first.
    hosts: HashMap<IpAddr, Owner>,
    ranges: Vec<(IpNet, Owner)>,
    local: HashMap<IpAddr, Owner>,
    /// Pod interfaces (host-side ifindex) → the pod behind them: who sent a
    /// spoofed packet, whatever address it claimed.
    interfaces: HashMap<u32, Owner>,
    rules: HashMap<u32, (String, String)>,
}

fn owner_of(owner: &str) -> Owner {
    let (kind, name, reported) = if let Some(n) = owner.strip_prefix("node/") {
        (EndpointKind::Node, n, true)
    } else if let Some(n) = owner.strip_prefix("externalnode/") {
        (EndpointKind::ExternalNode, n, true)
    } else if let Some(n) = owner.strip_prefix("cidr/") {
        (EndpointKind::Cidr, n, false)
    } else {
        (EndpointKind::Pod, owner, true)
    };
    let namespace = (kind == EndpointKind::Pod)
        .then(|| name.split_once('/').map(|(ns, _)| ns.to_string()))
        .flatten();
    Owner {
        kind,
        name: name.to_string(),
        namespace,
        reported,
    }
}

impl Resolver {
    /// Names by the rule map and shards, and pod interfaces by this
    /// namespace's host routes (as the datapath binds them).
    pub fn new(node: &str, rule_map: &NodeRuleMapSpec, shards: &[IdentityMapSpec]) -> Self {
        Self::with_routes(
            node,
            rule_map,
            shards,
            &crate::desired::interfaces::read_host_routes(),
        )
    }

    /// [`new`](Self::new) with the routes given (endpoint key → ifindex).
    pub fn with_routes(
        node: &str,
        rule_map: &NodeRuleMapSpec,
        shards: &[IdentityMapSpec],
        routes: &HashMap<layout::EndpointKey, u32>,
    ) -> Self {
        let mut r = Resolver {
            node: node.to_string(),
            node_kind: rule_map.node_kind,
            ..Resolver::default()
        };
        for shard in shards {
            for entry in &shard.identities {
                let labels: BTreeMap<String, String> = entry
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                r.labels.insert(entry.id, labels);
            }
            for prefix in &shard.prefixes {
                let Ok(net) = prefix.cidr.parse::<IpNet>() else {
                    continue;
                };
                let owner = prefix.owner.as_deref().map_or_else(
                    || Owner {
                        kind: EndpointKind::Cidr,
                        name: net.to_string(),
                        namespace: None,
                        reported: false,
                    },
                    owner_of,
                );
                if net.prefix_len() == net.max_prefix_len() {
                    r.hosts.insert(net.addr(), owner);
                } else {
                    r.ranges.push((net, owner));
                }
            }
        }
        r.ranges
            .sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        let host_kind = match rule_map.node_kind {
            NodeKind::Node => EndpointKind::Node,
            NodeKind::ExternalNode => EndpointKind::ExternalNode,
        };
        for a in &rule_map.host.addresses {
            if let Ok(addr) = a.parse::<IpAddr>() {
                r.local.insert(
                    addr,
                    Owner {
                        kind: host_kind,
                        name: rule_map.host.name.clone(),
                        namespace: None,
                        reported: true,
                    },
                );
            }
        }
        for ep in &rule_map.endpoints {
            for a in &ep.addresses {
                let Ok(addr) = crate::desired::addresses::parse_host_address(a) else {
                    continue;
                };
                r.local.insert(addr, owner_of(&ep.name));
                let (family, bytes) = crate::desired::addresses::address_bytes(addr);
                let key = layout::EndpointKey {
                    family,
                    pad: [0; 3],
                    addr: bytes,
                };
                if let Some(ifindex) = routes.get(&key) {
                    r.interfaces.insert(*ifindex, owner_of(&ep.name));
                }
            }
        }
        for rule in &rule_map.rules {
            r.rules
                .insert(rule.id, (rule.policy.clone(), rule.rule.clone()));
        }
        r
    }

    fn owner(&self, addr: IpAddr) -> Option<&Owner> {
        self.local
            .get(&addr)
            .or_else(|| self.hosts.get(&addr))
            .or_else(|| {
                self.ranges
                    .iter()
                    .find(|(net, _)| net.contains(&addr))
                    .map(|(_, o)| o)
            })
    }

    fn side(&self, addr: IpAddr, identity: u32, local: bool) -> FlowEndpoint {
        let owner = self.owner(addr);
        let kind = match (owner, identity) {
            (Some(o), _) => o.kind,
            (None, identity::HOST) => match self.node_kind {
                NodeKind::Node => EndpointKind::Node,
                NodeKind::ExternalNode => EndpointKind::ExternalNode,
            },
            (None, identity::REMOTE_NODE) => EndpointKind::Node,
            (None, _) => EndpointKind::World,
        };
        let name = owner
            .map(|o| o.name.clone())
            .or_else(|| (identity == identity::HOST).then(|| self.node.clone()));
        FlowEndpoint {
            address: addr,
            identity,
            labels: self.labels.get(&identity).cloned().unwrap_or_default(),
            kind,
            name,
            namespace: owner.and_then(|o| o.namespace.clone()),
            reported: local || owner.is_some_and(|o| o.reported),
        }
    }

    /// The sender of a spoofed packet: the pod behind the interface it came
    /// from (egress), or an unknown one (a host interface: ingress); the
    /// address stays the forged one.
    fn spoofed_source(&self, edge: &RawEdge) -> FlowEndpoint {
        let sender = (edge.direction == layout::DIR_EGRESS)
            .then(|| self.interfaces.get(&edge.ifindex))
            .flatten();
        let identity = if edge.direction == layout::DIR_EGRESS {
            edge.local_identity
        } else {
            identity::WORLD
        };
        FlowEndpoint {
            address: edge.src,
            identity,
            labels: self.labels.get(&identity).cloned().unwrap_or_default(),
            kind: sender.map_or(EndpointKind::World, |o| o.kind),
            name: sender.map(|o| o.name.clone()),
            namespace: sender.and_then(|o| o.namespace.clone()),
            reported: edge.direction == layout::DIR_EGRESS,
        }
    }

    /// The `flow/v1` record of one edge in the window `[start, end)`;
    /// `None` for a protocol `flow/v1` cannot name.
    pub fn record(
        &self,
        edge: &RawEdge,
        counts: &EdgeCounts,
        start: jiff::Timestamp,
        end: jiff::Timestamp,
    ) -> Option<FlowRecord> {
        let protocol = match edge.protocol {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            1 => Protocol::Icmp,
            58 => Protocol::Icmpv6,
            _ => return None,
        };
        let egress = edge.direction == layout::DIR_EGRESS;
        let (src_id, dst_id) = if egress {
            (edge.local_identity, edge.peer_identity)
        } else {
            (edge.peer_identity, edge.local_identity)
        };
        let verdict = |v: u8| {
            if v == layout::VERDICT_DENY {
                FlowVerdict::Deny
            } else {
                FlowVerdict::Allow
            }
        };
        let spoofed = edge.reason == REASON_SPOOFED;
        let source = if spoofed {
            self.spoofed_source(edge)
        } else {
            self.side(edge.src, src_id, egress)
        };
        Some(FlowRecord {
            schema: SCHEMA.to_string(),
            start,
            end,
            node: self.node.clone(),
            source,
            destination: self.side(edge.dst, dst_id, !egress),
            port: edge.port,
            protocol,
            direction: if egress {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            verdict: verdict(edge.verdict),
            would_verdict: verdict(edge.would_verdict),
            mode: match edge.mode {
                layout::MODE_FULL => EnforcementMode::Full,
                layout::MODE_SELECTIVE => EnforcementMode::Selective,
                _ => EnforcementMode::Visibility,
            },
            reason: match edge.reason {
                REASON_POLICY => FlowReason::Policy,
                REASON_FAILSAFE => FlowReason::Failsafe,
                REASON_REEVALUATED => FlowReason::Reevaluated,
                REASON_SPOOFED => FlowReason::Spoofed,
                layout::REASON_UNRELATED => FlowReason::Unrelated,
                layout::REASON_CT_FULL => FlowReason::TableFull,
                _ => FlowReason::Default,
            },
            rule: (edge.rule_id != 0).then(|| {
                let (policy, name) = self
                    .rules
                    .get(&edge.rule_id)
                    .cloned()
                    .unwrap_or_else(|| (String::new(), format!("rule {}", edge.rule_id)));
                RuleRef {
                    policy,
                    name,
                    id: edge.rule_id,
                }
            }),
            flows: counts.flows,
            packets: counts.packets,
            bytes: counts.bytes,
            service: edge.service.map(|(address, port)| ServiceAddress {
                address,
                port,
                namespace: None,
                name: None,
                port_name: None,
            }),
            source_hidden_by_snat: edge.snat_hidden,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Resolver {
        let rule_map: NodeRuleMapSpec = serde_yaml::from_str(
            r#"
nodeKind: Node
host: {name: node-1, identity: 500, mode: full, addresses: [10.0.0.1]}
endpoints:
  - {name: shop/web, identity: 1000, mode: full, addresses: [10.1.0.5]}
rules:
  - {id: 3, policy: web-out, rule: to-db, direction: egress, action: allow, subjects: [1000], peers: [1001]}
"#,
        )
        .expect("rule map");
        let shard: IdentityMapSpec = serde_yaml::from_str(
            r#"
shard: 0
shards: 1
identities:
  - {id: 1000, labels: {app: web, env: prod}}
  - {id: 1001, labels: {app: db, env: prod}}
  - {id: 3000, labels: {bulkhead.dev/cidr: "192.168.0.0/16", zone: dmz}}
prefixes:
  - {cidr: 10.1.0.5/32, identity: 1000, owner: shop/web}
  - {cidr: 10.2.0.7/32, identity: 1001, owner: shop/db}
  - {cidr: 192.168.0.0/16, identity: 3000, owner: cidr/192.168.0.0/16}
"#,
        )
        .expect("shard");
        let routes = [("10.1.0.5", 41)]
            .into_iter()
            .map(|(a, i)| {
                let (family, addr) =
                    crate::desired::addresses::address_bytes(a.parse().expect("ip"));
                (
                    layout::EndpointKey {
                        family,
                        pad: [0; 3],
                        addr,
                    },
                    i,
                )
            })
            .collect();
        Resolver::with_routes("node-1", &rule_map, &[shard], &routes)
    }

    fn edge(dst: &str, peer: u32, direction: u8, rule_id: u32) -> RawEdge {
        RawEdge {
            src: "10.1.0.5".parse().expect("ip"),
            dst: dst.parse().expect("ip"),
            port: 5432,
            protocol: 6,
            direction,
            local_identity: 1000,
            peer_identity: peer,
            rule_id,
            verdict: layout::VERDICT_ALLOW,
            would_verdict: layout::VERDICT_ALLOW,
            mode: layout::MODE_FULL,
            reason: REASON_POLICY,
            ifindex: 0,
            service: None,
            snat_hidden: false,
        }
    }

    #[test]
    fn both_sides_get_names_labels_and_the_rule_by_name() {
        let r = fixture();
        let counts = EdgeCounts {
            flows: 2,
            packets: 10,
            bytes: 900,
        };
        let t = jiff::Timestamp::UNIX_EPOCH;
        let rec = r
            .record(
                &edge("10.2.0.7", 1001, layout::DIR_EGRESS, 3),
                &counts,
                t,
                t,
            )
            .expect("record");
        assert_eq!(rec.source.name.as_deref(), Some("shop/web"));
        assert_eq!(rec.source.namespace.as_deref(), Some("shop"));
        assert_eq!(rec.source.labels["app"], "web");
        assert_eq!(rec.destination.name.as_deref(), Some("shop/db"));
        assert_eq!(rec.destination.kind, EndpointKind::Pod);
        assert!(rec.destination.reported, "a remote pod has an agent too");
        let rule = rec.rule.clone().expect("rule");
        assert_eq!(
            (rule.policy.as_str(), rule.name.as_str()),
            ("web-out", "to-db")
        );
        assert!(rec.counts());
        assert!(!rec.source_hidden_by_snat);
    }

    #[test]
    fn a_masqueraded_client_is_reported_as_hidden_not_as_the_node() {
        let r = fixture();
        let counts = EdgeCounts {
            flows: 1,
            packets: 1,
            bytes: 60,
        };
        let t = jiff::Timestamp::UNIX_EPOCH;
        // node-1 (10.0.0.1) masqueraded an outside client to shop/web.
        let mut hidden = edge("10.1.0.5", 500, layout::DIR_INGRESS, 0);
        hidden.src = "10.0.0.1".parse().expect("ip");
        hidden.snat_hidden = true;
        let rec = r.record(&hidden, &counts, t, t).expect("record");
        assert!(rec.source_hidden_by_snat);
        let json = serde_json::to_value(&rec).expect("json");
        assert_eq!(json["sourceHiddenBySnat"], true);
        hidden.snat_hidden = false;
        let own = r.record(&hidden, &counts, t, t).expect("record");
        let json = serde_json::to_value(&own).expect("json");
        assert!(
            json.get("sourceHiddenBySnat").is_none(),
            "absent unless hidden: {json}"
        );
    }

    #[test]
    fn cidrs_world_and_the_host_are_named_as_what_they_are() {
        let r = fixture();
        let c = EdgeCounts::default();
        let t = jiff::Timestamp::UNIX_EPOCH;
        let cidr = r
            .record(&edge("192.168.4.4", 3000, layout::DIR_EGRESS, 0), &c, t, t)
            .expect("record");
        assert_eq!(cidr.destination.kind, EndpointKind::Cidr);
        assert_eq!(cidr.destination.name.as_deref(), Some("192.168.0.0/16"));
        assert_eq!(cidr.destination.labels["zone"], "dmz");
        assert!(!cidr.destination.reported);
        assert!(cidr.rule.is_none());
        let world = r
            .record(
                &edge("8.8.8.8", identity::WORLD, layout::DIR_EGRESS, 0),
                &c,
                t,
                t,
            )
            .expect("record");
        assert_eq!(
            (world.destination.kind, world.destination.name.clone()),
            (EndpointKind::World, None)
        );
        let host = r
            .record(
                &edge("10.0.0.1", identity::HOST, layout::DIR_EGRESS, 0),
                &c,
                t,
                t,
            )
            .expect("record");
        assert_eq!(host.destination.kind, EndpointKind::Node);
        assert_eq!(host.destination.name.as_deref(), Some("node-1"));
        // Ingress from world: the destination (local) is reported, the source is not.
        let mut inbound = edge("10.1.0.5", identity::WORLD, layout::DIR_INGRESS, 0);
        inbound.src = "8.8.8.8".parse().expect("ip");
        let rec = r.record(&inbound, &c, t, t).expect("record");
        assert_eq!(rec.source.identity, identity::WORLD);
        assert_eq!(rec.destination.identity, 1000);
        assert!(rec.counts(), "the only view of a flow from outside");
    }

    /// GHSA-pfhr-pccp-hwmh: a packet forged to come from shop/db is logged
    /// as spoofed from the pod whose interface sent it, never as shop/db.
    #[test]
    fn spoofed_packets_are_named_by_their_interface_not_their_address() {
        let r = fixture();
        let c = EdgeCounts::default();
        let t = jiff::Timestamp::UNIX_EPOCH;
        let mut forged = edge("10.2.0.9", identity::WORLD, layout::DIR_EGRESS, 0);
        forged.src = "10.2.0.7".parse().expect("ip");
        forged.reason = REASON_SPOOFED;
        forged.verdict = layout::VERDICT_DENY;
        forged.ifindex = 41;
        let rec = r.record(&forged, &c, t, t).expect("record");
        assert_eq!(rec.reason, FlowReason::Spoofed);
        assert_eq!(rec.verdict, FlowVerdict::Deny);
        assert_eq!(rec.source.name.as_deref(), Some("shop/web"));
        assert_eq!(rec.source.identity, 1000);
        assert_eq!(rec.source.labels["app"], "web");
        assert_eq!(
            rec.source.address,
            "10.2.0.7".parse::<IpAddr>().expect("ip")
        );
        // An interface the agent never bound: the sender is unnamed.
        forged.ifindex = 99;
        let rec = r.record(&forged, &c, t, t).expect("record");
        assert_eq!(
            (rec.source.name, rec.source.kind),
            (None, EndpointKind::World)
        );
        // On a host interface: an unknown sender claiming a pod's address.
        let mut inbound = edge("10.0.0.1", identity::WORLD, layout::DIR_INGRESS, 0);
        inbound.src = "10.1.0.5".parse().expect("ip");
        inbound.reason = REASON_SPOOFED;
        let rec = r.record(&inbound, &c, t, t).expect("record");
        assert_eq!(rec.source.identity, identity::WORLD);
        assert_eq!(rec.source.name, None);
    }
}
