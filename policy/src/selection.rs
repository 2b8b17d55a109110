//! Policies resolved against identities: which identities a scope governs,
//! which a peer names, and the mode each identity ends up in.

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::identity::{CIDR_LABEL, HOST, REMOTE_NODE, UNLABELED, WORLD};
use bulkhead_api::policy::Protocol;
use bulkhead_api::policy::{
    Action, EnforcementMode, Peer, PortSpec, ReservedPeer, Rule, SegmentationPolicySpec, ServiceRef,
};
use bulkhead_api::rule_map::{Direction, PortRange};
use bulkhead_api::{LabelSelector, Labels};
use ipnet::IpNet;

use crate::netpol;

/// A policy with its CIDRs parsed and ports normalized.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PreparedPolicy {
    pub(crate) scope: Option<LabelSelector>,
    /// Which labels `scope` reads.
    pub(crate) scope_kind: ScopeKind,
    pub(crate) enforcement: Option<EnforcementMode>,
    pub(crate) rules: Vec<PreparedRule>,
    /// Problems found while preparing; a policy with any is not compiled.
    pub(crate) errors: Vec<String>,
}

/// One rule, ready to select.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PreparedRule {
    pub(crate) name: String,
    pub(crate) direction: Direction,
    pub(crate) action: Action,
    /// `None` matches any peer.
    pub(crate) peers: Option<Vec<PeerSel>>,
    pub(crate) ports: Vec<PortRange>,
    /// NetworkPolicy named ports, resolved per identity when node maps are
    /// built (see `netpol::named_ports`). When set, an empty `ports` means
    /// "no numeric port", not "every port".
    pub(crate) named_ports: Vec<(Protocol, String)>,
    /// `expires`, parsed: from then on the rule is in no rule map.
    pub(crate) expires: Option<jiff::Timestamp>,
    /// Whether the compiler's clock has reached `expires`. The rule keeps
    /// its place (and its id) so the others' ids do not move.
    pub(crate) expired: bool,
}

/// What a policy's scope selector reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeKind {
    /// Segmentation labels (SegmentationPolicies).
    Segmentation,
    /// The implicit Kubernetes labels of pods (translated NetworkPolicies).
    Kubernetes,
}

/// A peer, parsed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PeerSel {
    Selector(LabelSelector),
    Cidr {
        net: IpNet,
        except: Vec<IpNet>,
    },
    Reserved(ReservedPeer),
    /// NetworkPolicy `podSelector`/`namespaceSelector`, over implicit labels.
    Pods(LabelSelector),
    /// NetworkPolicy `ipBlock`: the range's addresses that belong to no
    /// endpoint (as `Cidr`), and the pods whose address is in it (by their
    /// implicit `k8s:cidr/` labels).
    IpBlock {
        net: IpNet,
        except: Vec<IpNet>,
    },
    /// The identities of a Service's backends (see `crate::service`).
    Service(ServiceRef),
}

/// What the identities look like to selectors.
#[derive(Debug, Default)]
pub(crate) struct Universe {
    /// Labels of every allocated identity.
    pub(crate) labels: BTreeMap<u32, Labels>,
    /// Identities used by managed endpoints (pods, nodes, external nodes), reserved ones included.
    pub(crate) managed: BTreeSet<u32>,
    /// The prefix of every CIDR identity.
    pub(crate) cidr: BTreeMap<u32, IpNet>,
    /// `key=value` → identities with that label (selectable ones only).
    index: BTreeMap<(String, String), BTreeSet<u32>>,
    /// Segmentation labels of identities that also carry implicit
    /// NetworkPolicy labels (the others' labels are all segmentation labels).
    segmentation: BTreeMap<u32, Labels>,
    /// Identities of pods with implicit labels but no segmentation label:
    /// what the reserved peer `unlabeled` names besides `UNLABELED`.
    unlabeled: BTreeSet<u32>,
    /// The identities of the backends of every Service a policy names.
    pub(crate) services: BTreeMap<ServiceRef, BTreeSet<u32>>,
}

/// A policy's resolved sets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selection {
    pub(crate) scope: BTreeSet<u32>,
    /// Per rule, per peer, the identities it names; the rule's union is `rule_peers`.
    pub(crate) peer_sets: Vec<Vec<BTreeSet<u32>>>,
    /// Per rule: `None` for any peer, else the union of its peers, with `HOST` never
    /// added here (that depends on the node; see node_map).
    pub(crate) rule_peers: Vec<Option<BTreeSet<u32>>>,
}

