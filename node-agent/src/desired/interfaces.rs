//! Which pod veth each endpoint sits behind, so the datapath knows a
//! packet's sender from the interface it arrived on (anti-spoofing) instead
//! of from the source address the packet claims.
//!
//! ```text
//!  /proc/net/route, /proc/net/ipv6_route ── host routes (/32, /128) ─► device
//!  /sys/class/net/<device>/ifindex ─────────────────────────────────► ifindex
//!  Desired.pods (name, addresses) ── bind() ─► endpoints with ifindex, ifaces
//! ```
//!
//! Routed-veth CNIs (Calico, Cilium, the lab) give every pod address a host
//! route through the pod's veth. A pod is bound when its routed addresses
//! all leave by one interface that no other pod uses; all of its addresses
//! are then bound to it (a pod has one interface). A pod with no such route,
//! or with routes through two interfaces, stays unbound (ifindex 0): its
//! packets are checked only against the addresses bound elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::layout::{EndpointInfo, EndpointKey};

use super::addresses::address_bytes;

/// One pod endpoint's addresses, as the rule map lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodAddresses {
    pub name: String,
    pub keys: Vec<EndpointKey>,
}

/// What the endpoint and interface maps hold once endpoints are bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bound {
    pub endpoints: BTreeMap<EndpointKey, EndpointInfo>,
    /// Host-side ifindex → the endpoint behind it.
    pub ifaces: BTreeMap<u32, EndpointInfo>,
    /// Pods left unbound, with why.
    pub unbound: Vec<(String, &'static str)>,
}

/// Binds `pods` to interfaces by `routes` (address → ifindex of its host route).
pub fn bind(
    endpoints: &BTreeMap<EndpointKey, EndpointInfo>,
    pods: &[PodAddresses],
    routes: &HashMap<EndpointKey, u32>,
) -> Bound {
    let mut bound = Bound {
        endpoints: endpoints.clone(),
        ..Bound::default()
    };
    let mut users: HashMap<u32, usize> = HashMap::new();
    let mut choice: Vec<Option<u32>> = Vec::with_capacity(pods.len());
    for pod in pods {
        let mut found: Vec<u32> = pod
            .keys
            .iter()
            .filter_map(|k| routes.get(k))
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        let pick = match found.as_slice() {
            [] => {
                bound
                    .unbound
                    .push((pod.name.clone(), "no host route to its addresses"));
                None
            }
            [one] => Some(*one),
            _ => {
                bound.unbound.push((
                    pod.name.clone(),
                    "its addresses route through several interfaces",
                ));
                None
            }
        };
        if let Some(ifindex) = pick {
            *users.entry(ifindex).or_default() += 1;
        }
        choice.push(pick);
    }
    for (pod, pick) in pods.iter().zip(choice) {
        let Some(ifindex) = pick else { continue };
        if users.get(&ifindex).copied().unwrap_or(0) > 1 {
            bound.unbound.push((
                pod.name.clone(),
                "its interface carries another pod's addresses too",
            ));
            continue;
        }
        for key in &pod.keys {
            if let Some(info) = bound.endpoints.get_mut(key) {
                info.ifindex = ifindex;
                bound.ifaces.insert(ifindex, *info);
            }
        }
    }
    bound
}

/// Host routes (`/32`) of `/proc/net/route`: address → device.
pub fn parse_ipv4_routes(text: &str) -> Vec<(IpAddr, String)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dev, dest, mask) = (f.first()?, f.get(1)?, f.get(7)?);
            // Printed as the raw __be32 read as a host integer.
            let dest = u32::from_str_radix(dest, 16).ok()?.to_ne_bytes();
            (u32::from_str_radix(mask, 16).ok()? == u32::MAX)
                .then(|| (IpAddr::V4(Ipv4Addr::from(dest)), (*dev).to_string()))
        })
        .collect()
}

/// Host routes (`/128`) of `/proc/net/ipv6_route`: address → device.
pub fn parse_ipv6_routes(text: &str) -> Vec<(IpAddr, String)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dest, plen, dev) = (f.first()?, f.get(1)?, f.get(9)?);
            if u8::from_str_radix(plen, 16).ok()? != 128 || dest.len() != 32 || *dev == "lo" {
                return None;
            }
            let bits = u128::from_str_radix(dest, 16).ok()?;
            Some((IpAddr::V6(Ipv6Addr::from(bits)), (*dev).to_string()))
        })
        .collect()
}

