//! What the maps should hold for a rule map and its identity shards: a pure
//! function, so it can be validated (and tested) before any map is touched.
//!
//! ```text
//!  IdentityMap shards ── prefixes ──┐
//!  NodeRuleMap.host.addresses ──────┴─► ipcache v4/v6 (host addresses → HOST)
//!  NodeRuleMap.host + endpoints ──────► endpoints (address → identity, mode, flags)
//!  NodeRuleMap.rules ─── flatten ─────► policy (see policy.rs)
//!  NodeRuleMap.failsafePorts ─────────► failsafe
//!  NodeRuleMap.endpoints + host routes ► endpoints' ifindex, ifaces (interfaces.rs)
//! ```

pub mod addresses;
pub mod interfaces;
pub mod policy;

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_api::identity::HOST;
use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::rule_map::{LocalEndpoint, NodeRuleMapSpec};
use bulkhead_api::IdentityMapSpec;
use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::layout::{
    EndpointInfo, EndpointKey, FailsafeKey, PolicyKey, PolicyValue, EP_F_HOST, MODE_FULL,
    MODE_SELECTIVE, MODE_VISIBILITY,
};
use addresses::{address_bytes, parse_host_address, parse_prefix};

/// The complete, validated content of every programmable map.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// (prefix bits, address) → identity.
    pub ipcache_v4: BTreeMap<(u32, [u8; 4]), u32>,
    pub ipcache_v6: BTreeMap<(u32, [u8; 16]), u32>,
    pub endpoints: BTreeMap<EndpointKey, EndpointInfo>,
    pub policy: BTreeMap<PolicyKey, PolicyValue>,
    pub failsafe: BTreeSet<FailsafeKey>,
    /// Each pod endpoint's addresses, for binding it to its interface.
    pub pods: Vec<interfaces::PodAddresses>,
}

/// The map's mode byte.
pub fn mode_byte(mode: EnforcementMode) -> u8 {
    match mode {
        EnforcementMode::Visibility => MODE_VISIBILITY,
        EnforcementMode::Selective => MODE_SELECTIVE,
        EnforcementMode::Full => MODE_FULL,
    }
}

impl Desired {
    /// Validates and translates; errors name the object and field at fault.
    pub fn build(rule_map: &NodeRuleMapSpec, shards: &[IdentityMapSpec]) -> Result<Self> {
        let mut desired = Desired::default();
        let mut origin: BTreeMap<IpNet, (u32, String)> = BTreeMap::new();
        for shard in shards {
            let object = format!("IdentityMap shard {}", shard.shard);
            for (i, entry) in shard.prefixes.iter().enumerate() {
                let field = format!("prefixes[{i}].cidr");
                let net =
                    parse_prefix(&entry.cidr).map_err(|m| Error::invalid(&object, &field, m))?;
                if let Some((other, where_)) = origin.get(&net) {
                    if *other != entry.identity {
                        return Err(Error::invalid(
                            &object,
                            &field,
                            format!(
                                "{net} maps to {} here and to {other} in {where_}",
                                entry.identity
                            ),
                        ));
                    }
                }
                origin.insert(net, (entry.identity, format!("{object} {field}")));
                desired.insert_prefix(net, entry.identity);
            }
        }
        desired.add_endpoint(&rule_map.host, "host", true)?;
        for (i, endpoint) in rule_map.endpoints.iter().enumerate() {
            desired.add_endpoint(endpoint, &format!("endpoints[{i}]"), false)?;
        }
        for (i, rule) in rule_map.rules.iter().enumerate() {
            for (j, range) in rule.ports.iter().enumerate() {
                if range.first > range.last {
                    return Err(Error::invalid(
                        "NodeRuleMap",
                        format!("rules[{i}] (id {}).ports[{j}]", rule.id),
                        format!("first {} is after last {}", range.first, range.last),
                    ));
                }
            }
            if rule.id == 0 {
                return Err(Error::invalid(
                    "NodeRuleMap",
                    format!("rules[{i}].id"),
                    "rule ids start at 1",
                ));
            }
        }
        desired.policy = policy::flatten(&rule_map.rules);
        for fp in &rule_map.failsafe_ports {
            desired.failsafe.insert(FailsafeKey {
                protocol: fp.protocol.number(),
                direction: policy::direction_byte(fp.direction),
                port_be: fp.port.to_be(),
            });
        }
        Ok(desired)
    }

    fn insert_prefix(&mut self, net: IpNet, identity: u32) {
        match net {
            IpNet::V4(n) => {
                self.ipcache_v4
                    .insert((u32::from(n.prefix_len()), n.addr().octets()), identity);
            }
            IpNet::V6(n) => {
                self.ipcache_v6
                    .insert((u32::from(n.prefix_len()), n.addr().octets()), identity);
            }
        }
    }

    fn add_endpoint(&mut self, endpoint: &LocalEndpoint, field: &str, is_host: bool) -> Result<()> {
        let mut pod = interfaces::PodAddresses {
            name: endpoint.name.clone(),
            keys: Vec::new(),
        };
        for (i, text) in endpoint.addresses.iter().enumerate() {
            let field = format!("{field}.addresses[{i}]");
            let addr =
                parse_host_address(text).map_err(|m| Error::invalid("NodeRuleMap", &field, m))?;
            let (family, bytes) = address_bytes(addr);
            let key = EndpointKey {
                family,
                pad: [0; 3],
                addr: bytes,
            };
            let info = EndpointInfo {
                identity: endpoint.identity,
                mode: mode_byte(endpoint.mode),
                flags: if is_host { EP_F_HOST } else { 0 },
                pad: 0,
                ifindex: 0,
            };
            if self.endpoints.insert(key, info).is_some() {
                return Err(Error::invalid(
                    "NodeRuleMap",
                    &field,
                    format!(
                        "{addr} belongs to more than one endpoint ({})",
                        endpoint.name
                    ),
                ));
            }
            if is_host {
                // On this node its own addresses are the reserved `host` peer.
                self.insert_prefix(IpNet::from(addr), HOST);
            } else {
                pod.keys.push(key);
            }
        }
        if !is_host {
            self.pods.push(pod);
        }
        Ok(())
    }
}
