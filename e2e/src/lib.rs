//! The Bulkhead lab: a real control plane on one machine, for end-to-end
//! tests and demos.
//!
//! ```text
//!   e2e/tools.sh ──builds/finds──► Binaries { kube-apiserver, etcd, kubectl }
//!                                          │
//!   ControlPlane::start(dir) ──────────────┤
//!     StateDir  (dir: pki/ kubeconfig/ etcd/ apiserver/ pids/ logs/ lab.json)
//!     Pki       CA ─signs─► apiserver serving cert (bind address, 127.0.0.1, localhost)
//!                   └────► client certs: admin (system:masters),
//!                          operator (bulkhead-operator), agent-<node> (bulkhead:agent:<node>
//!                          in bulkhead:agents)
//!     Etcd      loopback, plain HTTP, data in dir/etcd
//!     ApiServer TLS + client certs, Node,RBAC, SA keys ──► etcd; stop/start on the same URL
//!     kubectl apply crds/*.yaml (or $BULKHEAD_CRDS), wait Established
//!                                          │
//!   tests ── Kubectl (real kubectl, --kubeconfig) ──► API server
//!   bulkhead-lab up|down|status ── lab::{up, down, status}
//! ```
//!
//! Every process is started through `process::Process`, which records a pid
//! file, so `down` (another invocation) stops exactly what `up` started.
//! The parts that join later (network namespaces, operator, agents) are more
//! steps in `lab::up`: an agent inside a node's namespace cannot reach the
//! host's loopback, so such a lab binds the API server to an address on the
//! bridge (`ControlPlaneConfig::bind_address`) and gets agent kubeconfigs from
//! `ControlPlane::agent_kubeconfig`.

pub mod agent;
pub mod apiserver;
pub mod binaries;
pub mod certs;
pub mod control_plane;
pub mod error;
pub mod etcd;
pub mod kubeconfig;
pub mod kubectl;
pub mod kubelet;
pub mod lab;
pub mod netns;
pub mod observe;
pub mod operator;
pub mod process;
pub mod state;
pub mod topology;
pub mod traffic;
pub mod wait;

pub use binaries::Binaries;
pub use certs::Identity;
pub use control_plane::{ControlPlane, ControlPlaneConfig};
pub use error::{Error, Result};
pub use kubectl::Kubectl;
pub use lab::{Agents, Lab, LabPod, LabSpec, Workload};
pub use state::{LabRecord, StateDir};
pub use traffic::Proto;
