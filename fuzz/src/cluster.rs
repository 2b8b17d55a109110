//! A small cluster and a list of changes to it, for the compiler target.
//!
//! Every name, label and address comes from a few fixed values (as in
//! policy/tests/properties/strategies.rs): the bytes pick among them.

use std::net::IpAddr;

use arbitrary::{Arbitrary, Result, Unstructured};
use bulkhead_api::policy::{
    Action, EnforcementMode, Peer, PortSpec, Protocol, ReservedPeer, Rule, Scope,
    SegmentationPolicySpec,
};
use bulkhead_api::selector::{LabelSelectorRequirement, SelectorOperator};
use bulkhead_api::{LabelMappingSpec, LabelSelector, Labels};
use bulkhead_policy::snapshot::{Namespace, Node, Pod, PodKey};
use bulkhead_policy::{Change, CompileOptions, Snapshot};

const LABELS: [(&str, &str); 9] = [
    ("app", "web"),
    ("app", "db"),
    ("app", "api"),
    ("app", "ext"),
    ("tier", "fe"),
    ("tier", "be"),
    ("env", "prod"),
    ("env", "dev"),
    ("zone", "a"),
];
const CIDRS: [&str; 9] = [
    "10.1.0.0/16",
    "10.9.0.0/16",
    "10.9.1.0/24",
    "10.9.1.128/25",
    "0.0.0.0/0",
    "10.0.0.0/8",
    "192.168.0.0/24",
    "fd00::/8",
    "fd00:9::/32",
];
const PORTS: [u16; 6] = [0, 1, 80, 443, 5432, 65535];
/// Label mappings that may exist (each one picked by a bit).
const MAPPINGS: [(&str, &str); 4] = [
    ("base", "priority: 10\nrules:\n- match: {pods: {}}\n  copyLabels:\n  - {key: app, fromLabel: app}\n  - {key: tier, fromLabel: tier}\n  - {key: env, fromLabel: env, source: namespace}\n  - {key: zone, fromLabel: zone, source: node}"),
    ("ranges", "priority: 10\nrules:\n- match: {cidrs: [10.9.0.0/16]}\n  labels: {app: ext}"),
    ("web-is-backend", "priority: 10\nrules:\n- match: {pods: {podSelector: {matchLabels: {app: web}}}}\n  labels: {tier: be}"),
    ("nodes", "priority: 5\nrules:\n- match: {nodes: {}}\n  copyLabels: [{key: zone, fromLabel: zone}]\n- match: {hostnames: [n1]}\n  labels: {app: db}"),
];

fn pick<'a, T>(u: &mut Unstructured<'_>, from: &'a [T]) -> Result<&'a T> {
    u.choose(from)
}

fn labels(u: &mut Unstructured<'_>) -> Result<Labels> {
    let mut out = Labels::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let (k, v) = pick(u, &LABELS)?;
        out.insert((*k).into(), (*v).into());
    }
    Ok(out)
}

fn selector(u: &mut Unstructured<'_>) -> Result<LabelSelector> {
    if u.ratio(2, 3)? {
        return Ok(LabelSelector {
            match_labels: labels(u)?,
            match_expressions: Vec::new(),
        });
    }
    let (key, value) = pick(u, &LABELS)?;
    let operator = *pick(
        u,
        &[
            SelectorOperator::In,
            SelectorOperator::NotIn,
            SelectorOperator::Exists,
            SelectorOperator::DoesNotExist,
        ],
    )?;
    let values = match operator {
        SelectorOperator::In | SelectorOperator::NotIn => vec![(*value).to_string()],
        _ => Vec::new(),
    };
    Ok(LabelSelector {
        match_labels: Labels::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: (*key).into(),
            operator,
            values,
        }],
    })
}

fn peer(u: &mut Unstructured<'_>) -> Result<Peer> {
    Ok(match u.int_in_range(0..=2)? {
        0 => Peer {
            selector: Some(selector(u)?),
            ..Peer::default()
        },
        1 => Peer {
            cidr: Some((*pick(u, &CIDRS)?).into()),
            except: if u.arbitrary()? {
                Some(vec![(*pick(u, &CIDRS)?).into()])
            } else {
                None
            },
            ..Peer::default()
        },
        _ => Peer {
            reserved: Some(*pick(
                u,
                &[
                    ReservedPeer::World,
                    ReservedPeer::Host,
                    ReservedPeer::RemoteNode,
                    ReservedPeer::Unlabeled,
                ],
            )?),
            ..Peer::default()
        },
    })
}

fn port_spec(u: &mut Unstructured<'_>) -> Result<PortSpec> {
    let protocol = *pick(
        u,
        &[Protocol::Tcp, Protocol::Udp, Protocol::Sctp, Protocol::Icmp],
    )?;
    if protocol == Protocol::Icmp {
        return Ok(PortSpec {
            protocol,
            port: None,
            end_port: None,
            icmp_type: Some(*pick(u, &[0u8, 3, 8, 11])?),
        });
    }
    let port = if u.arbitrary()? {
        Some(*pick(u, &PORTS)?)
    } else {
        None
    };
    let end_port = match port {
        Some(p) if u.arbitrary()? => Some(p.saturating_add(*pick(u, &[0u16, 1, 400])?)),
        _ => None,
    };
    Ok(PortSpec {
        protocol,
        port,
        end_port,
        icmp_type: None,
    })
}

fn rule(u: &mut Unstructured<'_>) -> Result<Rule> {
    let mut peers = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        peers.push(peer(u)?);
    }
    let mut ports = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        ports.push(port_spec(u)?);
    }
    Ok(Rule {
        ownership: Default::default(),
        expires: None,
        name: None,
        action: *pick(u, &[Action::Allow, Action::Deny, Action::OverrideDeny])?,
        peers,
        ports,
    })
}