impl PreparedPolicy {
    pub(crate) fn new(spec: &SegmentationPolicySpec) -> Self {
        let mut errors = Vec::new();
        let scope = if spec.scope.cluster_wide {
            if spec.scope.selector.as_ref().is_some_and(|s| !s.is_empty()) {
                errors.push("scope: clusterWide: true cannot be combined with a selector".into());
            }
            None
        } else {
            match &spec.scope.selector {
                Some(s) if !s.is_empty() => Some(s.clone()),
                _ => {
                    errors.push(
                        "scope: an empty selector needs clusterWide: true to govern every endpoint"
                            .into(),
                    );
                    None
                }
            }
        };
        let mut rules = Vec::new();
        let directions = [
            (Direction::Ingress, &spec.ingress),
            (Direction::Egress, &spec.egress),
        ];
        for (direction, list) in directions {
            for (i, rule) in list.iter().enumerate() {
                let path = format!("{}[{i}]", direction_name(direction));
                rules.push(prepare_rule(&path, direction, rule, &mut errors));
            }
        }
        Self {
            scope,
            scope_kind: ScopeKind::Segmentation,
            enforcement: spec.enforcement,
            rules,
            errors,
        }
    }

    /// Marks the rules whose expiry `now` has reached; returns whether any changed.
    pub(crate) fn expire_at(&mut self, now: Option<jiff::Timestamp>) -> bool {
        let mut changed = false;
        for rule in &mut self.rules {
            let expired = matches!((rule.expires, now), (Some(at), Some(now)) if at <= now);
            changed |= expired != rule.expired;
            rule.expired = expired;
        }
        changed
    }

    /// Whether `now` would expire a rule not yet expired (or the reverse).
    pub(crate) fn expiry_moves(&self, now: jiff::Timestamp) -> bool {
        self.rules
            .iter()
            .any(|r| r.expires.is_some_and(|at| at <= now) != r.expired)
    }

    /// Every CIDR the policy names, excepts included: each becomes an identity.
    pub(crate) fn cidrs(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.rules
            .iter()
            .flat_map(|r| r.peers.iter().flatten())
            .flat_map(|p| match p {
                PeerSel::Cidr { net, except } | PeerSel::IpBlock { net, except } => {
                    std::iter::once(*net)
                        .chain(except.iter().copied())
                        .collect::<Vec<_>>()
                }
                _ => Vec::new(),
            })
    }

    /// Every Service the policy's peers name.
    pub(crate) fn services(&self) -> impl Iterator<Item = &ServiceRef> + '_ {
        let peers = self.rules.iter().flat_map(|r| r.peers.iter().flatten());
        peers.filter_map(|p| match p {
            PeerSel::Service(service) => Some(service),
            _ => None,
        })
    }

    pub(crate) fn scope_matches(&self, u: &Universe, id: u32) -> bool {
        u.managed.contains(&id)
            && match &self.scope {
                None => self.errors.is_empty(),
                Some(sel) => self.scope_labels(u, id).is_some_and(|l| sel.matches(l)),
            }
    }

    fn scope_labels<'u>(&self, u: &'u Universe, id: u32) -> Option<&'u Labels> {
        match self.scope_kind {
            ScopeKind::Segmentation => u.selectable(id),
            ScopeKind::Kubernetes => u.kubernetes(id),
        }
    }

    /// Computes every set from scratch.
    pub(crate) fn select(&self, u: &Universe) -> Selection {
        if !self.errors.is_empty() {
            return Selection::default();
        }
        let scope = match &self.scope {
            None => u.managed.clone(),
            Some(sel) => {
                let found = match self.scope_kind {
                    ScopeKind::Segmentation => u.select(sel),
                    ScopeKind::Kubernetes => u.select_pods(sel),
                };
                found.filter(|id| u.managed.contains(id)).collect()
            }
        };
        let mut selection = Selection {
            scope,
            ..Selection::default()
        };
        for rule in &self.rules {
            let sets: Vec<BTreeSet<u32>> =
                rule.peers.iter().flatten().map(|p| p.select(u)).collect();
            let union = rule
                .peers
                .as_ref()
                .map(|_| sets.iter().flatten().copied().collect());
            selection.peer_sets.push(sets);
            selection.rule_peers.push(union);
        }
        selection
    }

    /// Adds `id` (new in the universe) to every set it belongs in. True if any changed.
    pub(crate) fn add_identity(&self, u: &Universe, sel: &mut Selection, id: u32) -> bool {
        if !self.errors.is_empty() {
            return false;
        }
        let mut changed = false;
        if self.scope_matches(u, id) {
            changed |= sel.scope.insert(id);
        }
        for (r, rule) in self.rules.iter().enumerate() {
            for (p, peer) in rule.peers.iter().flatten().enumerate() {
                if peer.matches(u, id) {
                    changed |= sel.peer_sets[r][p].insert(id);
                    if let Some(union) = &mut sel.rule_peers[r] {
                        union.insert(id);
                    }
                }
            }
        }
        changed
    }
}

