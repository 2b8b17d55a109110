//! Per-connection events into per-edge counts (pure: unit-tested on made-up events).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::layout::{self, FlowEvent};

/// Event kinds (`BH_EVENT_*`).
pub const EVENT_NEW: u8 = 1;
pub const EVENT_DENY: u8 = 2;
pub const EVENT_WOULD_DENY: u8 = 3;
pub const EVENT_REEVAL_DENY: u8 = 4;
pub const EVENT_REPORT: u8 = 5;

/// `flow_event.reason` values, plus one of the agent's own for flows that a
/// re-evaluation cut (the datapath says "policy" or "default" there).
pub const REASON_POLICY: u8 = 0;
pub const REASON_DEFAULT: u8 = 1;
pub const REASON_FAILSAFE: u8 = 2;
pub const REASON_REEVALUATED: u8 = 3;
pub const REASON_SPOOFED: u8 = layout::REASON_SPOOFED;

/// A denied tuple quiet this long counts as a new attempt when it returns.
const DENIED_TUPLE_IDLE_NS: u64 = 60_000_000_000;
/// Denied tuples remembered at most (a port scan must not grow the agent).
const DENIED_TUPLES_MAX: usize = 262_144;

/// One edge as the datapath knows it: numbers only, no names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawEdge {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Destination port, or the ICMP type.
    pub port: u16,
    pub protocol: u8,
    /// `BH_DIR_*` relative to the local endpoint.
    pub direction: u8,
    pub local_identity: u32,
    pub peer_identity: u32,
    pub rule_id: u32,
    pub verdict: u8,
    pub would_verdict: u8,
    pub mode: u8,
    pub reason: u8,
    /// The interface a spoofed packet came from (its sender); 0 otherwise,
    /// so that other edges do not split by interface.
    pub ifindex: u32,
    /// The Service address and port the client sent to, when kube-proxy
    /// translated it to `dst` on this node (see [`ServiceTuples`]).
    pub service: Option<(IpAddr, u16)>,
    /// The source is the node masquerading a client (`BH_FLOW_F_SNAT_HIDDEN`):
    /// never merged with the node's own flows to the same place.
    pub snat_hidden: bool,
}

/// The flows this node's pods sent to a Service address, by the client's
/// side of the tuple (address, port, protocol), which DNAT leaves alone:
/// the VIA_SERVICE conntrack entries (bpf/lib/service.h). The event judged
/// on the backend carries the same client side, so it finds the address
/// that was asked for here.
pub type ServiceTuples = HashMap<(IpAddr, u16, u8), (IpAddr, u16)>;

/// What one edge did in one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EdgeCounts {
    pub flows: u64,
    pub packets: u64,
    pub bytes: u64,
}

/// A flow instance: the conntrack entry's tuple, direction and creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Instance {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    port: u16,
    protocol: u8,
    direction: u8,
    created_ns: u64,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    packets: u64,
    bytes: u64,
    last_ns: u64,
}

/// Accumulates events; [`drain`](Self::drain) hands out one window.
#[derive(Debug, Default)]
pub struct FlowAggregator {
    edges: BTreeMap<RawEdge, EdgeCounts>,
    live: HashMap<Instance, Seen>,
    /// Denied tuples seen lately (last packet time): a retransmitted SYN or
    /// a retried datagram is one flow attempt, in whichever window it falls.
    denied_tuples: HashMap<(RawEdge, u16), u64>,
    events: u64,
    /// The newest event's timestamp: the datapath's clock as last heard.
    newest_ns: u64,
    /// This node's flows to Service addresses, as last read.
    service_tuples: ServiceTuples,
}

fn address(family: u8, bytes: [u8; 16]) -> IpAddr {
    if family == layout::FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    }
}

impl FlowAggregator {
    /// Replaces what is known of flows sent to Service addresses; read
    /// before the events they explain.
    pub fn set_service_tuples(&mut self, tuples: ServiceTuples) {
        self.service_tuples = tuples;
    }

