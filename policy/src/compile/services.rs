//! `service` peers: each Service a policy names, resolved to the identities
//! of its backends after every relabel; a policy whose Services' backends
//! moved is reselected whole (see `crate::service` for the rules).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use bulkhead_api::identity::WORLD;
use ipnet::IpNet;

use super::{Compiler, Dirty};
use crate::output::EndpointRef;
use crate::service::{Backend, ServiceRef};

impl Compiler {
    /// Re-resolves the backends of every Service a policy names; marks the
    /// policies naming a Service whose identities changed for reselection.
    pub(super) fn refresh_services(&mut self, dirty: &mut Dirty) {
        let wanted: BTreeSet<&ServiceRef> =
            self.policies.values().flat_map(|p| p.services()).collect();
        if wanted.is_empty() && self.universe.services.is_empty() {
            return;
        }
        let mut fresh: BTreeMap<ServiceRef, BTreeSet<u32>> = wanted
            .iter()
            .map(|s| ((*s).clone(), BTreeSet::new()))
            .collect();
        for slice in self.snapshot.endpoint_slices.values() {
            if let Some(ids) = slice.service.as_ref().and_then(|s| fresh.get_mut(s)) {
                for backend in &slice.endpoints {
                    ids.extend(self.backend_identities(backend));
                }
            }
        }
        let old = &self.universe.services;
        let moved: BTreeSet<&ServiceRef> = (fresh.keys().chain(old.keys()))
            .filter(|s| fresh.get(*s) != old.get(*s))
            .collect();
        if moved.is_empty() {
            return;
        }
        for (name, policy) in &self.policies {
            if policy.services().any(|s| moved.contains(s)) {
                dirty.policies.insert(name.clone());
            }
        }
        self.universe.services = fresh;
    }

    /// A backend's identities: its pod's, when the slice names a pod the
    /// compiler governs (none while that pod has no address yet); else
    /// those of its addresses, as the datapath would see them.
    fn backend_identities(&self, backend: &Backend) -> Vec<u32> {
        if let Some(key) = &backend.pod {
            match self.snapshot.pods.get(key) {
                Some(pod) if !pod.host_network => {
                    let ep = EndpointRef::Pod(key.clone());
                    return self
                        .out
                        .endpoints
                        .get(&ep)
                        .map(|f| f.identity)
                        .into_iter()
                        .collect();
                }
                // Not seen yet: wait for it rather than guess from the address.
                None => return Vec::new(),
                // A host-network pod is its node: resolve the address.
                Some(_) => {}
            }
        }
        let addresses = backend.addresses.iter();
        addresses.map(|a| self.identity_of_address(*a)).collect()
    }

    /// The identity the longest prefix holding `address` maps to (a pod, a
    /// node, a labeled or named CIDR), else `world`.
    pub(super) fn identity_of_address(&self, address: IpAddr) -> u32 {
        let longest = if address.is_ipv4() { 32 } else { 128 };
        (0..=longest)
            .rev()
            .filter_map(|len| IpNet::new(address, len).ok().map(|n| n.trunc()))
            .find_map(|net| {
                let owner = self.addr_owners.get(&net)?.first()?;
                self.out.endpoints.get(owner).map(|f| f.identity)
            })
            .unwrap_or(WORLD)
    }
}
