//! The lab's IPv4 address plan, and the check that no two of its ranges
//! overlap for any lab id.
//!
//! ```text
//!  172.31.L.0/24    the bridge: API server .1, nodes .(10+i), external hosts .(100+K)
//!  172.30.L.0/24    external hosts' segments (a /30 each)
//!  10.L.0.0/16      the cluster CIDR: node i's pods in 10.L.i.0/24 (L = 1..=MAX_LAB_ID)
//!  10.255.0.0/16    Services (ClusterIPs), the same in every lab: above any lab id
//!  198.51.100.0/24  LoadBalancer addresses (TEST-NET-2), routed to a node by the lab
//!  169.254.1.1/32   the pods' next hop
//! ```
//!
//! The Service range once was 10.96.0.0/16, which lab id 96 used for its
//! pods: a pod there was a ClusterIP too. The check runs on every lab id in
//! a unit test and on the claimed id before anything is built.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};

/// An IPv4 prefix of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub base: Ipv4Addr,
    pub len: u8,
}

impl Range {
    pub const fn new(base: Ipv4Addr, len: u8) -> Self {
        Self { base, len }
    }

    /// Parses `a.b.c.d/len`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::Topology(format!("{s:?} is not an IPv4 prefix"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        Ok(Self { base, len })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(&self, other: &Range) -> bool {
        let len = self.len.min(other.len);
        let m = Self::mask(len);
        u32::from(self.base) & m == u32::from(other.base) & m
    }

    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.overlaps(&Range::new(addr, 32))
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.len)
    }
}

/// LoadBalancer addresses the lab hands out (as a cloud controller would).
pub const LOAD_BALANCER_CIDR: &str = "198.51.100.0/24";

/// Every range lab `lab` uses, by what it is for.
pub fn ranges(lab: u8) -> Result<Vec<(&'static str, Range)>> {
    Ok(vec![
        ("the bridge", Range::new(Ipv4Addr::new(172, 31, lab, 0), 24)),
        (
            "external segments",
            Range::new(Ipv4Addr::new(172, 30, lab, 0), 24),
        ),
        (
            "the cluster CIDR",
            Range::new(Ipv4Addr::new(10, lab, 0, 0), 16),
        ),
        ("Services", Range::parse(crate::services::SERVICE_CIDR)?),
        ("LoadBalancer addresses", Range::parse(LOAD_BALANCER_CIDR)?),
        (
            "the pods' next hop",
            Range::new(
                super::POD_GATEWAY.parse().map_err(|_| {
                    Error::Topology(format!(
                        "POD_GATEWAY {:?} is no address",
                        super::POD_GATEWAY
                    ))
                })?,
                32,
            ),
        ),
    ])
}

/// An error naming the first two ranges of lab `lab` that overlap.
pub fn check(lab: u8) -> Result<()> {
    let all = ranges(lab)?;
    for (i, (a, ra)) in all.iter().enumerate() {
        for (b, rb) in &all[i + 1..] {
            if ra.overlaps(rb) {
                return Err(Error::Topology(format!(
                    "lab id {lab}: {a} {ra} overlaps {b} {rb}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_lab_id_puts_two_ranges_on_one_address() {
        for lab in 1..=super::super::MAX_LAB_ID {
            check(lab).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn the_check_sees_a_service_range_inside_a_cluster_cidr() {
        let svc = Range::parse("10.96.0.0/16").expect("prefix");
        let pods = Range::new(Ipv4Addr::new(10, 96, 0, 0), 16);
        assert!(svc.overlaps(&pods) && pods.overlaps(&svc));
        let node = Range::new(Ipv4Addr::new(10, 96, 2, 0), 24);
        assert!(svc.overlaps(&node) && node.overlaps(&svc));
        assert!(!Range::new(Ipv4Addr::new(10, 95, 0, 0), 16).overlaps(&svc));
        assert!(svc.contains(Ipv4Addr::new(10, 96, 255, 1)));
        assert!(Range::parse("10.0.0.0/33").is_err());
    }
}