/// Which of a selection's sets hold `id`: the scope, then every peer of every rule.
pub(crate) fn membership(sel: &Selection, id: u32) -> Vec<bool> {
    std::iter::once(sel.scope.contains(&id))
        .chain(sel.peer_sets.iter().flatten().map(|set| set.contains(&id)))
        .collect()
}

/// Removes `id` (gone from the universe) from every set. True if any changed.
pub(crate) fn remove_identity(sel: &mut Selection, id: u32) -> bool {
    let mut changed = sel.scope.remove(&id);
    for sets in &mut sel.peer_sets {
        for set in sets {
            changed |= set.remove(&id);
        }
    }
    for union in sel.rule_peers.iter_mut().flatten() {
        union.remove(&id);
    }
    changed
}

impl PeerSel {
    fn matches(&self, u: &Universe, id: u32) -> bool {
        match self {
            PeerSel::Selector(sel) => u.selectable(id).is_some_and(|l| sel.matches(l)),
            PeerSel::Cidr { net, except } => range_holds(u, id, net, except),
            PeerSel::Reserved(ReservedPeer::World) => id == WORLD || u.cidr.contains_key(&id),
            PeerSel::Reserved(ReservedPeer::Host) => id == HOST,
            PeerSel::Reserved(ReservedPeer::RemoteNode) => id == REMOTE_NODE,
            PeerSel::Reserved(ReservedPeer::Unlabeled) => {
                id == UNLABELED || u.unlabeled.contains(&id)
            }
            PeerSel::Pods(sel) => u.kubernetes(id).is_some_and(|l| sel.matches(l)),
            PeerSel::IpBlock { net, except } => {
                range_holds(u, id, net, except)
                    || u.kubernetes(id)
                        .is_some_and(|l| netpol::in_ip_block(l, net, except))
            }
            PeerSel::Service(service) => u.services.get(service).is_some_and(|s| s.contains(&id)),
        }
    }

    fn select(&self, u: &Universe) -> BTreeSet<u32> {
        match self {
            PeerSel::Selector(sel) => u.select(sel).collect(),
            PeerSel::Cidr { .. } => u
                .cidr
                .keys()
                .copied()
                .filter(|id| self.matches(u, *id))
                .collect(),
            PeerSel::Reserved(ReservedPeer::World) => std::iter::once(WORLD)
                .chain(u.cidr.keys().copied())
                .collect(),
            PeerSel::Reserved(ReservedPeer::Host) => BTreeSet::from([HOST]),
            PeerSel::Reserved(ReservedPeer::RemoteNode) => BTreeSet::from([REMOTE_NODE]),
            PeerSel::Reserved(ReservedPeer::Unlabeled) => std::iter::once(UNLABELED)
                .chain(u.unlabeled.iter().copied())
                .collect(),
            PeerSel::Pods(sel) => u.select_pods(sel).collect(),
            PeerSel::IpBlock { net, .. } => {
                let ranges = u.cidr.keys().copied().filter(|id| self.matches(u, *id));
                let pods = u.select_pods_in(net);
                let pods = pods.filter(|id| self.matches(u, *id));
                ranges.chain(pods).collect()
            }
            PeerSel::Service(service) => u.services.get(service).cloned().unwrap_or_default(),
        }
    }
}

