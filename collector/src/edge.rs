//! What a store keeps of a record: the edge (everything but the window and
//! the counters, labels as they were) as canonical JSON plus the columns
//! that filters and group-bys need; and the checks a batch passes before
//! anything of it is stored.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bulkhead_api::flow::{FlowBatch, FlowEndpoint, FlowRecord, LossReport, SCHEMA};
use jiff::Timestamp;
use serde::Serialize;

use crate::StoreError;

/// One side of an edge, as columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideColumns {
    pub addr: String,
    /// The address as an IPv6 (IPv4-mapped) number split in two, each with
    /// its top bit flipped so signed 64-bit order is address order: range
    /// filters are two integer comparisons in SQLite and ClickHouse alike.
    pub ip_hi: i64,
    pub ip_lo: i64,
    pub identity: u32,
    pub kind: String,
    /// `""` when unknown (no NULLs, so both backends behave alike).
    pub name: String,
    pub namespace: String,
    pub reported: bool,
    pub labels: BTreeMap<String, String>,
}

/// An edge, as columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeColumns {
    /// The canonical JSON of the record without window and counters; the
    /// identity of the edge and what queries turn back into records.
    pub key: String,
    pub counts: bool,
    pub node: String,
    pub src: SideColumns,
    pub dst: SideColumns,
    pub port: u16,
    pub protocol: String,
    pub direction: String,
    pub verdict: String,
    pub would_verdict: String,
    pub mode: String,
    pub reason: String,
    pub rule_policy: String,
    pub rule_name: String,
    pub rule_id: u32,
    /// The Service address asked for (`service.address`); `""` when none.
    pub svc_addr: String,
    /// `namespace/name` of that Service; `""` when the record names none.
    pub svc_name: String,
}

/// The wire name of a unit enum value (`pod`, `externalNode`, `TCP`).
pub(crate) fn wire<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

const FLIP: u64 = 1 << 63;

/// See [`SideColumns::ip_hi`].
pub fn ip_key(addr: IpAddr) -> (i64, i64) {
    let v6 = match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    let n = u128::from(v6);
    let hi = ((n >> 64) as u64) ^ FLIP;
    let lo = (n as u64) ^ FLIP;
    (hi as i64, lo as i64)
}

fn side(e: &FlowEndpoint) -> SideColumns {
    let (ip_hi, ip_lo) = ip_key(e.address);
    SideColumns {
        addr: e.address.to_string(),
        ip_hi,
        ip_lo,
        identity: e.identity,
        kind: wire(&e.kind),
        name: e.name.clone().unwrap_or_default(),
        namespace: e.namespace.clone().unwrap_or_default(),
        reported: e.reported,
        labels: e.labels.clone(),
    }
}

impl EdgeColumns {
    pub fn of(r: &FlowRecord) -> Result<Self, StoreError> {
        let mut bare = r.clone();
        bare.start = Timestamp::UNIX_EPOCH;
        bare.end = Timestamp::UNIX_EPOCH;
        bare.flows = 0;
        bare.packets = 0;
        bare.bytes = 0;
        let key = serde_json::to_string(&bare)
            .map_err(|e| StoreError::Invalid(format!("record does not serialize: {e}")))?;
        let (rule_policy, rule_name, rule_id) = match &r.rule {
            Some(rule) => (rule.policy.clone(), rule.name.clone(), rule.id),
            None => (String::new(), String::new(), 0),
        };
        Ok(EdgeColumns {
            key,
            counts: r.counts(),
            node: r.node.clone(),
            src: side(&r.source),
            dst: side(&r.destination),
            port: r.port,
            protocol: wire(&r.protocol),
            direction: wire(&r.direction),
            verdict: wire(&r.verdict),
            would_verdict: wire(&r.would_verdict),
            mode: wire(&r.mode),
            reason: wire(&r.reason),
            rule_policy,
            rule_name,
            rule_id,
            svc_addr: r
                .service
                .as_ref()
                .map(|s| s.address.to_string())
                .unwrap_or_default(),
            svc_name: r
                .service
                .as_ref()
                .and_then(|s| s.service())
                .unwrap_or_default(),
        })
    }
}

/// Turns a stored edge back into the record of one bucket.
pub fn record_of(
    key: &str,
    start: i64,
    end: i64,
    counters: [u64; 3],
) -> Result<FlowRecord, StoreError> {
    let mut r: FlowRecord = serde_json::from_str(key)
        .map_err(|e| StoreError::Corrupt(format!("edge key does not decode: {e}")))?;
    let ts = |s: i64| {
        Timestamp::from_second(s).map_err(|e| StoreError::Corrupt(format!("bucket {s}: {e}")))
    };
    r.start = ts(start)?;
    r.end = ts(end)?;
    [r.flows, r.packets, r.bytes] = counters;
    Ok(r)
}

