//! Recommendations: SegmentationPolicies that allow what history shows and
//! nothing wider, one layer at a time.
//!
//! ```text
//!  records in [since, until), counted once ─► in scope? (source: egress, destination: ingress)
//!        │
//!        ▼ subject = the in-scope side's labels, cut to the layer's keys
//!          peer    = labels cut to the layer's keys │ world address ─► /max-prefix CIDR
//!                    │ no labels ─► the unlabeled list (never allowed)
//!                    │ egress through a named Service, with service_peers ─► that Service
//!          port    = role layer: exact port, ephemeral ones as one range; else any
//!        │
//!        ▼ evidence per (subject, direction, peer, port): flows, first/last seen, days
//!  rules per (subject, direction, peer), periodic ports apart ─► one policy per subject
//! ```
//!
//! `env` ring-fences environments, `app` gives per-application allow lists,
//! `role` adds roles and exact ports. Every rule carries its evidence, and a
//! rule seen on few days is `periodic`: a monthly batch or a DR test that a
//! short window would have missed, and a reason to keep the window long.

mod build;
mod evidence;
mod spec;

use std::collections::{BTreeMap, HashMap};

use bulkhead_api::flow::{EndpointKind, FlowEndpoint, FlowRecord};
use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::rule_map::Direction;
use bulkhead_api::{Labels, SegmentationPolicySpec};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::query::EndpointMatch;

pub use evidence::Evidence;

/// How fine-grained the recommendation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Layer {
    /// Environments: selectors on `env`, every port.
    Env,
    /// Applications: `env` and `app`, every port.
    App,
    /// Roles: `env`, `app` and `role`, exact ports.
    Role,
}

impl Layer {
    /// The segmentation label keys selectors use at this layer.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Layer::Env => &["env"],
            Layer::App => &["env", "app"],
            Layer::Role => &["env", "app", "role"],
        }
    }

    /// The name used in policy names and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Env => "env",
            Layer::App => "app",
            Layer::Role => "role",
        }
    }
}

/// What to recommend for.
#[derive(Clone, Debug, PartialEq)]
pub struct RecommendOptions {
    /// Which endpoints get policies (a label selector; `None`: every labeled one).
    pub scope: Option<EndpointMatch>,
    /// The layer.
    pub layer: Layer,
    /// Records that start at or after this time.
    pub since: Timestamp,
    /// Records that start before this time.
    pub until: Timestamp,
    /// World addresses are widened to prefixes no longer than this (IPv4).
    pub max_prefix_v4: u8,
    /// The same for IPv6.
    pub max_prefix_v6: u8,
    /// A window shorter than this draws a warning (monthly jobs need ~35 days).
    pub min_window: SignedDuration,
    /// Destination ports from here up are ephemeral: one range, not many ports.
    pub ephemeral_from: u16,
    /// A rule seen on at most this share of the window's days is `periodic`.
    pub periodic_share: f64,
    /// The mode the policies set.
    pub enforcement: EnforcementMode,
    /// Policy names start with this.
    pub name_prefix: String,
    /// Egress to labeled backends reached through a named Service is
    /// allowed by naming the Service (a `service` peer, which follows its
    /// EndpointSlices) instead of the backends' labels. Direct traffic to
    /// the same pods still gets label peers.
    pub service_peers: bool,
}

impl RecommendOptions {
    /// The defaults for a layer and window: /24 and /64, 35 days, ports from
    /// 32768, periodic at 10 % of days or fewer, visibility mode.
    pub fn new(layer: Layer, since: Timestamp, until: Timestamp) -> Self {
        Self {
            scope: None,
            layer,
            since,
            until,
            max_prefix_v4: 24,
            max_prefix_v6: 64,
            min_window: SignedDuration::from_hours(35 * 24),
            ephemeral_from: 32768,
            periodic_share: 0.1,
            enforcement: EnforcementMode::Visibility,
            name_prefix: "recommended".into(),
            service_peers: false,
        }
    }
}

/// Why a recommendation cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecommendError {
    /// The window is empty or reversed.
    #[error("window: since {since} is not before until {until}")]
    EmptyWindow {
        /// Start.
        since: Timestamp,
        /// End.
        until: Timestamp,
    },
    /// A prefix length is longer than the family allows.
    #[error("max prefix length {0} is longer than the address family allows ({1})")]
    PrefixLength(u8, u8),
    /// The scope is not a label selector.
    #[error("scope {0}: recommendations are made for label selectors (app=web,env=prod), not for one pod, node or address")]
    Scope(String),
}

/// The recommendation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// The layer.
    pub layer: Layer,
    /// Records read in the window.
    pub records: usize,
    /// The policies, by name.
    pub policies: Vec<RecommendedPolicy>,
    /// Peers without segmentation labels: to label, not to allow.
    pub unlabeled: Vec<UnlabeledPeer>,
    /// Things to know before applying it (a short window above all).
    pub warnings: Vec<String>,
}

/// One policy and the evidence of each of its rules.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendedPolicy {
    /// `metadata.name`.
    pub name: String,
    /// The spec.
    pub spec: SegmentationPolicySpec,
    /// By rule name.
    pub evidence: BTreeMap<String, Evidence>,
}

