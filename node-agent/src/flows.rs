//! Flow events from the ring buffer, aggregated into flow records.
//!
//! One record per (event kind, addresses, ports, protocol, direction,
//! identities, verdicts, rule) per interval, counting the events (packets for
//! denies and would-be denies, flows for new allowed flows) and their bytes.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{MapData, RingBuf};
use aya::Ebpf;
use serde::Serialize;

use crate::error::Result;
use crate::layout::{self, FlowEvent};
use crate::maps::{take, wrap};

const NAME: &str = "bh_events";

/// One aggregated flow, as written to the JSON flow log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRecord {
    pub event: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    /// Destination port, or the ICMP type.
    pub dst_port: u16,
    pub protocol: u8,
    pub direction: String,
    pub local_identity: u32,
    pub peer_identity: u32,
    pub rule_id: u32,
    pub action: String,
    pub verdict: String,
    pub would_verdict: String,
    pub mode: String,
    pub reason: String,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FlowKey {
    event: u8,
    src: IpAddr,
    dst: IpAddr,
    ports: (u16, u16),
    protocol: u8,
    direction: u8,
    identities: (u32, u32),
    rule_id: u32,
    verdicts: (u8, u8),
    mode: u8,
}

/// Accumulates events until drained.
#[derive(Debug, Default)]
pub struct FlowAggregator {
    flows: BTreeMap<FlowKey, FlowRecord>,
}

fn address(family: u8, bytes: [u8; 16]) -> IpAddr {
    if family == layout::FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    }
}

fn name(table: &[&'static str], index: u8) -> String {
    table
        .get(usize::from(index))
        .copied()
        .unwrap_or("unknown")
        .to_string()
}

const EVENTS: [&str; 5] = ["unknown", "new", "deny", "wouldDeny", "reevalDeny"];
const ACTIONS: [&str; 4] = ["none", "allow", "deny", "overrideDeny"];
const VERDICTS: [&str; 3] = ["unknown", "allow", "deny"];
const MODES: [&str; 3] = ["visibility", "selective", "full"];
const REASONS: [&str; 3] = ["policy", "default", "failsafe"];
const DIRECTIONS: [&str; 2] = ["ingress", "egress"];

impl FlowAggregator {
    pub fn add(&mut self, e: &FlowEvent) {
        let src = address(e.family, e.saddr);
        let dst = address(e.family, e.daddr);
        let (sport, dport) = (u16::from_be(e.sport_be), u16::from_be(e.dport_be));
        let key = FlowKey {
            event: e.event,
            src,
            dst,
            ports: (sport, dport),
            protocol: e.protocol,
            direction: e.direction,
            identities: (e.local_identity, e.peer_identity),
            rule_id: e.rule_id,
            verdicts: (e.verdict, e.would_verdict),
            mode: e.mode,
        };
        let record = self.flows.entry(key).or_insert_with(|| FlowRecord {
            event: name(&EVENTS, e.event),
            src,
            dst,
            src_port: sport,
            dst_port: dport,
            protocol: e.protocol,
            direction: name(&DIRECTIONS, e.direction),
            local_identity: e.local_identity,
            peer_identity: e.peer_identity,
            rule_id: e.rule_id,
            action: name(&ACTIONS, e.action),
            verdict: name(&VERDICTS, e.verdict),
            would_verdict: name(&VERDICTS, e.would_verdict),
            mode: name(&MODES, e.mode),
            reason: name(&REASONS, e.reason),
            count: 0,
            bytes: 0,
        });
        record.count += 1;
        record.bytes += u64::from(e.bytes);
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The records so far, emptying the aggregator.
    pub fn drain(&mut self) -> Vec<FlowRecord> {
        std::mem::take(&mut self.flows).into_values().collect()
    }
}

/// The consumer side of `bh_events`.
pub struct FlowReader {
    ring: RingBuf<MapData>,
    malformed: u64,
}

impl std::fmt::Debug for FlowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowReader")
            .field("malformed", &self.malformed)
            .finish_non_exhaustive()
    }
}

impl FlowReader {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let ring = RingBuf::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        Ok(FlowReader { ring, malformed: 0 })
    }

    /// Moves every pending event into `agg`; returns how many.
    pub fn read_into(&mut self, agg: &mut FlowAggregator) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            match FlowEvent::from_bytes(&item) {
                Some(event) => {
                    agg.add(&event);
                    n += 1;
                }
                None => self.malformed += 1,
            }
        }
        n
    }
}
