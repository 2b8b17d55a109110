//! The shared store suite against the embedded SQLite store.

mod common;

use bulkhead_collector::store::{SqliteStore, StoreConfig};
use common::suite::{self, Backend};

struct Sqlite {
    root: tempfile::TempDir,
    n: usize,
}

impl Backend for Sqlite {
    type S = SqliteStore;
    fn fresh(&mut self) {
        self.n += 1;
    }
    async fn open(&self, config: StoreConfig) -> SqliteStore {
        SqliteStore::open(&self.root.path().join(self.n.to_string()), config).expect("open sqlite")
    }
}

fn backend() -> Sqlite {
    Sqlite {
        root: tempfile::tempdir().expect("tempdir"),
        n: 0,
    }
}

macro_rules! case {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            suite::$name(&mut backend()).await;
        }
    };
}

case!(ingest_filters_groups);
case!(idempotent_retry);
case!(tier_boundaries);
case!(retention_drops_partitions);
case!(restart_loses_nothing);
case!(losses_per_node);
case!(bad_input_is_refused);
case!(services_filter_and_group);

/// A store written before the Service columns: opening it adds them,
/// filled from the records it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_the_service_columns_gets_them() {
    use bulkhead_collector::store::{Clock, Store};
    use bulkhead_insight::FlowFilter;
    let root = tempfile::tempdir().expect("tempdir");
    let now = common::fixtures::ts("2026-06-15T12:00:00Z");
    let config = || StoreConfig {
        retention: Default::default(),
        clock: Clock::manual(now).0,
    };
    let records = suite::service_records(now - jiff::SignedDuration::from_hours(1));
    {
        let store = SqliteStore::open(root.path(), config()).expect("open");
        store
            .insert(&common::fixtures::batch("n1", "b-1", records))
            .await
            .expect("insert");
    }
    let conn = rusqlite::Connection::open(root.path().join("flows.sqlite")).expect("db");
    conn.execute_batch(
        "ALTER TABLE edges DROP COLUMN svc_addr; ALTER TABLE edges DROP COLUMN svc_name;",
    )
    .expect("the old layout");
    drop(conn);
    let store = SqliteStore::open(root.path(), config()).expect("reopen");
    let by_name = FlowFilter {
        service_name: Some(bulkhead_insight::query::ServiceName::parse("shop/db").expect("name")),
        ..Default::default()
    };
    assert_eq!(
        store.records(&by_name, 100).await.expect("by name").len(),
        2
    );
    let by_vip = FlowFilter {
        service: Some("10.96.0.11".parse().expect("ip")),
        ..Default::default()
    };
    assert_eq!(
        store.records(&by_vip, 100).await.expect("by address").len(),
        1
    );
}
