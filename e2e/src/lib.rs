//! The Bulkhead lab: a real control plane on one machine, for end-to-end
//! tests and demos.
//!
//! ```text
//!   e2e/tools.sh ──builds/finds──► Binaries { kube-apiserver, etcd, kubectl }
//!                                          │
//!   ControlPlane::start(dir) ──────────────┤
//!     StateDir  (dir: pki/ kubeconfig/ etcd/ pids/ logs/ lab.json)
//!     Pki       CA ─signs─► apiserver serving cert
//!                   └────► client certs: admin (system:masters),
//!                          operator (bulkhead-operator), agent-<node> (bulkhead:agents)
//!     Etcd      loopback, plain HTTP, data in dir/etcd
//!     ApiServer TLS + client certs, RBAC, SA keys ──► etcd
//!     kubectl apply crds/*.yaml, wait Established
//!                                          │
//!   tests ── Kubectl (real kubectl, --kubeconfig) ──► API server
//!   bulkhead-lab up|down|status ── lab::{up, down, status}
//! ```
//!
//! Processes are recorded with pid files so that `down`, from another
//! invocation, stops exactly what `up` started.

pub mod apiserver;
pub mod binaries;
pub mod certs;
pub mod control_plane;
pub mod error;
pub mod etcd;
pub mod kubeconfig;
pub mod kubectl;
pub mod lab;
pub mod process;
pub mod state;

pub use binaries::Binaries;
pub use certs::Identity;
pub use control_plane::{ControlPlane, ControlPlaneConfig};
pub use error::{Error, Result};
pub use kubectl::Kubectl;
pub use state::{LabRecord, StateDir};
