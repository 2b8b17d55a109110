//! The [`Store`] trait, what it answers with, and [`AnyStore`], the
//! backend the binary picked.

use std::future::Future;
use std::sync::{Arc, Mutex};

use bulkhead_api::flow::{FlowBatch, FlowRecord};
use bulkhead_insight::{FlowFilter, Group, GroupBy};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::tier::{Retention, Tier};
use crate::StoreError;

pub mod clickhouse;
pub mod sqlite;

pub use clickhouse::ClickHouseStore;
pub use sqlite::SqliteStore;

/// Where a store reads "now" for planning queries and stamping batches.
/// Tests drive it; the binary uses the system clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

impl Clock {
    pub fn system() -> Self {
        Clock(Arc::new(Timestamp::now))
    }

    /// A clock tests set by hand.
    pub fn manual(start: Timestamp) -> (Self, Arc<Mutex<Timestamp>>) {
        let cell = Arc::new(Mutex::new(start));
        let read = cell.clone();
        let clock = Clock(Arc::new(move || match read.lock() {
            Ok(t) => *t,
            Err(poisoned) => *poisoned.into_inner(),
        }));
        (clock, cell)
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

/// What every backend is opened with.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub retention: Retention,
    pub clock: Clock,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention: Retention::default(),
            clock: Clock::system(),
        }
    }
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inserted {
    pub records: usize,
    pub losses: usize,
    /// The batch id was stored before; nothing was added.
    pub duplicate: bool,
}

/// Records lost on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeLoss {
    pub node: String,
    /// Ring-buffer events plus export records lost.
    pub records: u64,
    pub ring_buffer_events: u64,
    pub export_records: u64,
}

/// Rows and partitions of one tier (what the benchmark reports, and what
/// retention tests look at).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierStats {
    pub tier: Tier,
    pub rows: u64,
    /// Monthly partitions (`YYYYMM`) holding rows, oldest first.
    pub partitions: Vec<u32>,
}

/// What one `maintain` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Maintained {
    /// `tier:YYYYMM` of every dropped partition.
    pub dropped: Vec<String>,
}

/// A flow store. Every method is one consistent operation; `insert` is all
/// or nothing and idempotent on (node, batch id).
pub trait Store: Send + Sync + 'static {
    fn insert(
        &self,
        batch: &FlowBatch,
    ) -> impl Future<Output = Result<Inserted, StoreError>> + Send;

    /// Bucketed records matching the filter, oldest first, at most `limit`.
    fn records(
        &self,
        filter: &FlowFilter,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FlowRecord>, StoreError>> + Send {
        self.page(filter, limit, 0)
    }

    /// The same, after skipping `offset` of them: pages of one query. The
    /// order (bucket, then edge) is total, so consecutive pages neither
    /// repeat nor miss a record unless a batch for an already-read bucket
    /// arrives between two pages.
    fn page(
        &self,
        filter: &FlowFilter,
        limit: usize,
        offset: usize,
    ) -> impl Future<Output = Result<Vec<FlowRecord>, StoreError>> + Send;

    /// Counting records grouped by `by`, most bytes first.
    fn aggregate(
        &self,
        filter: &FlowFilter,
        by: &GroupBy,
    ) -> impl Future<Output = Result<Vec<Group>, StoreError>> + Send;

    /// Per node, what was lost in windows starting in `[since, until)`.
    fn losses(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> impl Future<Output = Result<Vec<NodeLoss>, StoreError>> + Send;

    /// Drops partitions past their tier's retention.
    fn maintain(
        &self,
        now: Timestamp,
    ) -> impl Future<Output = Result<Maintained, StoreError>> + Send;

    fn stats(&self) -> impl Future<Output = Result<Vec<TierStats>, StoreError>> + Send;
}

/// The backend chosen at start-up.
#[derive(Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    ClickHouse(Box<ClickHouseStore>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e.await,
            AnyStore::ClickHouse($s) => $e.await,
        }
    };
}

impl Store for AnyStore {
    async fn insert(&self, batch: &FlowBatch) -> Result<Inserted, StoreError> {
        dispatch!(self, s => s.insert(batch))
    }
    async fn page(
        &self,
        filter: &FlowFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<FlowRecord>, StoreError> {
        dispatch!(self, s => s.page(filter, limit, offset))
    }
    async fn aggregate(&self, filter: &FlowFilter, by: &GroupBy) -> Result<Vec<Group>, StoreError> {
        dispatch!(self, s => s.aggregate(filter, by))
    }
    async fn losses(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<NodeLoss>, StoreError> {
        dispatch!(self, s => s.losses(since, until))
    }
    async fn maintain(&self, now: Timestamp) -> Result<Maintained, StoreError> {
        dispatch!(self, s => s.maintain(now))
    }
    async fn stats(&self) -> Result<Vec<TierStats>, StoreError> {
        dispatch!(self, s => s.stats())
    }
}

/// Turns a group row's (present, value) pairs into a key.
pub(crate) fn group_key(pairs: Vec<(bool, String)>) -> Vec<Option<String>> {
    pairs.into_iter().map(|(p, v)| p.then_some(v)).collect()
}

/// The [since, until) of a filter in whole Unix seconds. Buckets start on
/// whole seconds, so rounding both up keeps `start >= since` and
/// `start < until` exactly what they were.
pub(crate) fn range(filter: &FlowFilter) -> (Option<i64>, Option<i64>) {
    let ceil = |t: Timestamp| t.as_second() + i64::from(t.subsec_nanosecond() > 0);
    (filter.since.map(ceil), filter.until.map(ceil))
}