/// A peer that talked to the scope but has no segmentation labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnlabeledPeer {
    /// What it is.
    pub kind: EndpointKind,
    /// `namespace/pod` or a node name, when known.
    pub name: Option<String>,
    /// Its address.
    pub address: std::net::IpAddr,
    /// The in-scope group it talked with (layer labels).
    pub with: Labels,
    /// Which way, seen from that group.
    pub direction: Direction,
    /// Connections.
    pub flows: u64,
    /// End of the last window it was seen in.
    pub last_seen: Timestamp,
}

/// Recommends policies from `records`.
pub fn recommend(
    records: &[FlowRecord],
    options: &RecommendOptions,
) -> Result<Recommendation, RecommendError> {
    if options.since >= options.until {
        return Err(RecommendError::EmptyWindow {
            since: options.since,
            until: options.until,
        });
    }
    if options.max_prefix_v4 > 32 {
        return Err(RecommendError::PrefixLength(options.max_prefix_v4, 32));
    }
    if options.max_prefix_v6 > 128 {
        return Err(RecommendError::PrefixLength(options.max_prefix_v6, 128));
    }
    if let Some(scope) = &options.scope {
        if !matches!(scope, EndpointMatch::Labels(_)) {
            return Err(RecommendError::Scope(format!("{scope:?}")));
        }
    }
    let in_window: Vec<&FlowRecord> = records
        .iter()
        .filter(|r| r.start >= options.since && r.start < options.until)
        .collect();
    // Many windows of one edge are summed first: the per-edge work (label
    // cuts, prefixes, map keys) then runs once per edge, not per record.
    let mut labels: HashMap<&Labels, usize> = HashMap::new();
    let mut edges: HashMap<EdgeKey<'_>, (&FlowRecord, evidence::Tally)> = HashMap::new();
    for r in in_window.iter().copied().filter(|r| r.counts()) {
        let n = labels.len();
        let src = *labels.entry(&r.source.labels).or_insert(n);
        let n = labels.len();
        let dst = *labels.entry(&r.destination.labels).or_insert(n);
        let key = EdgeKey {
            source: (src, r.source.kind, r.source.address),
            destination: (dst, r.destination.kind, r.destination.address),
            port: r.port,
            protocol: r.protocol,
            service: options.service_peers.then(|| service_name(r)).flatten(),
        };
        edges
            .entry(key)
            .or_insert_with(|| (r, evidence::Tally::default()))
            .1
            .add(r.start, r.end, r.flows);
    }
    let mut acc = build::Accumulator::new(options);
    for (r, seen) in edges.values() {
        if in_scope(options, &r.source) {
            acc.add(r, seen, Direction::Egress, &r.source, &r.destination);
        }
        if in_scope(options, &r.destination) {
            acc.add(r, seen, Direction::Ingress, &r.destination, &r.source);
        }
    }
    let mut warnings = window_warnings(options, &in_window);
    let (policies, unlabeled) = acc.finish();
    if policies.is_empty() {
        warnings
            .push("no observed traffic of the scope in the window: nothing to recommend".into());
    }
    Ok(Recommendation {
        layer: options.layer,
        records: in_window.len(),
        policies,
        unlabeled,
        warnings,
    })
}

/// One edge: both ends (interned labels, kind, address), port, protocol,
/// and (with `service_peers`) the named Service it went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct EdgeKey<'a> {
    source: (usize, EndpointKind, std::net::IpAddr),
    destination: (usize, EndpointKind, std::net::IpAddr),
    port: u16,
    protocol: bulkhead_api::policy::Protocol,
    service: Option<(&'a str, &'a str)>,
}

/// The `(namespace, name)` of the Service a record went through, when the
/// reporting agent knew it.
pub(crate) fn service_name(r: &FlowRecord) -> Option<(&str, &str)> {
    let s = r.service.as_ref()?;
    Some((s.namespace.as_deref()?, s.name.as_deref()?))
}

/// Endpoints a policy can select: labeled, and matched by the scope.
fn in_scope(options: &RecommendOptions, ep: &FlowEndpoint) -> bool {
    !ep.labels.is_empty()
        && matches!(
            ep.kind,
            EndpointKind::Pod | EndpointKind::Node | EndpointKind::ExternalNode
        )
        && options.scope.as_ref().is_none_or(|s| s.matches(ep))
}

fn window_warnings(options: &RecommendOptions, records: &[&FlowRecord]) -> Vec<String> {
    let mut out = Vec::new();
    let days = |d: SignedDuration| d.as_secs() as f64 / 86400.0;
    let asked = options.until.duration_since(options.since);
    if asked < options.min_window {
        out.push(format!(
            "the window is {:.1} days, shorter than the minimum of {:.0}: monthly and quarterly jobs and DR tests may be missing, and rules for them with it",
            days(asked),
            days(options.min_window)
        ));
    } else if let Some(first) = records.iter().map(|r| r.start).min() {
        let covered = options.until.duration_since(first);
        if covered < options.min_window {
            out.push(format!(
                "history covers only {:.1} days of the {:.1} asked for (the first record is from {first}), shorter than the minimum of {:.0}",
                days(covered),
                days(asked),
                days(options.min_window)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests;
