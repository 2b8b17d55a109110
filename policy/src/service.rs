//! Services as rule peers: what the compiler keeps of EndpointSlices, and
//! how a Service's backends become the identities a `service` peer names.
//!
//! ```text
//!  EndpointSlice (kubernetes.io/service-name: db) ─► endpoints[]
//!      targetRef Pod prod/db-1 ──► that pod's identity
//!      addresses only (no pod) ──► the identity of the address:
//!                                  a pod or node that owns it, else the
//!                                  most specific labeled CIDR, else world
//!  Service prod/db = the union over its slices
//! ```
//!
//! Every endpoint a slice lists counts, ready or not: kube-proxy starts
//! sending to a backend the moment it turns ready, and the rule must be in
//! place by then rather than one compile later.

use std::fmt;
use std::net::IpAddr;

pub use bulkhead_api::policy::ServiceRef;

use crate::snapshot::PodKey;

/// An EndpointSlice's `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointSliceKey {
    /// The namespace (the Service's).
    pub namespace: String,
    /// The slice's own name.
    pub name: String,
}

impl EndpointSliceKey {
    /// A key from its two parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for EndpointSliceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the compiler needs of an EndpointSlice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSlice {
    /// The Service it belongs to (label `kubernetes.io/service-name`); a
    /// slice without that label backs no Service a peer can name.
    pub service: Option<ServiceRef>,
    /// Its endpoints.
    pub endpoints: Vec<Backend>,
}

/// One endpoint of a slice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// `addresses`.
    pub addresses: Vec<IpAddr>,
    /// `targetRef`, when it is a Pod.
    pub pod: Option<PodKey>,
}
