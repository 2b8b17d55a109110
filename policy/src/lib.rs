//! The Bulkhead policy compiler: a pure function from a snapshot of the
//! cluster (plus the previous identity allocation) to per-node rule maps.
//!
//! ```text
//!  Snapshot ─────────────────────────────────────────────────────────────┐
//!   pods, namespaces, nodes, external nodes        LabelMappings         │
//!            │                                          │                │
//!            └──────────► labels.rs: segmentation labels per endpoint ◄──┘
//!                           (priority, conflicts, the unlabeled queue)
//!                                   │
//!                     identities.rs: one number per label set (stable)
//!                                   │
//!   SegmentationPolicies ─┬► selection.rs: scope and peers as identity sets,
//!   NetworkPolicies ──────┘         │      CIDR prefixes as identities, modes
//!   (opt-in: netpol.rs translates them, and puts k8s: labels in pod identities)
//!                                   ▼
//!        node_map.rs: one NodeRuleMap per node   shards.rs: IdentityMap shards
//!                                   │
//!            verdict.rs (the one verdict function) ◄── simulate.rs
//! ```
//!
//! No I/O, no clients, no async: the operator and the CLI feed it, tests
//! drive it directly. [`Compiler`] keeps indexes so a single change
//! recompiles only what it touches; [`compile`] is the whole thing at once,
//! and both give equal [`Output`]s.

#![forbid(unsafe_code)]

mod compile;
pub mod convert;
pub mod exception;
pub mod governance;
pub mod identities;
mod labels;
pub mod netpol;
mod node_map;
pub mod output;
pub mod recertify;
mod selection;
pub mod service;
mod shards;
pub mod simulate;
pub mod snapshot;
pub mod verdict;

pub use compile::{compile, CompileOptions, Compiler};
pub use identities::IdentityAllocation;
pub use output::{EndpointFacts, EndpointRef, LabelConflict, MappingFacts, Output, PolicyFacts};
pub use simulate::{simulate, FlowEnd, FlowQuery, FlowVerdict, SimulateError};
pub use snapshot::{Change, Snapshot};
pub use verdict::Verdict;
