//! Exposure: how many (source, destination port/protocol) pairs can reach
//! each managed endpoint under the current policy, against no policy at all.
//!
//! ```text
//!  Output (compiled snapshot)
//!    sources: every managed endpoint, every labeled CIDR, and `world` (one each)
//!    destinations: every managed endpoint (pods, Nodes, ExternalNodes)
//!        │  for each (source, destination), TCP/UDP/SCTP ports 1–65535:
//!        │  source egress (its node's rule map)  AND  destination ingress
//!        │  — both through policy::verdict (deciding_rule, enforced, failsafe)
//!        ▼
//!  possible = sources × 3 × 65535      reachable = pairs both sides allow
//!  reduction = 1 − reachable / possible  (no policy: every pair is reachable)
//! ```
//!
//! Ports are not walked one by one: a verdict only changes where a rule's
//! port range starts or ends, so each protocol's ports are cut into ranges at
//! those points and one verdict per range is multiplied by its length. Nor
//! are pairs judged one by one: sources and destinations fall into classes
//! that every verdict treats alike, and one verdict per class pair is
//! multiplied by the classes' sizes (count.rs says why that is exact;
//! `naive::exposure`, the pair-by-pair loop, is held equal to it in tests).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use bulkhead_api::identity::WORLD;
use bulkhead_api::policy::Protocol;
use bulkhead_policy::{EndpointRef, Output};
use serde::Serialize;

use count::{Dest, Pairs, Tally};
use pairs::{NodeView, PeerClasses, Prefixes, RuleClasses, Source};

mod count;
#[cfg(test)]
pub(crate) mod naive;
mod pairs;

/// The protocols whose ports count as possible.
pub const PROTOCOLS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
/// Ports per protocol (1–65535).
pub const PORTS: u64 = 65_535;

/// SSH, RDP, SMB, WinRM, and the common database ports (MS SQL, Oracle,
/// MySQL, PostgreSQL, Redis, MongoDB), all TCP.
pub const RISKY_PORTS: [u16; 11] = [
    22, 3389, 445, 5985, 5986, 1433, 1521, 3306, 5432, 6379, 27017,
];

/// What to compute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposureOptions {
    /// Destinations are grouped into applications by this segmentation label.
    pub group_key: String,
    /// The risky ports.
    pub risky: Vec<(Protocol, u16)>,
}

impl Default for ExposureOptions {
    fn default() -> Self {
        Self {
            group_key: "app".into(),
            risky: RISKY_PORTS.iter().map(|p| (Protocol::Tcp, *p)).collect(),
        }
    }
}

/// Possible and reachable pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reach {
    pub possible: u64,
    /// Under the current policy, in each endpoint's current mode.
    pub reachable: u64,
    /// If every endpoint were in full enforcement under the same policy.
    pub reachable_if_full: u64,
    /// `100 × (1 − reachable / possible)`: the threat vector removed.
    pub reduction_percent: f64,
}

impl Reach {
    fn add(&mut self, o: &Reach) {
        self.possible += o.possible;
        self.reachable += o.reachable;
        self.reachable_if_full += o.reachable_if_full;
    }

    fn finish(&mut self) {
        self.reduction_percent = percent_removed(self.reachable, self.possible);
    }
}

fn percent_removed(reachable: u64, possible: u64) -> f64 {
    if possible == 0 {
        return 0.0;
    }
    let r = 100.0 * (1.0 - reachable as f64 / possible as f64);
    (r * 100.0).round() / 100.0
}

/// Exposure of a set of destinations.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupExposure {
    /// The application (the group key's value; `(none)` without one).
    pub name: String,
    pub endpoints: u64,
    pub all_ports: Reach,
    pub risky_ports: Reach,
}

/// One risky port over every destination.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortExposure {
    /// `port/PROTOCOL`.
    pub port: String,
    pub reach: Reach,
}

/// The whole answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exposure {
    pub group_key: String,
    /// Sources counted per destination (managed endpoints, labeled CIDRs, world).
    pub sources: u64,
    pub overall: GroupExposure,
    pub applications: Vec<GroupExposure>,
    pub by_risky_port: Vec<PortExposure>,
}

/// Computes exposure over the compiled output.
pub fn exposure(out: &Output, opts: &ExposureOptions) -> Exposure {
    let mut rule_classes = RuleClasses::default();
    let views: BTreeMap<&str, NodeView<'_>> = out
        .rule_maps
        .iter()
        .map(|(n, m)| (n.as_str(), NodeView::new(m, &mut rule_classes)))
        .collect();
    let (sources, dests) = sides(out, &views, &opts.group_key);
    let hosts: HashSet<IpAddr> = views
        .values()
        .flat_map(|v| v.host.iter().copied())
        .collect();
    let mut pairs = Pairs::new(&opts.risky);
    let mut tally = Tally::new(PROTOCOLS.len() as u64 * PORTS, opts.risky.len());
    count::count(
        &hosts,
        &mut PeerClasses::new(out),
        &sources,
        &dests,
        &mut pairs,
        &mut tally,
    );
    finish(opts, sources.len() as u64, tally)
}

/// The sources (every managed endpoint, every labeled CIDR, `world`) and
/// the destinations (every managed endpoint).
fn sides<'a>(
    out: &'a Output,
    views: &'a BTreeMap<&'a str, NodeView<'a>>,
    group_key: &str,
) -> (Vec<Source<'a>>, Vec<Dest<'a>>) {
    let prefixes = Prefixes::new(out);
    let mut sources: Vec<Source<'_>> = Vec::new();
    let mut destinations: Vec<Dest<'_>> = Vec::new();
    for (r, f) in &out.endpoints {
        let address = f
            .addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(f.addresses.first())
            .copied();
        let managed = match (r, &f.node) {
            (EndpointRef::Cidr(_), _) | (_, None) => None,
            (_, Some(node)) => views.get_key_value(node.as_str()).and_then(|(node, view)| {
                let is_host = matches!(r, EndpointRef::Node(_) | EndpointRef::ExternalNode(_));
                address.map(|_| view.side(node, f.identity, f.mode, is_host))
            }),
        };
        match (r, managed) {
            (EndpointRef::Cidr(_), _) => sources.push(Source {
                managed: None,
                address: None,
                seen: f.identity,
            }),
            (_, Some(side)) => {
                let seen = address.map_or(f.identity, |a| prefixes.lookup(a));
                let app = f
                    .labels
                    .get(group_key)
                    .cloned()
                    .unwrap_or_else(|| "(none)".into());
                sources.push(Source {
                    managed: Some(side),
                    address,
                    seen,
                });
                destinations.push(Dest {
                    side,
                    address,
                    seen,
                    app,
                });
            }
            _ => {}
        }
    }
    sources.push(Source {
        managed: None,
        address: None,
        seen: WORLD,
    });
    (sources, destinations)
}

fn finish(opts: &ExposureOptions, sources: u64, tally: Tally) -> Exposure {
    let Tally {
        mut apps,
        mut overall,
        ports,
        ..
    } = tally;
    for g in apps.values_mut().chain([&mut overall]) {
        g.all_ports.finish();
        g.risky_ports.finish();
    }
    Exposure {
        group_key: opts.group_key.clone(),
        sources,
        overall,
        applications: apps.into_values().collect(),
        by_risky_port: opts
            .risky
            .iter()
            .zip(ports)
            .map(|((proto, port), mut reach)| {
                reach.finish();
                PortExposure {
                    port: format!("{port}/{}", crate::query::protocol_name(*proto)),
                    reach,
                }
            })
            .collect(),
    }
}