fn mode(u: &mut Unstructured<'_>) -> Result<EnforcementMode> {
    Ok(*pick(
        u,
        &[
            EnforcementMode::Visibility,
            EnforcementMode::Selective,
            EnforcementMode::Full,
        ],
    )?)
}

fn policy(u: &mut Unstructured<'_>) -> Result<SegmentationPolicySpec> {
    let scope = if u.ratio(1, 8)? {
        Scope {
            selector: None,
            cluster_wide: true,
        }
    } else {
        Scope {
            selector: Some(selector(u)?),
            cluster_wide: false,
        }
    };
    let enforcement = if u.arbitrary()? { Some(mode(u)?) } else { None };
    let (mut ingress, mut egress) = (Vec::new(), Vec::new());
    for _ in 0..u.int_in_range(0..=2)? {
        ingress.push(rule(u)?);
    }
    for _ in 0..u.int_in_range(0..=2)? {
        egress.push(rule(u)?);
    }
    Ok(SegmentationPolicySpec {
        ownership: Default::default(),
        scope,
        enforcement,
        ingress,
        egress,
        promotion: None,
    })
}

fn pod(u: &mut Unstructured<'_>, slot: u8) -> Result<(PodKey, Pod)> {
    // One host number in 8 collides with slot 0's address.
    let host = if u.ratio(1, 8)? { 1 } else { slot + 1 };
    let mut addresses: Vec<IpAddr> = vec![IpAddr::from([10, 1, 0, host])];
    if u.arbitrary()? {
        addresses.push(IpAddr::from([
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            1,
            u16::from(slot) + 1,
        ]));
    }
    let node = if u.ratio(9, 10)? {
        Some(format!("n{}", u.int_in_range(0..=2)?))
    } else {
        None
    };
    let pod = Pod {
        labels: labels(u)?,
        node,
        addresses,
        host_network: u.ratio(1, 16)?,
        ..Pod::default()
    };
    let ns = u.int_in_range(0..=2)?;
    Ok((PodKey::new(format!("ns{ns}"), format!("p{slot}")), pod))
}

fn node(u: &mut Unstructured<'_>, i: u8) -> Result<(String, Node)> {
    Ok((
        format!("n{i}"),
        Node {
            labels: labels(u)?,
            addresses: vec![IpAddr::from([192, 168, 0, i + 1])],
        },
    ))
}

fn mapping(yaml: &str) -> LabelMappingSpec {
    serde_yaml::from_str(yaml).expect("the fixed mappings parse")
}

/// A cluster, the compiler's options, and changes to apply one by one.
#[derive(Debug)]
pub struct Scenario {
    pub options: CompileOptions,
    pub snapshot: Snapshot,
    pub changes: Vec<Change>,
}

fn change(u: &mut Unstructured<'_>) -> Result<Change> {
    Ok(match u.int_in_range(0..=9)? {
        0 | 1 => {
            let slot = u.int_in_range(0..=11)?;
            let (k, p) = pod(u, slot)?;
            Change::UpsertPod(k, p)
        }
        2 => Change::DeletePod(PodKey::new(
            format!("ns{}", u.int_in_range(0..=2)?),
            format!("p{}", u.int_in_range(0..=11)?),
        )),
        3 => Change::UpsertNamespace(
            format!("ns{}", u.int_in_range(0..=3)?),
            Namespace { labels: labels(u)? },
        ),
        4 => Change::DeleteNamespace(format!("ns{}", u.int_in_range(0..=3)?)),
        5 => {
            let i = u.int_in_range(0..=3)?;
            let (n, node) = node(u, i)?;
            Change::UpsertNode(n, node)
        }
        6 => Change::DeleteNode(format!("n{}", u.int_in_range(0..=3)?)),
        7 => Change::UpsertPolicy(format!("pol{}", u.int_in_range(0..=4)?), policy(u)?),
        8 => Change::DeletePolicy(format!("pol{}", u.int_in_range(0..=4)?)),
        _ => {
            let (name, yaml) = pick(u, &MAPPINGS)?;
            if u.arbitrary()? {
                Change::UpsertMapping((*name).into(), mapping(yaml))
            } else {
                Change::DeleteMapping((*name).into())
            }
        }
    })
}

impl<'a> Arbitrary<'a> for Scenario {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        let options = CompileOptions {
            default_mode: mode(u)?,
            identity_shards: *pick(u, &[1u32, 4, 16])?,
            ..CompileOptions::default()
        };
        let mut snapshot = Snapshot::default();
        for i in 0..u.int_in_range(1..=3)? {
            let (n, node) = node(u, i)?;
            snapshot.nodes.insert(n, node);
        }
        for i in 0..3 {
            if u.ratio(4, 5)? {
                let labels = labels(u)?;
                snapshot
                    .namespaces
                    .insert(format!("ns{i}"), Namespace { labels });
            }
        }
        for slot in 0..u.int_in_range(0..=8)? {
            let (k, p) = pod(u, slot)?;
            snapshot.pods.insert(k, p);
        }
        for (name, yaml) in MAPPINGS {
            if u.ratio(2, 3)? {
                snapshot.mappings.insert(name.into(), mapping(yaml));
            }
        }
        for i in 0..u.int_in_range(0..=4)? {
            snapshot.policies.insert(format!("pol{i}"), policy(u)?);
        }
        let mut changes = Vec::new();
        for _ in 0..u.int_in_range(0..=10)? {
            changes.push(change(u)?);
        }
        Ok(Scenario {
            options,
            snapshot,
            changes,
        })
    }
}
