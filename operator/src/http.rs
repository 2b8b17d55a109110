//! `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// What the endpoints read.
#[derive(Debug)]
pub struct Health {
    /// The metrics registry.
    pub registry: Registry,
    /// Set once every watch has listed and the first compile is done.
    pub ready: AtomicBool,
}

/// Serves until the process ends.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

async fn metrics(
    State(h): State<Arc<Health>>,
    headers: HeaderMap,
) -> (StatusCode, [(HeaderName, &'static str); 1], String) {
    let mut body = String::new();
    let content_type = header::CONTENT_TYPE;
    match prometheus_client::encoding::text::encode(&mut body, &h.registry) {
        Ok(()) => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let (body, kind) = bulkhead_api::exposition::negotiate(body, accept);
            (StatusCode::OK, [(content_type, kind)], body)
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(content_type, "text/plain")],
            e.to_string(),
        ),
    }
}

async fn ready(State(h): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first full sync",
        )
    }
}