/// The host routes of this network namespace, as endpoint keys → ifindex.
/// Unreadable files and vanished devices give fewer routes, never an error:
/// an endpoint without a route stays unbound.
pub fn read_host_routes() -> HashMap<EndpointKey, u32> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let mut by_dev: HashMap<String, Option<u32>> = HashMap::new();
    let mut routes = HashMap::new();
    let v4 = parse_ipv4_routes(&read("/proc/net/route"));
    let v6 = parse_ipv6_routes(&read("/proc/net/ipv6_route"));
    for (addr, dev) in v4.into_iter().chain(v6) {
        let ifindex = *by_dev
            .entry(dev.clone())
            .or_insert_with(|| crate::attach::ifindex(&dev).ok());
        if let Some(ifindex) = ifindex {
            let (family, bytes) = address_bytes(addr);
            routes.insert(
                EndpointKey {
                    family,
                    pad: [0; 3],
                    addr: bytes,
                },
                ifindex,
            );
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
veth1\t0A01010A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0
cni0\t0000010A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";
    const ROUTE6: &str = "fd420001000100000000000000000000a 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001 veth1
fd420001000100000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 cni0
fd42000100010000000000000000000a 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000400 00000001 00000000 00000001 veth1
fd42000100010000000000000000000b 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 80200001       lo
";

    #[test]
    fn host_routes_only() {
        let v4 = parse_ipv4_routes(ROUTE);
        assert_eq!(
            v4,
            vec![("10.1.1.10".parse().expect("ip"), "veth1".to_string())]
        );
        let v6 = parse_ipv6_routes(ROUTE6);
        assert_eq!(
            v6,
            vec![("fd42:1:1::a".parse().expect("ip"), "veth1".to_string())]
        );
    }

    fn key(a: &str) -> EndpointKey {
        let (family, addr) = address_bytes(a.parse().expect("ip"));
        EndpointKey {
            family,
            pad: [0; 3],
            addr,
        }
    }

    fn info(identity: u32) -> EndpointInfo {
        EndpointInfo {
            identity,
            ..EndpointInfo::default()
        }
    }

    #[test]
    fn binding_by_routes() {
        let pods = [
            ("a", vec!["10.0.0.1", "fd00::1"], 100),
            ("b", vec!["10.0.0.2"], 101),
            ("c", vec!["10.0.0.3"], 102),
            ("d", vec!["10.0.0.4", "fd00::4"], 103),
            ("e", vec!["10.0.0.5"], 104),
            ("f", vec!["10.0.0.6"], 105),
        ];
        let endpoints: BTreeMap<_, _> = pods
            .iter()
            .flat_map(|(_, addrs, id)| addrs.iter().map(move |a| (key(a), info(*id))))
            .collect();
        let pods: Vec<PodAddresses> = pods
            .iter()
            .map(|(n, addrs, _)| PodAddresses {
                name: n.to_string(),
                keys: addrs.iter().map(|a| key(a)).collect(),
            })
            .collect();
        // a: v4 routed only, still both bound; b: none; c: shares 7 with e;
        // d: two interfaces; f: alone on 9.
        let routes: HashMap<_, _> = [
            ("10.0.0.1", 5),
            ("10.0.0.3", 7),
            ("10.0.0.5", 7),
            ("10.0.0.4", 8),
            ("fd00::4", 10),
            ("10.0.0.6", 9),
        ]
        .into_iter()
        .map(|(a, i)| (key(a), i))
        .collect();
        let bound = bind(&endpoints, &pods, &routes);
        let ifindex = |a| bound.endpoints[&key(a)].ifindex;
        let table = [
            ("10.0.0.1", 5),
            ("fd00::1", 5),
            ("10.0.0.2", 0),
            ("10.0.0.3", 0),
            ("10.0.0.4", 0),
            ("fd00::4", 0),
            ("10.0.0.5", 0),
            ("10.0.0.6", 9),
        ];
        for (a, want) in table {
            assert_eq!(ifindex(a), want, "{a}");
        }
        assert_eq!(bound.ifaces.keys().copied().collect::<Vec<_>>(), vec![5, 9]);
        assert_eq!(bound.ifaces[&5].identity, 100);
        let unbound: Vec<&str> = bound.unbound.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(unbound, vec!["b", "d", "c", "e"]);
    }
}
