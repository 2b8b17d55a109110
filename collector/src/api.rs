//! The HTTP API (JSON).
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/flows` | a `FlowBatch` from an agent, `Authorization: Bearer <token>` |
//! | `GET /api/v1/flows?since=&until=&from=&to=&verdict=&port=&protocol=&node=&limit=&offset=` | `{"records": [...], "lost": [...], "nextOffset": N}` (oldest first; `nextOffset` when the page is full) |
//! | `GET /api/v1/aggregate?<same filters>&groupBy=source.app,destination.app,port` | `{"groupBy": [...], "groups": [...], "lost": [...]}` |
//! | `GET /api/v1/alerts` | `{"alerts": [...]}`: the last alerts raised (`alert/v1`), oldest first |
//! | `GET /metrics`, `/healthz`, `/readyz` | OpenMetrics, liveness, the store answers |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bulkhead_api::flow::FlowBatch;
use bulkhead_insight::FlowFilter;
use jiff::SignedDuration;
use prometheus_client::registry::Registry;
use serde_json::json;

use crate::auth::{Auth, AuthError};
use crate::metrics::{Metrics, QueryLabel, ResultLabel};
use crate::store::{Clock, NodeLoss, Store};
use crate::StoreError;
use bulkhead_insight::query::params::{self, ParamError};

/// The default bound on a POSTed batch.
pub const DEFAULT_BODY_LIMIT: usize = 16 << 20;

/// Everything the handlers share.
pub struct App<S, A> {
    pub store: S,
    pub auth: A,
    pub metrics: Metrics,
    pub registry: Registry,
    pub clock: Clock,
    pub body_limit: usize,
    /// Detections on stored batches and alert delivery; none: detection off.
    pub alerts: Option<Arc<crate::alerts::Pipeline>>,
}

impl<S: std::fmt::Debug, A: std::fmt::Debug> std::fmt::Debug for App<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store)
            .field("auth", &self.auth)
            .finish()
    }
}

impl<S: Store, A: Auth> App<S, A> {
    pub fn new(store: S, auth: A, clock: Clock) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        App {
            store,
            auth,
            metrics,
            registry,
            clock,
            body_limit: DEFAULT_BODY_LIMIT,
            alerts: None,
        }
    }
}

pub fn router<S: Store, A: Auth>(app: Arc<App<S, A>>) -> Router {
    Router::new()
        .route(
            "/api/v1/flows",
            get(get_flows::<S, A>).post(post_flows::<S, A>),
        )
        .route("/api/v1/aggregate", get(get_aggregate::<S, A>))
        .route("/api/v1/alerts", get(get_alerts::<S, A>))
        .route("/metrics", get(metrics::<S, A>))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready::<S, A>))
        .with_state(app)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Counts, logs (reason, never the token) and answers a refusal.
fn refuse<S, A>(
    app: &App<S, A>,
    status: StatusCode,
    reason: &str,
    message: String,
    node: Option<&str>,
) -> Response {
    app.metrics.refuse(reason);
    tracing::warn!(
        status = status.as_u16(),
        reason,
        node,
        "refused a flow batch: {message}"
    );
    error(status, message)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

async fn post_flows<S: Store, A: Auth>(
    State(app): State<Arc<App<S, A>>>,
    req: Request,
) -> Response {
    let Some(token) = bearer(req.headers()) else {
        return refuse(
            &app,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing bearer token".into(),
            None,
        );
    };
    let caller = match app.auth.authenticate(&token).await {
        Ok(c) => c,
        Err(AuthError::Unavailable(m)) => {
            app.metrics.refuse("auth_unavailable");
            tracing::error!("cannot authenticate a flow batch: {m}");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot check credentials now: {m}"),
            );
        }
        Err(e) => {
            return refuse(
                &app,
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                e.to_string(),
                None,
            )
        }
    };
    let body = match axum::body::to_bytes(req.into_body(), app.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            let msg = format!("body larger than {} bytes (or unreadable)", app.body_limit);
            return refuse(
                &app,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                msg,
                caller.node.as_deref(),
            );
        }
    };
    let batch: FlowBatch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("body is not a flow/v1 batch: {e}");
            return refuse(
                &app,
                StatusCode::BAD_REQUEST,
                "bad_request",
                msg,
                caller.node.as_deref(),
            );
        }
    };
    if let Some(node) = caller.node.as_deref() {
        if node != batch.node {
            let msg = format!(
                "{} may send batches for node {node:?}, not {:?}",
                caller.subject, batch.node
            );
            return refuse(
                &app,
                StatusCode::FORBIDDEN,
                "forbidden",
                msg,
                Some(&batch.node),
            );
        }
    }
    match app.store.insert(&batch).await {
        Ok(done) => {
            let result = if done.duplicate {
                "duplicate"
            } else {
                "stored"
            };
            app.metrics
                .batches
                .get_or_create(&ResultLabel {
                    result: result.into(),
                })
                .inc();
            app.metrics.records.inc_by(done.records as u64);
            if !done.duplicate {
                app.metrics.denied(&batch.records);
                // After the store took it: a batch refused and retried is
                // judged once, when it is stored.
                if let Some(alerts) = &app.alerts {
                    alerts.observe(&batch.records);
                }
            }
            tracing::debug!(
                node = batch.node,
                batch = batch.batch_id,
                records = done.records,
                result,
                "flow batch"
            );
            Json(done).into_response()
        }
        Err(StoreError::Invalid(m)) => refuse(
            &app,
            StatusCode::BAD_REQUEST,
            "invalid_batch",
            m,
            Some(&batch.node),
        ),
        Err(e) => {
            app.metrics.store_error("insert", &e);
            tracing::error!(node = batch.node, "storing a flow batch: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the batch failed: {e}"),
            )
        }
    }
}

fn bad_param(e: ParamError) -> Response {
    error(StatusCode::BAD_REQUEST, e.to_string())
}

async fn lost<S: Store, A: Auth>(
    app: &App<S, A>,
    f: &FlowFilter,
) -> Result<Vec<NodeLoss>, Response> {
    match app.store.losses(f.since, f.until).await {
        Ok(l) => Ok(l
            .into_iter()
            .filter(|l| l.records > 0 && f.node.as_ref().is_none_or(|n| &l.node == n))
            .collect()),
        Err(e) => Err(store_failed(app, "losses", e)),
    }
}

fn store_failed<S, A>(app: &App<S, A>, op: &str, e: StoreError) -> Response {
    if let StoreError::Query(q) = &e {
        return error(StatusCode::BAD_REQUEST, q.to_string());
    }
    app.metrics.store_error(op, &e);
    tracing::error!(op, "query failed: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{op} failed: {e}"),
    )
}

fn observe<S, A>(app: &App<S, A>, query: &str, started: Instant) {
    app.metrics
        .query_duration
        .get_or_create(&QueryLabel {
            query: query.into(),
        })
        .observe(started.elapsed().as_secs_f64());
}

async fn get_flows<S: Store, A: Auth>(
    State(app): State<Arc<App<S, A>>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let q = match params::parse(&q, &["limit", "offset"], app.clock.now()) {
        Ok(q) => q,
        Err(e) => return bad_param(e),
    };
    let records = match app.store.page(&q.filter, q.limit, q.offset).await {
        Ok(r) => r,
        Err(e) => return store_failed(&app, "records", e),
    };
    let lost = match lost(&app, &q.filter).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    observe(&app, "flows", started);
    // A full page may have a next one: say where it starts.
    let next = (records.len() == q.limit).then(|| q.offset + records.len());
    let mut body = json!({ "records": records, "lost": lost });
    if let Some(n) = next {
        body["nextOffset"] = n.into();
    }
    Json(body).into_response()
}

async fn get_aggregate<S: Store, A: Auth>(
    State(app): State<Arc<App<S, A>>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let started = Instant::now();
    let q = match params::parse(&q, &["groupBy"], app.clock.now()) {
        Ok(q) => q,
        Err(e) => return bad_param(e),
    };
    let by = q.group_by.unwrap_or_default();
    let groups = match app.store.aggregate(&q.filter, &by).await {
        Ok(g) => g,
        Err(e) => return store_failed(&app, "aggregate", e),
    };
    let lost = match lost(&app, &q.filter).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    observe(&app, "aggregate", started);
    Json(json!({ "groupBy": by, "groups": groups, "lost": lost })).into_response()
}

async fn get_alerts<S: Store, A: Auth>(State(app): State<Arc<App<S, A>>>) -> Response {
    let alerts = app.alerts.as_ref().map(|p| p.recent()).unwrap_or_default();
    Json(json!({ "alerts": alerts })).into_response()
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the
/// text format 0.0.4 (what `promtool check metrics` and older scrapers read).
async fn metrics<S: Store, A: Auth>(
    State(app): State<Arc<App<S, A>>>,
    headers: HeaderMap,
) -> Response {
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &app.registry) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) = bulkhead_api::exposition::negotiate(body, accept);
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics"))
}

async fn ready<S: Store, A: Auth>(State(app): State<Arc<App<S, A>>>) -> Response {
    let now = app.clock.now();
    match app
        .store
        .losses(Some(now), Some(now + SignedDuration::from_secs(1)))
        .await
    {
        Ok(_) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            app.metrics.store_error("ready", &e);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store not answering: {e}"),
            )
                .into_response()
        }
    }
}
