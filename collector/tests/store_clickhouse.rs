//! The shared store suite against a real ClickHouse server (Debian's
//! `clickhouse-server`, 18.16, or any later release), started by this test.
//! Fails, saying how to install it, when the binary is missing.

mod common;

use bulkhead_collector::store::clickhouse::ClickHouseConfig;
use bulkhead_collector::store::{ClickHouseStore, StoreConfig};
use common::clickhouse::ClickHouseServer;
use common::suite::{self, Backend};

struct ClickHouse {
    url: String,
    n: usize,
}

impl Backend for ClickHouse {
    type S = ClickHouseStore;
    fn fresh(&mut self) {
        self.n += 1;
    }
    async fn open(&self, config: StoreConfig) -> ClickHouseStore {
        let ch = ClickHouseConfig {
            url: self.url.clone(),
            database: format!("suite_{}", self.n),
            user: None,
            password: None,
        };
        ClickHouseStore::open(ch, config)
            .await
            .expect("open clickhouse")
    }
}

/// One server for the whole suite (starting one takes a second or two);
/// each case gets its own database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_store_suite_on_clickhouse() {
    let server = ClickHouseServer::start();
    let mut backend = ClickHouse {
        url: server.url(),
        n: 0,
    };
    suite::run_all(&mut backend).await;
    drop(server);
}
