//! The Bulkhead lab: a Kubernetes cluster of network namespaces on one
//! machine, with the real operator and agents, for end-to-end tests and demos.
//!
//! ```text
//!   Lab::start(LabSpec) ─────────────────────────────────────────────── lab/
//!    ├─ topology   bridge bh<L>br 172.31.L.1 ── veth ── netns bh-L-node-i (172.31.L.1i)
//!    │                                                   └─ veth<j> ── netns bh-L-pod-i-j (10.L.i.1j)
//!    ├─ ControlPlane  etcd + kube-apiserver on 172.31.L.1:6443, CRDs, RBAC on
//!    │     Pki: CA ─► serving cert; client certs admin (system:masters),
//!    │          operator (bulkhead-operator), agent-<node> (bulkhead:agent:<node>)
//!    ├─ kubelet    Nodes (InternalIP), Namespaces, Pods (nodeName, Running, podIP)
//!    ├─ operator   bulkhead-operator replicas as user bulkhead-operator
//!    └─ agent      bulkhead-agent per node, `ip netns exec`, cluster or standalone mode
//!
//!   tests ── Kubectl (real kubectl) / observe (typed reads) / traffic (real packets)
//!         └─ Helm (real helm) installs charts/bulkhead into a ControlPlane
//!   bulkhead-lab up|down|status|prune ── lab::{up, down, status, prune}
//! ```
//!
//! Every process is started through `process::Process`, which records a pid
//! file, and everything else `up` makes (namespaces, bridge, bpffs mount,
//! pods) is in the state directory's `lab.json`, so `down` (another
//! invocation) removes exactly what `up` made. A lab's id (1..=250) is
//! claimed by creating its bridge, so labs run side by side; the bridge's
//! alias names the lab's owner and directory, so `prune` can tell crashed
//! labs from live ones.

pub mod agent;
pub mod apiserver;
pub mod binaries;
pub mod certs;
pub mod collector;
pub mod control_plane;
pub mod error;
pub mod etcd;
pub mod helm;
pub mod kubeconfig;
pub mod kubectl;
pub mod kubelet;
pub mod lab;
pub mod netns;
pub mod observe;
pub mod operator;
pub mod process;
pub mod propagation;
pub mod services;
pub mod state;
pub mod topology;
pub mod traffic;
pub mod wait;

pub use binaries::Binaries;
pub use certs::Identity;
pub use control_plane::{ControlPlane, ControlPlaneConfig};
pub use error::{Error, Result};
pub use helm::Helm;
pub use kubectl::Kubectl;
pub use lab::{Agents, Lab, LabPod, LabSpec, Workload};
pub use state::{LabRecord, StateDir};
pub use traffic::{Ports, Proto};
