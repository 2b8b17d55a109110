//! Bulkhead's node agent: the datapath half.
//!
//! ```text
//!   NodeRuleMap + IdentityMap shards (files, or the API server later)
//!        │ spec.rs: read, YAML or JSON, object or bare spec
//!        ▼
//!   desired/: validate + translate ──► Desired { ipcache, endpoints, policy, failsafe }
//!        │                                         (pure; errors name object and field)
//!        ▼
//!   datapath.rs ── maps/: diff into the pinned maps, bump generation
//!               ── attach.rs: TCX links on pod veths and host interfaces
//!               ── flows/: ring buffer ─► per-edge counts ─► flow/v1 records
//!                  ─► JSON-lines log, batches to the collector (spooled)
//!   telemetry.rs: /metrics, /healthz, /readyz
//!        ▲
//!   loader.rs: the C objects of bpf/, embedded by build.rs; layout.rs mirrors
//!              every struct of bpf/include/ (tests/layout.rs proves it)
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod attach;
pub mod cluster;
pub mod cni;
pub mod datapath;
pub mod desired;
pub mod error;
pub mod flows;
pub mod layout;
pub mod loader;
pub mod maps;
pub mod outputs;
pub mod spec;
pub mod standalone;
pub mod telemetry;
pub mod upgrade;

pub use datapath::{Datapath, InterfaceConfig};
pub use desired::Desired;
pub use error::{Error, Result};