    /// Whether `e` is of a flow sent to a Service that the tuples last read
    /// do not name: only then is conntrack worth walking.
    pub fn needs_service_tuples(&self, e: &FlowEvent) -> bool {
        e.flags & layout::FLOW_F_TO_SERVICE != 0 && self.service_of(e).is_none()
    }

    /// The Service address `e`'s flow was sent to, by its client side, when
    /// the datapath flagged it as sent to a Service and the tuples name it.
    fn service_of(&self, e: &FlowEvent) -> Option<(IpAddr, u16)> {
        if e.flags & layout::FLOW_F_TO_SERVICE == 0 {
            return None;
        }
        let client = (
            address(e.family, e.saddr),
            u16::from_be(e.sport_be),
            e.protocol,
        );
        self.service_tuples.get(&client).copied()
    }

    pub fn add(&mut self, e: &FlowEvent) {
        self.events += 1;
        self.newest_ns = self.newest_ns.max(e.timestamp_ns);
        let (src, dst) = (address(e.family, e.saddr), address(e.family, e.daddr));
        let (sport, port) = (u16::from_be(e.sport_be), u16::from_be(e.dport_be));
        let edge = RawEdge {
            src,
            dst,
            port,
            protocol: e.protocol,
            direction: e.direction,
            local_identity: e.local_identity,
            peer_identity: e.peer_identity,
            rule_id: e.rule_id,
            verdict: e.verdict,
            would_verdict: e.would_verdict,
            mode: e.mode,
            reason: if e.event == EVENT_REEVAL_DENY {
                REASON_REEVALUATED
            } else {
                e.reason
            },
            ifindex: if e.reason == REASON_SPOOFED {
                e.ifindex
            } else {
                0
            },
            service: self.service_of(e),
            snat_hidden: e.flags & layout::FLOW_F_SNAT_HIDDEN != 0,
        };
        if e.event == EVENT_DENY {
            let counts = self.edges.entry(edge).or_default();
            let previous = self.denied_tuples.insert((edge, sport), e.timestamp_ns);
            let retry = previous.is_some_and(|last| {
                e.timestamp_ns <= last || e.timestamp_ns - last <= DENIED_TUPLE_IDLE_NS
            });
            if !retry {
                counts.flows += 1;
            }
            counts.packets += e.packets;
            counts.bytes += e.bytes;
            return;
        }
        let instance = Instance {
            src,
            dst,
            sport,
            port,
            protocol: e.protocol,
            direction: e.direction,
            created_ns: e.flow_ns,
        };
        let previous = self.live.get(&instance).copied();
        let counts = self.edges.entry(edge).or_default();
        let (dp, db) = match previous {
            Some(p) => (
                e.packets.saturating_sub(p.packets),
                e.bytes.saturating_sub(p.bytes),
            ),
            None => {
                // The first event of this instance that reached us: its
                // opening event (NEW, WOULD_DENY), or a REPORT or
                // REEVAL_DENY whose opening event was lost.
                counts.flows += 1;
                (e.packets, e.bytes)
            }
        };
        counts.packets += dp;
        counts.bytes += db;
        if e.event == EVENT_REEVAL_DENY {
            self.live.remove(&instance);
            return;
        }
        let seen = self.live.entry(instance).or_insert(Seen {
            packets: 0,
            bytes: 0,
            last_ns: 0,
        });
        seen.packets = seen.packets.max(e.packets);
        seen.bytes = seen.bytes.max(e.bytes);
        seen.last_ns = seen.last_ns.max(e.timestamp_ns);
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Events taken in since the aggregator was made.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Flow instances being followed (each a live conntrack entry).
    pub fn live_flows(&self) -> usize {
        self.live.len()
    }

    /// This window's edges, emptying it. Flow instances not heard from for
    /// `idle_ns` before the newest event are forgotten: their conntrack
    /// entries have expired.
    pub fn drain(&mut self, idle_ns: u64) -> Vec<(RawEdge, EdgeCounts)> {
        let now_ns = self.newest_ns;
        let fresh = |last: u64| now_ns <= last || now_ns - last <= DENIED_TUPLE_IDLE_NS;
        self.denied_tuples.retain(|_, last| fresh(*last));
        if self.denied_tuples.len() > DENIED_TUPLES_MAX {
            // A scan or a flood: forget rather than grow; retries of these
            // tuples may then count as new attempts.
            self.denied_tuples.clear();
        }
        self.live
            .retain(|_, s| now_ns <= s.last_ns || now_ns - s.last_ns <= idle_ns);
        std::mem::take(&mut self.edges).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u8, sport: u16, packets: u64, bytes: u64, flow_ns: u64) -> FlowEvent {
        let mut e = FlowEvent {
            family: layout::FAMILY_V4,
            protocol: 6,
            direction: 1,
            event: kind,
            local_identity: 1000,
            peer_identity: 1001,
            rule_id: 7,
            verdict: 1,
            would_verdict: 1,
            mode: 2,
            packets,
            bytes,
            flow_ns,
            timestamp_ns: flow_ns + packets,
            sport_be: sport.to_be(),
            dport_be: 8080u16.to_be(),
            ..FlowEvent::default()
        };
        e.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        e.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        e
    }

    fn only(agg: &mut FlowAggregator) -> EdgeCounts {
        let edges = agg.drain(u64::MAX);
        assert_eq!(edges.len(), 1, "{edges:?}");
        edges[0].1
    }

    #[test]
    fn a_flow_sent_to_a_service_address_carries_it_beside_the_backend() {
        let mut agg = FlowAggregator::default();
        let vip: IpAddr = "10.96.0.10".parse().expect("address");
        let client: IpAddr = "10.0.0.1".parse().expect("address");
        let mut to_service = event(EVENT_NEW, 40000, 1, 60, 100);
        to_service.flags = layout::FLOW_F_TO_SERVICE;
        let direct = event(EVENT_NEW, 40001, 1, 60, 200);
        assert!(agg.needs_service_tuples(&to_service));
        assert!(
            !agg.needs_service_tuples(&direct),
            "a direct flow walks nothing"
        );
        agg.set_service_tuples(ServiceTuples::from([((client, 40000, 6), (vip, 80))]));
        assert!(!agg.needs_service_tuples(&to_service), "already named");
        agg.add(&to_service);
        agg.add(&direct);
        // A direct flow on a tuple the tuples still hold (a reused port) is
        // not named after the Service.
        agg.add(&event(EVENT_NEW, 40000, 1, 60, 300));
        let edges = agg.drain(u64::MAX);
        let services: Vec<_> = edges.iter().map(|(e, c)| (e.service, c.flows)).collect();
        // Same backend, same port: one edge through the Service, one direct.
        assert_eq!(services, vec![(None, 2), (Some((vip, 80)), 1)]);
        assert!(edges
            .iter()
            .all(|(e, _)| e.dst == "10.0.0.2".parse::<IpAddr>().expect("address")));
    }

    #[test]
    fn a_masqueraded_client_is_never_merged_with_the_node_itself() {
        let mut agg = FlowAggregator::default();
        // The node's own connection (a probe) and one it masqueraded for an
        // outside client: same addresses, same port.
        agg.add(&event(EVENT_NEW, 40000, 1, 60, 100));
        let mut hidden = event(EVENT_NEW, 40001, 1, 60, 200);
        hidden.flags = layout::FLOW_F_SNAT_HIDDEN;
        agg.add(&hidden);
        let edges = agg.drain(u64::MAX);
        let seen: Vec<_> = edges
            .iter()
            .map(|(e, c)| (e.snat_hidden, c.flows))
            .collect();
        assert_eq!(seen, vec![(false, 1), (true, 1)]);
    }

    #[test]
    fn two_connections_from_two_ephemeral_ports_are_one_edge() {
        let mut agg = FlowAggregator::default();
        agg.add(&event(EVENT_NEW, 40000, 1, 60, 100));
        agg.add(&event(EVENT_NEW, 40001, 1, 60, 200));
        agg.add(&event(EVENT_REPORT, 40000, 10, 1000, 100));
        let c = only(&mut agg);
        assert_eq!((c.flows, c.packets, c.bytes), (2, 11, 1060));
    }

    #[test]
    fn reports_are_cumulative_so_duplicates_and_losses_neither_double_nor_drop() {
        let mut agg = FlowAggregator::default();
        agg.add(&event(EVENT_NEW, 40000, 1, 60, 100));
        agg.add(&event(EVENT_REPORT, 40000, 5, 500, 100));
        agg.add(&event(EVENT_REPORT, 40000, 5, 500, 100)); // two CPUs reported at once
        assert_eq!(
            only(&mut agg),
            EdgeCounts {
                flows: 1,
                packets: 5,
                bytes: 500
            }
        );
        // The next window: one report lost, the one after carries the total.
        agg.add(&event(EVENT_REPORT, 40000, 9, 900, 100));
        assert_eq!(
            only(&mut agg),
            EdgeCounts {
                flows: 0,
                packets: 4,
                bytes: 400
            }
        );
    }

    #[test]
    fn a_flow_whose_opening_event_was_lost_counts_once_when_first_seen() {
        let mut agg = FlowAggregator::default();
        agg.add(&event(EVENT_REPORT, 40000, 7, 700, 100));
        agg.add(&event(EVENT_REPORT, 40000, 8, 800, 100));
        assert_eq!(
            only(&mut agg),
            EdgeCounts {
                flows: 1,
                packets: 8,
                bytes: 800
            }
        );
    }

    #[test]
    fn a_reused_tuple_is_a_new_instance() {
        let mut agg = FlowAggregator::default();
        agg.add(&event(EVENT_NEW, 40000, 1, 60, 100));
        agg.add(&event(EVENT_REPORT, 40000, 4, 240, 100));
        agg.add(&event(EVENT_NEW, 40000, 1, 60, 900));
        assert_eq!(
            only(&mut agg),
            EdgeCounts {
                flows: 2,
                packets: 5,
                bytes: 300
            }
        );
    }

    #[test]
    fn denied_retransmits_are_one_flow_attempt() {
        let mut agg = FlowAggregator::default();
        for _ in 0..3 {
            let mut e = event(EVENT_DENY, 40000, 1, 60, 0);
            e.verdict = 2;
            agg.add(&e);
        }
        let mut e = event(EVENT_DENY, 40001, 1, 60, 0);
        e.verdict = 2;
        agg.add(&e);
        assert_eq!(
            only(&mut agg),
            EdgeCounts {
                flows: 2,
                packets: 4,
                bytes: 240
            }
        );
    }

    #[test]
    fn a_denied_retry_in_the_next_window_is_the_same_attempt() {
        let mut agg = FlowAggregator::default();
        let mut e = event(EVENT_DENY, 40000, 1, 60, 0);
        e.verdict = 2;
        e.timestamp_ns = 1_000_000_000;
        agg.add(&e);
        assert_eq!(only(&mut agg).flows, 1);
        e.timestamp_ns = 2_000_000_000;
        agg.add(&e);
        assert_eq!(
            only(&mut agg),
            EdgeCounts {
                flows: 0,
                packets: 1,
                bytes: 60
            }
        );
        e.timestamp_ns = 2_000_000_000 + DENIED_TUPLE_IDLE_NS + 1;
        agg.add(&e);
        assert_eq!(only(&mut agg).flows, 1, "quiet for long: a new attempt");
    }

    #[test]
    fn idle_instances_are_forgotten_at_drain() {
        let mut agg = FlowAggregator::default();
        agg.add(&event(EVENT_NEW, 40000, 1, 60, 100));
        agg.add(&event(EVENT_NEW, 40001, 1, 60, 9_900));
        agg.drain(1_000);
        assert_eq!(agg.live_flows(), 1, "only the instance heard from lately");
    }
}
