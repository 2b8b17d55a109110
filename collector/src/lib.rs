//! The Bulkhead collector: agents POST flow batches, the collector keeps
//! them in tiers and answers queries.
//!
//! ```text
//!  agent ──POST /api/v1/flows (FlowBatch, bearer token)──► api ──► Auth (TokenReview | token file)
//!                                                           │
//!                                                           ▼
//!            Store::insert ── every record added into its minute, hour, day and month bucket at once
//!               │              (upsert adding counters; keyed by the edge: everything in the
//!               │               record except window and counters, labels as they were)
//!               ▼
//!   flows_minute (14 d)  flows_hour (90 d)  flows_day (400 d)  flows_month (400 d)   monthly partitions
//!               ▲
//!  GET /api/v1/flows, /api/v1/aggregate ── tier::plan: each stretch of [since, until) from the
//!                                           finest tier that still holds it, split on bucket
//!                                           boundaries, so nothing is read twice
//! ```
//!
//! Why write every tier at ingest instead of rolling minutes up into hours
//! later: a rollup job can be half done when the process dies, and needs
//! bookkeeping of what was rolled; three upserts per record cannot, and a
//! restart loses nothing that was acknowledged. The cost is four rows
//! written per record instead of one, which the ingest benchmark measures.
//!
//! The month tier is beyond the suggested shape: a 400-day top-talkers
//! query over daily buckets sums ~400 rows per edge (2.5 s for 10,000
//! edges in SQLite, see `bench/README.md`); with whole months read from
//! monthly buckets it sums ~30, which brings it under a second. Months are
//! kept as long as days.
//! `maintain` then only drops whole partitions (months) past each tier's
//! retention; queries never read a tier past its retention, so data that
//! waits for its partition to be dropped is never counted.
//!
//! Two-sided flows (egress at the source's node, ingress at the
//! destination's) are both stored; aggregates count only the records whose
//! [`FlowRecord::counts`](bulkhead_api::flow::FlowRecord::counts) is true.
//!
//! Backends: [`store::SqliteStore`] (embedded default) and
//! [`store::ClickHouseStore`]; both pass one test suite
//! (`tests/common/suite.rs`).

#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod auth;
pub mod edge;
mod error;
pub mod metrics;

pub mod sql;
pub mod store;
pub mod tier;
pub mod tls;

pub use error::StoreError;
