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