/// Whether `id` is an address range inside `net` and outside every `except`.
fn range_holds(u: &Universe, id: u32, net: &IpNet, except: &[IpNet]) -> bool {
    u.cidr
        .get(&id)
        .is_some_and(|p| net.contains(p) && !except.iter().any(|e| e.contains(p)))
}

impl Universe {
    /// The segmentation labels of `id` if selectors may match it: an
    /// allocated identity with at least one label besides the CIDR marker.
    /// Implicit NetworkPolicy labels are never visible here.
    pub(crate) fn selectable(&self, id: u32) -> Option<&Labels> {
        self.segmentation
            .get(&id)
            .or_else(|| self.labels.get(&id))
            .filter(|l| l.keys().any(|k| k != CIDR_LABEL))
    }

    /// All labels of `id` if it is a pod with implicit NetworkPolicy labels.
    pub(crate) fn kubernetes(&self, id: u32) -> Option<&Labels> {
        self.labels
            .get(&id)
            .filter(|l| l.contains_key(netpol::NAMESPACE_LABEL))
    }

    pub(crate) fn insert(&mut self, id: u32, labels: Labels, cidr: Option<IpNet>) {
        if labels.keys().any(|k| netpol::is_implicit(k)) {
            let own: Labels = labels
                .iter()
                .filter(|(k, _)| !netpol::is_implicit(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if own.is_empty() {
                self.unlabeled.insert(id);
            }
            self.segmentation.insert(id, own);
        }
        if labels.keys().any(|k| k != CIDR_LABEL) {
            for (k, v) in &labels {
                self.index
                    .entry((k.clone(), v.clone()))
                    .or_default()
                    .insert(id);
            }
        }
        if let Some(net) = cidr {
            self.cidr.insert(id, net);
        }
        self.labels.insert(id, labels);
    }

    pub(crate) fn remove(&mut self, id: u32) {
        self.segmentation.remove(&id);
        self.unlabeled.remove(&id);
        if let Some(labels) = self.labels.remove(&id) {
            for (k, v) in labels {
                let key = (k, v);
                if let Some(set) = self.index.get_mut(&key) {
                    set.remove(&id);
                    if set.is_empty() {
                        self.index.remove(&key);
                    }
                }
            }
        }
        self.cidr.remove(&id);
    }

    /// Identities a selector matches, using the label index to avoid a scan
    /// when the selector has `matchLabels`.
    fn select<'a>(&'a self, sel: &'a LabelSelector) -> Box<dyn Iterator<Item = u32> + 'a> {
        self.select_by(sel, Self::selectable)
    }

    /// Pods whose implicit NetworkPolicy labels a selector matches.
    fn select_pods<'a>(&'a self, sel: &'a LabelSelector) -> Box<dyn Iterator<Item = u32> + 'a> {
        self.select_by(sel, Self::kubernetes)
    }

    /// Pods with an address in `net` (by their `k8s:cidr/` label).
    fn select_pods_in(&self, net: &IpNet) -> impl Iterator<Item = u32> + '_ {
        let key = (netpol::cidr_label(net), netpol::IN_RANGE.to_string());
        self.index.get(&key).into_iter().flatten().copied()
    }

    fn select_by<'a>(
        &'a self,
        sel: &'a LabelSelector,
        view: fn(&Self, u32) -> Option<&Labels>,
    ) -> Box<dyn Iterator<Item = u32> + 'a> {
        let rarest = sel
            .match_labels
            .iter()
            .map(|(k, v)| self.index.get(&(k.clone(), v.clone())))
            .min_by_key(|set| set.map_or(0, BTreeSet::len));
        match rarest {
            Some(None) => Box::new(std::iter::empty()),
            Some(Some(candidates)) => Box::new(
                candidates
                    .iter()
                    .copied()
                    .filter(move |id| view(self, *id).is_some_and(|l| sel.matches(l))),
            ),
            None => Box::new(
                self.labels
                    .keys()
                    .copied()
                    .filter(move |id| view(self, *id).is_some_and(|l| sel.matches(l))),
            ),
        }
    }
}

/// The strictest mode any policy in scope sets, else the default.
pub(crate) fn mode_of<'a>(
    default: EnforcementMode,
    in_scope: impl Iterator<Item = &'a PreparedPolicy>,
) -> EnforcementMode {
    in_scope
        .filter_map(|p| p.enforcement)
        .max()
        .unwrap_or(default)
}

