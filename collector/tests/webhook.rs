//! The SOAR webhook against a real HTTP receiver on loopback that refuses
//! the first attempts: alerts raised through the collector's own API (a
//! port scan POSTed as flow batches) all arrive, signed, and no id is
//! accepted twice, even when the same batch is posted again.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_api::flow::{FlowRecord, FlowVerdict};
use bulkhead_api::rule_map::Direction;
use bulkhead_collector::alerts::webhook::{signature, WebhookSink};
use bulkhead_collector::alerts::Pipeline;
use bulkhead_collector::api::{router, App};
use bulkhead_collector::auth::TokenFileAuth;
use bulkhead_collector::store::{Clock, SqliteStore, StoreConfig};
use bulkhead_insight::detect::{DetectConfig, Detector, ScanConfig};
use common::fixtures::*;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jiff::SignedDuration;
use serde_json::Value;

const SECRET: &[u8] = b"soar-shared-secret";
const TOKEN: &str = "n1-0123456789abcdef";
const FAIL_FIRST: usize = 3;

#[derive(Default)]
struct Receiver {
    attempts: usize,
    /// Accepted (2xx) deliveries: id -> times.
    accepted: BTreeMap<String, usize>,
    bodies: Vec<Value>,
    bad_signatures: usize,
}

async fn handle(state: Arc<Mutex<Receiver>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, stamp, sig) = (
        header("x-bulkhead-alert-id"),
        header("x-bulkhead-timestamp"),
        header("x-bulkhead-signature"),
    );
    let body = req.into_body().collect().await.expect("body").to_bytes();
    let mut s = state.lock().expect("state");
    s.attempts += 1;
    let status = if s.attempts <= FAIL_FIRST {
        StatusCode::SERVICE_UNAVAILABLE
    } else if stamp.parse::<i64>().map(|t| signature(SECRET, t, &body)) != Ok(sig) {
        s.bad_signatures += 1;
        StatusCode::UNAUTHORIZED
    } else {
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["id"], Value::String(id.clone()), "header and body agree");
        *s.accepted.entry(id).or_insert(0) += 1;
        s.bodies.push(v);
        StatusCode::OK
    };
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

async fn receiver(state: Arc<Mutex<Receiver>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/hooks/bulkhead",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// Three port-scan sweeps, one per 5-minute window.
fn sweep(window: i64) -> Vec<FlowRecord> {
    let probe = pod("10.0.9.9", "dev", "probe", &[("app", "probe")]);
    (1..=3)
        .map(|n| {
            let dst = pod(
                &format!("10.0.1.{n}"),
                "prod",
                &format!("db-{n}"),
                &[("app", "db")],
            );
            let at = ts("2026-06-15T12:00:00Z") + SignedDuration::from_secs(window * 300 + n);
            let mut r = rec("n1", at, probe.clone(), dst, 5432, Direction::Egress);
            r.verdict = FlowVerdict::Deny;
            r.would_verdict = FlowVerdict::Deny;
            r
        })
        .collect()
}

async fn post(url: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let method = if body.is_some() { "POST" } else { "GET" };
    let req = Request::builder()
        .method(method)
        .uri(format!("{url}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn every_alert_arrives_once_signed_despite_failed_attempts() {
    let state = Arc::new(Mutex::new(Receiver::default()));
    let hook = receiver(state.clone()).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let (clock, _) = Clock::manual(ts("2026-06-15T12:30:00Z"));
    let store = SqliteStore::open(
        dir.path(),
        StoreConfig {
            retention: Default::default(),
            clock: clock.clone(),
        },
    )
    .expect("store");
    let auth = TokenFileAuth::parse(&format!("{TOKEN} n1\n")).expect("tokens");
    let mut app = App::new(store, auth, clock);
    let config = DetectConfig {
        scan: ScanConfig {
            hosts: 3,
            ..ScanConfig::default()
        },
        ..DetectConfig::default()
    };
    let mut pipeline = Pipeline::new(Detector::new(config).expect("config"), &app.metrics);
    pipeline.add_webhook(WebhookSink::new(&hook, SECRET.to_vec(), None).expect("webhook"));
    app.alerts = Some(Arc::new(pipeline));
    let app = Arc::new(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let served = app.clone();
    tokio::spawn(async move { axum::serve(listener, router(served)).await });

    for w in 0..3 {
        let b = serde_json::to_vec(&batch("n1", &format!("b{w}"), sweep(w))).expect("json");
        let (status, _) = post(&url, "/api/v1/flows", Some(b.clone())).await;
        assert_eq!(status, 200);
        // A retried batch (same id) and the same records in a new batch.
        post(&url, "/api/v1/flows", Some(b)).await;
        let again =
            serde_json::to_vec(&batch("n1", &format!("b{w}-again"), sweep(w))).expect("json");
        post(&url, "/api/v1/flows", Some(again)).await;
    }
    let (_, listed) = post(&url, "/api/v1/alerts", None).await;
    let listed = listed["alerts"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 3, "{listed:#?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = state.lock().expect("state").accepted.len() == 3;
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "alerts did not all arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = state.lock().expect("state");
    assert!(s.accepted.values().all(|n| *n == 1), "{:?}", s.accepted);
    assert_eq!(s.bad_signatures, 0);
    assert_eq!(
        s.attempts,
        FAIL_FIRST + 3,
        "one success each, after the failures"
    );
    let ids: Vec<&str> = listed.iter().filter_map(|a| a["id"].as_str()).collect();
    let got: Vec<&str> = s.bodies.iter().filter_map(|a| a["id"].as_str()).collect();
    assert_eq!(got, ids, "in order, the alerts the collector raised");
    assert!(s
        .bodies
        .iter()
        .all(|b| b["schema"] == "alert/v1" && b["detector"] == "scan"));

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &app.registry).expect("encode");
    for line in [
        r#"bulkhead_collector_alerts_total{detector="scan",severity="high"} 3"#,
        r#"bulkhead_collector_alert_deliveries_total{sink="webhook",result="sent"} 3"#,
        r#"bulkhead_collector_alert_deliveries_total{sink="webhook",result="retried"} 3"#,
    ] {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}
