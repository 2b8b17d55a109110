//! Pure analysis over flow history (`flow/v1` records): no I/O, no tokio.
//!
//! ```text
//!   "app=web,env=prod" ──EndpointMatch::parse──┐
//!   since/until, verdict, port, protocol, node ─┴─► FlowFilter::matches(&FlowRecord)
//!   "source.app,destination.app,port" ──GroupBy::parse──► aggregate(records) ─► Vec<Group>
//!
//!   records ──► talkers (top talkers) · unlabeled (the labeling queue, suggestions)
//!   records + compiled cluster (bulkhead_policy::Output) ──► coverage · exposure
//!                                                       └──► report (all of it; json, csv, html)
//! ```
//!
//! Detections ([`detect`]) raise `alert/v1` alerts from records as they
//! arrive: scans, first flows into sensitive workloads, untrusted traffic
//! into full enforcement, lateral movement on risky ports.
//!
//! Promotion gates ([`promotion`]) decide from would-deny records whether a
//! policy may move to a stricter mode.
//!
//! The same filter and group-by run in the collector (where its stores turn
//! them into SQL and the shared store tests check the SQL against these
//! functions), in the CLI against the collector, and in the CLI offline over
//! an exported history.
//!
//! `recommend` turns history into layered SegmentationPolicies; `whatif`
//! replays history (through `replay`, which rebuilds the endpoints records
//! saw) under today's policy and a draft, with the compiler's own verdicts.

#![forbid(unsafe_code)]

pub mod coverage;
pub mod detect;
mod error;
pub mod exposure;
pub mod promotion;
pub mod query;
pub mod recommend;
pub mod replay;
pub mod report;
pub mod talkers;
#[cfg(test)]
mod testing;
pub mod unlabeled;
pub mod whatif;

#[cfg(test)]
mod tests;

pub use error::InsightError;
pub use query::{
    aggregate, EndpointMatch, FlowFilter, Group, GroupBy, GroupKey, LabelRequirement, QueryError,
    VerdictFilter,
};