pub(crate) fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

fn prepare_rule(
    path: &str,
    direction: Direction,
    rule: &Rule,
    errors: &mut Vec<String>,
) -> PreparedRule {
    let peers = if rule.peers.is_empty() {
        None
    } else {
        Some(
            rule.peers
                .iter()
                .enumerate()
                .filter_map(|(i, p)| prepare_peer(&format!("{path}.peers[{i}]"), p, errors))
                .collect(),
        )
    };
    let ports = rule
        .ports
        .iter()
        .enumerate()
        .filter_map(|(i, p)| prepare_port(&format!("{path}.ports[{i}]"), p, errors))
        .collect();
    let expires = rule.expires.as_deref().and_then(|at| {
        at.parse::<jiff::Timestamp>()
            .map_err(|e| {
                errors.push(format!(
                    "{path}.expires: {at:?} is not an RFC 3339 time: {e}"
                ))
            })
            .ok()
    });
    PreparedRule {
        name: rule.name.clone().unwrap_or_else(|| path.to_string()),
        direction,
        action: rule.action,
        peers,
        ports,
        named_ports: Vec::new(),
        expires,
        expired: false,
    }
}

fn prepare_peer(path: &str, peer: &Peer, errors: &mut Vec<String>) -> Option<PeerSel> {
    let set = [
        peer.selector.is_some(),
        peer.cidr.is_some(),
        peer.reserved.is_some(),
        peer.service.is_some(),
    ];
    if set.iter().filter(|x| **x).count() != 1 {
        errors.push(format!(
            "{path}: a peer sets exactly one of selector, cidr, reserved or service"
        ));
        return None;
    }
    if let Some(service) = &peer.service {
        if service.namespace.is_empty() || service.name.is_empty() {
            errors.push(format!(
                "{path}.service: needs both namespace and name (got {service:?})"
            ));
            return None;
        }
        return Some(PeerSel::Service(service.clone()));
    }
    if let Some(sel) = &peer.selector {
        return Some(PeerSel::Selector(sel.clone()));
    }
    if let Some(r) = peer.reserved {
        return Some(PeerSel::Reserved(r));
    }
    let cidr = peer.cidr.as_deref().unwrap_or_default();
    let Ok(net) = cidr.parse::<IpNet>() else {
        errors.push(format!("{path}.cidr: {cidr:?} is not a valid CIDR"));
        return None;
    };
    let net = net.trunc();
    let mut except = Vec::new();
    for (i, e) in peer.except.iter().flatten().enumerate() {
        match e.parse::<IpNet>() {
            Ok(en) if net.contains(&en) => except.push(en.trunc()),
            Ok(_) => errors.push(format!("{path}.except[{i}]: {e:?} is not inside {net}")),
            Err(_) => errors.push(format!("{path}.except[{i}]: {e:?} is not a valid CIDR")),
        }
    }
    Some(PeerSel::Cidr { net, except })
}

fn prepare_port(path: &str, port: &PortSpec, errors: &mut Vec<String>) -> Option<PortRange> {
    let protocol = port.protocol;
    if protocol.has_ports() {
        if port.icmp_type.is_some() {
            errors.push(format!(
                "{path}.icmpType: only ICMP and ICMPv6 have message types"
            ));
            return None;
        }
        let (first, last) = match (port.port, port.end_port) {
            (None, None) => (0, u16::MAX),
            (Some(p), None) => (p, p),
            (Some(p), Some(e)) if e >= p => (p, e),
            (Some(p), Some(e)) => {
                errors.push(format!("{path}.endPort: {e} is below port {p}"));
                return None;
            }
            (None, Some(_)) => {
                errors.push(format!("{path}.endPort: needs port"));
                return None;
            }
        };
        Some(PortRange {
            protocol,
            first,
            last,
        })
    } else {
        if port.port.is_some() || port.end_port.is_some() {
            errors.push(format!(
                "{path}.port: {protocol:?} has no ports; use icmpType"
            ));
            return None;
        }
        let (first, last) = port
            .icmp_type
            .map_or((0, 255), |t| (u16::from(t), u16::from(t)));
        Some(PortRange {
            protocol,
            first,
            last,
        })
    }
}
