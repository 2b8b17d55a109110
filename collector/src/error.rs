//! The collector's errors.

/// What a store or the query layer refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The batch or a record in it is malformed; nothing of it was stored.
    #[error("invalid batch: {0}")]
    Invalid(String),
    /// A query that cannot be answered as asked.
    #[error(transparent)]
    Query(#[from] bulkhead_insight::QueryError),
    /// A setting that cannot work.
    #[error("configuration: {0}")]
    Config(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("clickhouse: {0}")]
    ClickHouse(String),
    /// Stored data that does not decode (a bug or a foreign writer).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("store task: {0}")]
    Task(String),
}

impl StoreError {
    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Invalid(_) => "invalid",
            StoreError::Query(_) => "query",
            StoreError::Config(_) => "config",
            StoreError::Sqlite(_) => "sqlite",
            StoreError::ClickHouse(_) => "clickhouse",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Task(_) => "task",
        }
    }
}
