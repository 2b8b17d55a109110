//! The `bulkhead-collector` binary serving HTTPS: a client that trusts the
//! CA reads and writes over HTTP/2 and HTTP/1.1; plain HTTP and an untrusted
//! client get nothing; a certificate rotated in place is served without a
//! restart; a key that does not match its certificate stops the start with
//! an error naming both files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{CertificateParams, DnType, Issuer, KeyPair};

const TOKEN: &str = "tls-test-token-0123456789";

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("CA");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A serving pair for 127.0.0.1 signed by `ca`, written to `dir`.
fn serving(ca: &Ca, dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip")));
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca.issuer).expect("sign");
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.pem()).expect("write cert");
    std::fs::write(&k, key.serialize_pem()).expect("write key");
    (c, k)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn command(dir: &Path, port: u16, cert: &Path, key: &Path) -> Command {
    std::fs::write(dir.join("tokens"), format!("{TOKEN} node-1\n")).expect("tokens");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulkhead-collector"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--auth", "token-file"])
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--tls-cert-file")
        .arg(cert)
        .arg("--tls-key-file")
        .arg(key)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// (status, body, negotiated HTTP version), or the error as text.
async fn get(
    ca_pem: &str,
    url: &str,
    http2: bool,
) -> Result<(u16, String, hyper::Version), String> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    let connector = if http2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let req = hyper::Request::get(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let version = resp.version();
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned(), version))
}

async fn wait_ready(c: &mut Collector, ca_pem: &str, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _, _)) = get(ca_pem, &format!("{url}/readyz"), true).await {
            return;
        }
        if let Ok(Some(status)) = c.0.try_wait() {
            panic!("the collector exited with {status}");
        }
        assert!(Instant::now() < deadline, "not ready over HTTPS in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_collector_serves_https_only_to_clients_that_trust_its_ca_and_rotates_in_place() {
    let dir = tempfile::tempdir().expect("dir");
    let trusted = ca("bulkhead-test-ca");
    let (cert, key) = serving(&trusted, dir.path(), "collector-1");
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let mut collector = Collector(
        command(dir.path(), port, &cert, &key)
            .spawn()
            .expect("start"),
    );
    wait_ready(&mut collector, &trusted.pem, &url).await;

    // Agents speak HTTP/2 (ALPN), people and Prometheus HTTP/1.1.
    let (status, _, version) = get(&trusted.pem, &format!("{url}/api/v1/flows?since=1h"), true)
        .await
        .expect("HTTPS query");
    assert_eq!((status, version), (200, hyper::Version::HTTP_2));
    let (status, _, version) = get(&trusted.pem, &format!("{url}/healthz"), false)
        .await
        .expect("HTTPS/1.1");
    assert_eq!((status, version), (200, hyper::Version::HTTP_11));

    // Plain HTTP to the TLS port gets no answer; a client trusting another CA
    // refuses the certificate.
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        plain.get(
            format!("http://127.0.0.1:{port}/healthz")
                .parse()
                .expect("uri"),
        ),
    )
    .await
    .expect("no hang");
    assert!(answer.is_err() || answer.is_ok_and(|r| r.status().as_u16() >= 400));
    let stranger = ca("someone-else");
    let refused = get(&stranger.pem, &format!("{url}/healthz"), true).await;
    assert!(
        refused.is_err(),
        "an untrusted certificate was accepted: {refused:?}"
    );

    // Rotation in place: a new pair from a new CA, written over the files.
    let rotated = ca("bulkhead-test-ca-2");
    std::thread::sleep(Duration::from_millis(20)); // a distinct modification time
    serving(&rotated, dir.path(), "collector-2");
    let (status, _, _) = get(&rotated.pem, &format!("{url}/healthz"), true)
        .await
        .expect("the rotated certificate is served without a restart");
    assert_eq!(status, 200);
    assert!(get(&trusted.pem, &format!("{url}/healthz"), true)
        .await
        .is_err());
}

#[test]
fn a_key_that_does_not_match_its_certificate_stops_the_start_naming_both_files() {
    let dir = tempfile::tempdir().expect("dir");
    let authority = ca("bulkhead-test-ca");
    let (cert, _) = serving(&authority, dir.path(), "collector");
    let other = dir.path().join("other.key");
    std::fs::write(&other, KeyPair::generate().expect("key").serialize_pem()).expect("write");
    let out = command(dir.path(), free_port(), &cert, &other)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.crt") && err.contains("other.key"),
        "the error names both files: {err}"
    );
}
