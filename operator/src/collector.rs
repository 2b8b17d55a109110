//! The collector, as the promotion gates ask it: the records of one verdict
//! class in a time window, through `GET /api/v1/flows`, every call with a
//! deadline.
//!
//! The collector's read API takes no credentials today (agents authenticate
//! their batches; readers reach it through the Service, or through the API
//! server's service proxy with their own RBAC), so the operator needs only
//! network reach to it.

use std::time::Duration;

use bulkhead_api::flow::FlowRecord;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde::Deserialize;

/// How long one question to the collector may take by default.
pub const COLLECTOR_TIMEOUT: Duration = Duration::from_secs(5);

/// The most records one answer carries (the collector's own upper bound).
pub const RECORD_LIMIT: usize = 100_000;

/// Which records to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Let through, but `full` mode would drop them.
    WouldDeny,
    /// Dropped.
    Deny,
}

/// The records, and whether there may be more.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Records {
    pub records: Vec<FlowRecord>,
    /// False when the answer reached the limit.
    pub complete: bool,
    /// `(node, records lost)` in the window.
    pub lost: Vec<(String, u64)>,
}

#[derive(Deserialize)]
struct Answer {
    records: Vec<FlowRecord>,
    #[serde(default)]
    lost: Vec<Lost>,
}

#[derive(Deserialize)]
struct Lost {
    node: String,
    records: u64,
}

fn client(roots: rustls::RootCertStore) -> Client<HttpsConnector<HttpConnector>, Empty<Bytes>> {
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A collector at a base URL such as `http://bulkhead-collector.bulkhead-system:9470`.
#[derive(Clone)]
pub struct Collector {
    base: String,
    timeout: Duration,
    limit: usize,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Collector {
    /// A collector over plain HTTP (or HTTPS trusting nothing: see
    /// [`Collector::with_ca_file`]).
    pub fn new(base: &str, timeout: Duration) -> Self {
        Collector {
            base: base.trim_end_matches('/').to_string(),
            timeout,
            limit: RECORD_LIMIT,
            client: client(rustls::RootCertStore::empty()),
        }
    }

    /// Trusts the CA certificates (PEM) in `file` for an `https://` collector.
    /// The error names the file.
    pub fn with_ca_file(mut self, file: &std::path::Path) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject;
        let bad =
            |e: &dyn std::fmt::Display| format!("--collector-ca-file {}: {e}", file.display());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(file).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        if roots.is_empty() {
            return Err(bad(&"no CERTIFICATE in it"));
        }
        self.client = client(roots);
        Ok(self)
    }

    /// The same collector with a smaller answer limit (tests use it to see truncation).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, RECORD_LIMIT);
        self
    }

    /// Records of `class` whose window starts in `[since, until)`. The error
    /// is a sentence for a status message.
    pub async fn records(
        &self,
        class: Class,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Records, String> {
        let verdict = match class {
            Class::WouldDeny => "would-deny",
            Class::Deny => "deny",
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("since", &since.to_string())
            .append_pair("until", &until.to_string())
            .append_pair("verdict", verdict)
            .append_pair("limit", &self.limit.to_string())
            .finish();
        let uri = format!("{}/api/v1/flows?{query}", self.base);
        let ask = async {
            let request = http::Request::get(&uri)
                .body(Empty::new())
                .map_err(|e| format!("building the request: {e}"))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("reaching {}: {e}", self.base))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer of {}: {e}", self.base))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, ask)
            .await
            .map_err(|_| format!("{} gave no answer within {:?}", self.base, self.timeout))??;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(format!(
                "{} answered {}: {}",
                self.base,
                status.as_u16(),
                text.trim()
            ));
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "{} answered something that is not flow/v1 records: {e}",
                self.base
            )
        })?;
        Ok(Records {
            complete: answer.records.len() < self.limit,
            records: answer.records,
            lost: answer
                .lost
                .into_iter()
                .map(|l| (l.node, l.records))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tls_tests {
    use super::*;
    use bulkhead_collector::api::{router, App};
    use bulkhead_collector::auth::TokenFileAuth;
    use bulkhead_collector::store::{Clock, SqliteStore, StoreConfig};
    use bulkhead_collector::tls::{self, TlsFiles};
    use rcgen::{CertificateParams, Issuer, KeyPair, SanType};

    /// (CA PEM, a 127.0.0.1 pair it signed) in `dir`.
    fn pki(dir: &std::path::Path) -> (String, TlsFiles) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("params");
        leaf.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        let key = KeyPair::generate().expect("key");
        let cert = leaf.signed_by(&key, &issuer).expect("sign");
        let files = TlsFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&files.cert, cert.pem()).expect("cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("key");
        (ca_pem, files)
    }

    #[tokio::test]
    async fn promotion_gates_ask_an_https_collector_trusting_only_the_given_ca() {
        let dir = tempfile::tempdir().expect("dir");
        let (ca_pem, files) = pki(dir.path());
        let store =
            SqliteStore::open(&dir.path().join("data"), StoreConfig::default()).expect("store");
        let auth = TokenFileAuth::parse("agent-token-0123456789 n1\n").expect("auth");
        let app = std::sync::Arc::new(App::new(store, auth, Clock::system()));
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

        let until = Timestamp::now();
        let since = until - jiff::SignedDuration::from_secs(3600);
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca_pem).expect("ca");
        let trusting = Collector::new(&url, Duration::from_secs(5))
            .with_ca_file(&ca_file)
            .expect("CA");
        let answer = trusting.records(Class::WouldDeny, since, until).await;
        assert!(answer.is_ok_and(|r| r.complete && r.records.is_empty()));

        // Trusting nothing: the certificate is refused, and the gate is told why.
        let blind = Collector::new(&url, Duration::from_secs(5));
        let err = blind
            .records(Class::WouldDeny, since, until)
            .await
            .expect_err("an unknown CA");
        assert!(!err.is_empty());

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("empty");
        let refused = Collector::new(&url, Duration::from_secs(5)).with_ca_file(&empty);
        assert!(refused.is_err_and(|e| e.contains("empty.pem")));
    }
}
