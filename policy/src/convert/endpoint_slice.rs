//! discovery.k8s.io/v1 EndpointSlice → what `service` peers read of it.

use k8s_openapi::api::discovery::v1 as discovery;

use super::{name_of, parse_ip, ConvertError};
use crate::service::{Backend, EndpointSlice, EndpointSliceKey, ServiceRef};
use crate::snapshot::PodKey;

/// The label that ties a slice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An EndpointSlice's key, its Service and its endpoints' addresses and pods.
///
/// FQDN slices carry no address a packet has, so their endpoints keep only
/// their pod (if any).
pub fn endpoint_slice(
    obj: &discovery::EndpointSlice,
) -> Result<(EndpointSliceKey, EndpointSlice), ConvertError> {
    let meta = &obj.metadata;
    let namespace = meta.namespace.clone().filter(|ns| !ns.is_empty());
    let namespace = namespace.unwrap_or_else(|| "default".to_string());
    let name = name_of("EndpointSlice", meta, Some(&namespace))?;
    let key = EndpointSliceKey::new(namespace.clone(), name);
    let service = (meta.labels.as_ref())
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .filter(|s| !s.is_empty())
        .map(|s| ServiceRef {
            namespace: namespace.clone(),
            name: s.clone(),
        });
    let has_addresses = obj.address_type == "IPv4" || obj.address_type == "IPv6";
    let mut endpoints = Vec::with_capacity(obj.endpoints.len());
    for (i, endpoint) in obj.endpoints.iter().enumerate() {
        let mut addresses = Vec::new();
        for (j, text) in endpoint.addresses.iter().enumerate() {
            if !has_addresses {
                break;
            }
            let field = format!("endpoints[{i}].addresses[{j}]");
            let address = parse_ip("EndpointSlice", &key.to_string(), &field, text)?;
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        let pod = (endpoint.target_ref.as_ref())
            .filter(|r| r.kind.as_deref() == Some("Pod"))
            .and_then(|r| {
                let ns = r.namespace.clone().filter(|ns| !ns.is_empty());
                let name = r.name.clone().filter(|n| !n.is_empty())?;
                Some(PodKey::new(ns.unwrap_or_else(|| namespace.clone()), name))
            });
        endpoints.push(Backend { addresses, pod });
    }
    Ok((key, EndpointSlice { service, endpoints }))
}
