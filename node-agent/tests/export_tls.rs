//! The agent's exporter and the real collector (the library, in this
//! process) over HTTPS: batches go out over HTTP/2 with TLS, checked against
//! the CA the agent is given, and come back from the query API. A collector
//! whose certificate another CA signed gets nothing: the batch stays in the
//! spool. No root needed (`make unit`).

#[path = "../../collector/tests/common/fixtures.rs"]
#[allow(dead_code)]
mod fixtures;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_agent::flows::export::{ExportConfig, Exporter};
use bulkhead_api::rule_map::Direction;
use bulkhead_collector::api::{router, App};
use bulkhead_collector::auth::TokenFileAuth;
use bulkhead_collector::store::{Clock, SqliteStore, Store, StoreConfig};
use bulkhead_collector::tier::Retention;
use bulkhead_collector::tls::{self, TlsFiles};
use rcgen::{CertificateParams, DnType, Issuer, KeyPair, SanType};

const TOKEN: &str = "export-tls-token-0123456789";

/// A CA (its PEM) and a serving pair for 127.0.0.1 it signed, in `dir`.
fn pki(dir: &Path, name: &str) -> (String, TlsFiles) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    let ca_key = KeyPair::generate().expect("key");
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    let key = KeyPair::generate().expect("key");
    let cert = leaf.signed_by(&key, &issuer).expect("sign");
    let files = TlsFiles {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&files.cert, cert.pem()).expect("cert");
    std::fs::write(&files.key, key.serialize_pem()).expect("key");
    (ca_pem, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_reach_the_real_collector_over_tls_and_an_untrusted_one_gets_none() {
    let dir = tempfile::tempdir().expect("dir");
    let (ca_pem, served) = pki(dir.path(), "collector");
    let (_, impostor) = pki(dir.path(), "impostor");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).expect("ca");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token");

    let start = |files: TlsFiles, store: SqliteStore| async move {
        let auth = TokenFileAuth::parse(&format!("{TOKEN} node-1\n")).expect("tokens");
        let app = Arc::new(App::new(store, auth, Clock::system()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let config = tls::server_config(files).expect("TLS");
        tokio::spawn(tls::serve(
            listener,
            router(app),
            config,
            std::future::pending(),
        ));
        url
    };
    let open = |sub: &str| {
        SqliteStore::open(
            &dir.path().join(sub),
            StoreConfig {
                retention: Retention::default(),
                clock: Clock::system(),
            },
        )
        .expect("store")
    };
    let export = |url: String, spool: &str| ExportConfig {
        url,
        token_file: Some(token_file.clone()),
        spool_dir: dir.path().join(spool),
        spool_max_bytes: 1 << 20,
        timeout: Duration::from_secs(5),
        ca_file: Some(ca_file.clone()),
    };
    let now = jiff::Timestamp::now();
    let record = fixtures::rec(
        "node-1",
        now - jiff::SignedDuration::from_secs(30),
        fixtures::web(),
        fixtures::db(),
        5432,
        Direction::Egress,
    );

    // The collector with a certificate from the CA the agent trusts.
    let store = open("trusted");
    let reader = store.clone();
    let url = start(served, store).await;
    let exporter = Exporter::start(export(url, "spool-trusted")).expect("exporter");
    exporter.submit(fixtures::batch("node-1", "tls-1", vec![record.clone()]));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = reader
            .records(&bulkhead_insight::FlowFilter::default(), 10)
            .await
            .expect("query");
        if stored.len() == 1 {
            assert_eq!(stored[0].port, 5432);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch never arrived over TLS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        exporter
            .stats
            .send_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    exporter.shutdown();

    // One whose certificate another CA signed: refused at the handshake,
    // nothing stored, the batch kept in the spool.
    let store = open("impostor");
    let reader = store.clone();
    let url = start(impostor, store).await;
    let exporter = Exporter::start(export(url, "spool-impostor")).expect("exporter");
    exporter.submit(fixtures::batch("node-1", "tls-2", vec![record]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while exporter
        .stats
        .send_errors
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "no refused send");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = reader
        .records(&bulkhead_insight::FlowFilter::default(), 10)
        .await
        .expect("query");
    assert!(stored.is_empty(), "an untrusted collector got records");
    assert_eq!(exporter.queued(), 1, "the batch waits in the spool");
    exporter.shutdown();
}

#[test]
fn an_https_collector_without_a_ca_file_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let err = Exporter::start(ExportConfig {
        url: "https://collector:9470".into(),
        token_file: None,
        spool_dir: dir.path().join("spool"),
        spool_max_bytes: 1 << 20,
        timeout: Duration::from_secs(1),
        ca_file: None,
    })
    .expect_err("no CA");
    assert!(err.to_string().contains("--collector-ca-file"), "{err}");
}
