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
//! The same filter and group-by run in the collector (where its stores turn
//! them into SQL and the shared store tests check the SQL against these
//! functions), in the CLI against the collector, and in the CLI offline over
//! an exported history.

#![forbid(unsafe_code)]

pub mod coverage;
mod error;
pub mod exposure;
pub mod query;
pub mod report;
pub mod talkers;
pub mod unlabeled;

#[cfg(test)]
mod tests;

pub use error::InsightError;
pub use query::{
    aggregate, EndpointMatch, FlowFilter, Group, GroupBy, GroupKey, LabelRequirement, QueryError,
    VerdictFilter,
};