/// The earliest and latest window starts a store accepts: what fits a
/// 4-digit year and a ClickHouse `UInt32` second.
const EARLIEST: i64 = 946_684_800; // 2000-01-01
const LATEST: i64 = 4_102_444_800; // 2100-01-01
const MAX_WINDOW: i64 = 3_600;

fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
}

fn text_ok(s: &str, max: usize) -> bool {
    s.len() <= max && !s.chars().any(char::is_control)
}

fn window(start: Timestamp, end: Timestamp) -> Result<(), String> {
    let (s, e) = (start.as_second(), end.as_second());
    if !(EARLIEST..LATEST).contains(&s) {
        return Err(format!("start {start} is outside 2000..2100"));
    }
    if end < start {
        return Err(format!("end {end} is before start {start}"));
    }
    if e - s > MAX_WINDOW {
        return Err(format!(
            "window {start}..{end} is longer than {MAX_WINDOW} s"
        ));
    }
    Ok(())
}

fn endpoint(which: &str, e: &FlowEndpoint) -> Result<(), String> {
    for (k, v) in &e.labels {
        if k.is_empty() || !text_ok(k, 317) || !text_ok(v, 63) {
            return Err(format!("{which} label {k:?}={v:?} is not a valid label"));
        }
    }
    for (field, v) in [("name", &e.name), ("namespace", &e.namespace)] {
        if let Some(v) = v {
            if v.is_empty() || !text_ok(v, 253) {
                return Err(format!("{which}.{field} {v:?} is empty or not printable"));
            }
        }
    }
    Ok(())
}

fn record(batch_node: &str, r: &FlowRecord) -> Result<(), String> {
    if r.schema != SCHEMA {
        return Err(format!("schema {:?}, expected {SCHEMA:?}", r.schema));
    }
    if r.node != batch_node {
        return Err(format!(
            "node {:?} is not the batch's node {batch_node:?}",
            r.node
        ));
    }
    window(r.start, r.end)?;
    endpoint("source", &r.source)?;
    endpoint("destination", &r.destination)?;
    if let Some(rule) = &r.rule {
        if rule.policy.is_empty() || !text_ok(&rule.policy, 253) || !text_ok(&rule.name, 253) {
            return Err(format!(
                "rule {:?}/{:?} is not a valid rule name",
                rule.policy, rule.name
            ));
        }
    }
    for (field, v) in [
        ("flows", r.flows),
        ("packets", r.packets),
        ("bytes", r.bytes),
    ] {
        if i64::try_from(v).is_err() {
            return Err(format!("{field} {v} is larger than {}", i64::MAX));
        }
    }
    Ok(())
}

fn loss(batch_node: &str, l: &LossReport) -> Result<(), String> {
    if l.node != batch_node {
        return Err(format!(
            "node {:?} is not the batch's node {batch_node:?}",
            l.node
        ));
    }
    window(l.start, l.end)?;
    for (field, v) in [
        ("ringBufferEvents", l.ring_buffer_events),
        ("exportRecords", l.export_records),
    ] {
        if i64::try_from(v).is_err() {
            return Err(format!("{field} {v} is larger than {}", i64::MAX));
        }
    }
    Ok(())
}

/// Checks a whole batch before any of it is stored.
pub fn validate(batch: &FlowBatch) -> Result<(), StoreError> {
    if !name_ok(&batch.node) {
        return Err(StoreError::Invalid(format!(
            "node {:?} is not a valid node name",
            batch.node
        )));
    }
    if batch.batch_id.is_empty()
        || batch.batch_id.len() > 128
        || !batch.batch_id.bytes().all(|c| c.is_ascii_graphic())
    {
        return Err(StoreError::Invalid(format!(
            "batchId {:?} must be 1-128 printable characters without spaces",
            batch.batch_id
        )));
    }
    for (i, r) in batch.records.iter().enumerate() {
        record(&batch.node, r).map_err(|why| {
            StoreError::Invalid(format!(
                "record {i} ({} -> {}:{}): {why}",
                r.source.address, r.destination.address, r.port
            ))
        })?;
    }
    for (i, l) in batch.losses.iter().enumerate() {
        loss(&batch.node, l)
            .map_err(|why| StoreError::Invalid(format!("loss report {i}: {why}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_keep_address_order() {
        let addrs = [
            "0.0.0.0",
            "10.0.0.1",
            "10.0.0.2",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::1",
            "ffff::",
        ];
        let mut keyed: Vec<((i64, i64), IpAddr)> = addrs
            .iter()
            .map(|a| {
                let ip: IpAddr = a.parse().expect("ip");
                (ip_key(ip), ip)
            })
            .collect();
        keyed.sort();
        let order: Vec<String> = keyed.iter().map(|(_, ip)| ip.to_string()).collect();
        assert_eq!(
            order,
            [
                "::",
                "::1",
                "0.0.0.0",
                "10.0.0.1",
                "10.0.0.2",
                "255.255.255.255",
                "fd00::1",
                "ffff::"
            ]
        );
    }
}
