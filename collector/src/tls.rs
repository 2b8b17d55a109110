//! HTTPS for the collector's API: the agents' bearer tokens and the flow
//! history never cross the network in the clear.
//!
//! ```text
//!  --tls-cert-file, --tls-key-file (PEM) ──► Reloading (re-read when a file changes)
//!  TcpListener ──accept──► TLS handshake (ALPN h2, http/1.1) ──► the same axum router
//! ```
//!
//! The files are read again when their modification time moves, so a
//! certificate that cert-manager (or the chart's hook) rotates in the mounted
//! Secret is served from the next connection on, with no restart. A rotated
//! pair that does not load is logged and the previous one stays in use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What was wrong with the certificate or key, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{cert} and {key} do not make a usable pair: {message}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
}

/// The certificate chain and private key files (PEM).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Loads and checks the pair: the chain parses, the key parses and the
/// provider can sign with it, and the key belongs to the first certificate.
pub fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert, "no CERTIFICATE block in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| file_error(&files.key, e))?;
    let certified = CertifiedKey::new(certs, signing);
    certified.keys_match().map_err(|e| TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

/// Serves the pair it was built with, reloading it when either file changes.
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    current: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl Reloading {
    fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let key = load(&files)?;
        let stamps = (modified(&files.cert), modified(&files.key));
        Ok(Reloading {
            files,
            current: Mutex::new((stamps.0, stamps.1, key)),
        })
    }

    fn key(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let stamps = (modified(&self.files.cert), modified(&self.files.key));
        if (current.0, current.1) != stamps {
            match load(&self.files) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "serving a rotated certificate");
                    *current = (stamps.0, stamps.1, key);
                }
                Err(e) => {
                    // Retried on the next connection; the old pair serves meanwhile.
                    tracing::warn!(error = %e, "rotated certificate not loaded; keeping the previous one");
                }
            }
        }
        current.2.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

/// The rustls configuration: HTTP/2 (what agents speak) and HTTP/1.1 (for
/// curl, Prometheus and the API server's service proxy).
pub fn server_config(files: TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let resolver = Reloading::new(files)?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::File {
                path: PathBuf::from("(rustls)"),
                message: e.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts connections until `shutdown` resolves; each one is handshaken
/// and served on its own task.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    config: Arc<ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        tokio::spawn(connection(acceptor.clone(), router.clone(), tcp, peer));
    }
}

async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let service = TowerToHyperService::new(router);
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}
