//! The HTTP API over real HTTP on loopback, with the SQLite store and the
//! token-file authenticator.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bulkhead_api::rule_map::Direction;
use bulkhead_collector::api::{router, App};
use bulkhead_collector::auth::TokenFileAuth;
use bulkhead_collector::store::{Clock, SqliteStore, StoreConfig};
use bulkhead_collector::tier::Retention;
use common::fixtures::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::SignedDuration;
use serde_json::Value;

const N1_TOKEN: &str = "n1-0123456789abcdef";
const N2_TOKEN: &str = "n2-0123456789abcdef";
const NOW: &str = "2026-06-15T12:00:00Z";

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// One global subscriber for this test binary: a thread-scoped one races
/// with tests on other threads over tracing's per-callsite interest cache.
fn logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        logs
    })
    .clone()
}

struct Server {
    url: String,
    _dir: tempfile::TempDir,
}

async fn serve(body_limit: usize) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clock, _) = Clock::manual(ts(NOW));
    let store = SqliteStore::open(
        dir.path(),
        StoreConfig {
            retention: Retention::default(),
            clock: clock.clone(),
        },
    )
    .expect("store");
    let auth = TokenFileAuth::parse(&format!("{N1_TOKEN} n1\n{N2_TOKEN} n2\n")).expect("tokens");
    let mut app = App::new(store, auth, clock);
    app.body_limit = body_limit;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(listener, router(Arc::new(app)))
            .await
            .expect("serve");
    });
    Server { url, _dir: dir }
}

async fn call(method: &str, url: &str, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
    call_accepting(method, url, token, body, "application/json").await
}

async fn call_accepting(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
    accept: &str,
) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("accept", accept)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

#[tokio::test]
async fn ingest_refusals_and_queries_over_http() {
    let logs = logs();
    let s = serve(64 << 10).await;
    let post = format!("{}/api/v1/flows", s.url);
    let t = ts(NOW) - SignedDuration::from_hours(1);
    let (n1, n2) = mixed(t);
    let mut b1 = batch("n1", "http-1", n1);
    b1.losses = vec![loss("n1", t, 7, 0)];
    let body1 = serde_json::to_vec(&b1).expect("json");

    type Refusal<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let refusals: Vec<Refusal> = vec![
        ("no token", None, body1.clone(), 401, "missing bearer token"),
        (
            "wrong token",
            Some("not-a-token-of-anyone"),
            body1.clone(),
            401,
            "not in the token file",
        ),
        (
            "another node's token",
            Some(N2_TOKEN),
            body1.clone(),
            403,
            "may send batches for node \"n2\", not \"n1\"",
        ),
        (
            "not json",
            Some(N1_TOKEN),
            b"{".to_vec(),
            400,
            "not a flow/v1 batch",
        ),
        (
            "too large",
            Some(N1_TOKEN),
            vec![b' '; 100 << 10],
            413,
            "larger than",
        ),
    ];
    for (name, token, body, status, msg) in refusals {
        let (got, text) = call("POST", &post, token, body).await;
        assert_eq!(got, status, "{name}: {text}");
        assert!(
            json(&text)["error"]
                .as_str()
                .unwrap_or_default()
                .contains(msg),
            "{name}: {text}"
        );
    }
    let mut bad = b1.clone();
    bad.batch_id = "http-bad".into();
    bad.records[2].schema = "flow/v0".into();
    let (got, text) = call(
        "POST",
        &post,
        Some(N1_TOKEN),
        serde_json::to_vec(&bad).expect("json"),
    )
    .await;
    assert_eq!(got, 400, "{text}");
    assert!(
        text.contains("record 2") && text.contains("flow/v0"),
        "{text}"
    );

    let (got, text) = call("POST", &post, Some(N1_TOKEN), body1.clone()).await;
    assert_eq!(
        (got, json(&text)["duplicate"].as_bool()),
        (200, Some(false)),
        "{text}"
    );
    let (got, text) = call("POST", &post, Some(N1_TOKEN), body1.clone()).await;
    assert_eq!(
        (got, json(&text)["duplicate"].as_bool()),
        (200, Some(true)),
        "retry: {text}"
    );
    let b2 = batch("n2", "http-1", n2);
    let (got, text) = call(
        "POST",
        &post,
        Some(N2_TOKEN),
        serde_json::to_vec(&b2).expect("json"),
    )
    .await;
    assert_eq!(got, 200, "{text}");

    let logged = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf8");
    for reason in [
        "unauthenticated",
        "forbidden",
        "bad_request",
        "too_large",
        "invalid_batch",
    ] {
        assert!(
            logged.contains(&format!("reason=\"{reason}\"")),
            "{reason} logged: {logged}"
        );
    }
    assert!(
        !logged.contains(N1_TOKEN)
            && !logged.contains(N2_TOKEN)
            && !logged.contains("not-a-token-of-anyone"),
        "tokens never logged: {logged}"
    );

    // Queries.
    let get = |q: &str| {
        let url = format!("{}{q}", s.url);
        async move { call("GET", &url, None, vec![]).await }
    };
    let (got, text) = get("/api/v1/flows?since=1d&from=app%3Dweb&to=app%3Ddb&port=5432").await;
    assert_eq!(got, 200, "{text}");
    let v = json(&text);
    let records = v["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "both views of web->db: {text}");
    assert!(records
        .iter()
        .all(|r| r["schema"] == "flow/v1" && r["destination"]["labels"]["app"] == "db"));
    assert_eq!(
        v["lost"],
        serde_json::json!([{"node": "n1", "records": 7, "ringBufferEvents": 7, "exportRecords": 0}])
    );
    let (_, text) = get("/api/v1/flows?verdict=deny&limit=5").await;
    let v = json(&text);
    assert_eq!(v["records"].as_array().map(Vec::len), Some(1), "{text}");
    assert_eq!(v["records"][0]["rule"]["name"], "deny-web-cache");
    let (_, text) = get("/api/v1/flows?node=n2").await;
    assert_eq!(
        json(&text)["lost"],
        serde_json::json!([]),
        "losses follow the node filter: {text}"
    );

    let (got, text) =
        get("/api/v1/aggregate?since=2026-06-15T00:00:00Z&groupBy=source.app,destination.app,port")
            .await;
    assert_eq!(got, 200, "{text}");
    let v = json(&text);
    assert_eq!(
        v["groupBy"],
        serde_json::json!(["source.app", "destination.app", "port"])
    );
    let groups = v["groups"].as_array().expect("groups");
    let top = &groups[0];
    assert_eq!(
        top["key"],
        serde_json::json!([null, "db", "5432"]),
        "the world source's 5000 bytes top: {text}"
    );
    let web_db = groups
        .iter()
        .find(|g| g["key"] == serde_json::json!(["web", "db", "5432"]))
        .expect("web db");
    assert_eq!(
        (web_db["flows"].as_u64(), web_db["packets"].as_u64()),
        (Some(1), Some(10)),
        "counted once"
    );

    let bad_params = [
        ("/api/v1/flows?since=yesterday", "since"),
        ("/api/v1/flows?port=http", "port"),
        ("/api/v1/flows?verdict=maybe", "verdict"),
        ("/api/v1/flows?from=a%2Fb%2Fc", "from"),
        ("/api/v1/flows?limit=0", "limit"),
        ("/api/v1/flows?groupBy=port", "groupBy"),
        ("/api/v1/aggregate", "groupBy"),
        ("/api/v1/aggregate?groupBy=colour", "groupBy"),
        ("/api/v1/aggregate?groupBy=port&protocol=gre", "protocol"),
    ];
    for (q, param) in bad_params {
        let (got, text) = get(q).await;
        assert_eq!(got, 400, "{q}: {text}");
        assert!(
            json(&text)["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&format!("parameter {param}:")),
            "{q}: {text}"
        );
    }

    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);
    let openmetrics = "application/openmetrics-text; version=1.0.0";
    let url = format!("{}/metrics", s.url);
    let (got, metrics) = call_accepting("GET", &url, None, vec![], openmetrics).await;
    assert_eq!(got, 200);
    let (_, text) = get("/metrics").await;
    assert!(
        !text.contains("# EOF") && text.contains("# TYPE bulkhead_collector_records_total counter"),
        "text format: {text}"
    );
    for line in [
        "bulkhead_collector_batches_total{result=\"stored\"} 2",
        "bulkhead_collector_batches_total{result=\"duplicate\"} 1",
        "bulkhead_collector_records_total 6",
        "bulkhead_collector_refused_total{reason=\"unauthenticated\"} 2",
        "bulkhead_collector_refused_total{reason=\"forbidden\"} 1",
        "bulkhead_collector_refused_total{reason=\"invalid_batch\"} 1",
        "bulkhead_collector_query_duration_seconds_count{query=\"flows\"} 3",
        "# EOF",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    let _ = Direction::Egress;
}

/// `promtool check metrics` (Debian's `prometheus` package) accepts what
/// /metrics serves once every family has samples.
#[tokio::test]
async fn metrics_pass_promtool() {
    let _logs = logs();
    let s = serve(64 << 10).await;
    let t = ts(NOW) - SignedDuration::from_mins(5);
    let (n1, _) = mixed(t);
    let body = serde_json::to_vec(&batch("n1", "m-1", n1)).expect("json");
    let post = format!("{}/api/v1/flows", s.url);
    assert_eq!(
        call("POST", &post, Some(N1_TOKEN), body.clone()).await.0,
        200
    );
    assert_eq!(call("POST", &post, Some(N1_TOKEN), body).await.0, 200);
    assert_eq!(call("POST", &post, None, vec![]).await.0, 401);
    let q = format!("{}/api/v1/aggregate?groupBy=port", s.url);
    assert_eq!(call("GET", &q, None, vec![]).await.0, 200);
    let (_, metrics) = call("GET", &format!("{}/metrics", s.url), None, vec![]).await;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; install it with `apt-get install -y prometheus`")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `offset` pages through a query: full pages say where the next starts,
/// the last one does not, and the pages together are the whole answer in
/// the same order, each record once.
#[tokio::test]
async fn pages_through_more_records_than_one_answer_holds() {
    let s = serve(1 << 20).await;
    let t = ts(NOW) - SignedDuration::from_hours(3);
    // 7 records over three minutes (distinct buckets and edges).
    let records: Vec<_> = (0..7u16)
        .map(|i| {
            rec(
                "n1",
                t + SignedDuration::from_mins(i64::from(i % 3)),
                web(),
                db(),
                8000 + i,
                Direction::Egress,
            )
        })
        .collect();
    let body = serde_json::to_vec(&batch("n1", "paging", records)).expect("json");
    let post = format!("{}/api/v1/flows", s.url);
    assert_eq!(call("POST", &post, Some(N1_TOKEN), body).await.0, 200);
    let get = |q: String| {
        let url = format!("{}/api/v1/flows?since=1d&{q}", s.url);
        async move {
            let (status, text) = call("GET", &url, None, vec![]).await;
            assert_eq!(status, 200, "{url}: {text}");
            json(&text)
        }
    };
    let whole = get("limit=100".into()).await;
    let all = whole["records"].as_array().expect("records").clone();
    assert_eq!(all.len(), 7, "{whole}");
    assert!(whole.get("nextOffset").is_none(), "not full: {whole}");
    let (mut paged, mut offset, mut pages) = (Vec::new(), Some(0u64), 0);
    while let Some(o) = offset {
        let page = get(format!("limit=3&offset={o}")).await;
        paged.extend(page["records"].as_array().expect("records").iter().cloned());
        offset = page.get("nextOffset").and_then(Value::as_u64);
        pages += 1;
        assert!(pages <= 3, "7 records in pages of 3: {page}");
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, all, "the pages are the whole answer, in order");
    // A full last page says there may be more; the next is empty.
    let six = get("limit=6&offset=1".into()).await;
    assert_eq!(six["nextOffset"], 7, "{six}");
    let rest = get("limit=6&offset=7".into()).await;
    assert_eq!(rest["records"], serde_json::json!([]), "{rest}");
    let (status, text) = call(
        "GET",
        &format!("{}/api/v1/flows?offset=-1", s.url),
        None,
        vec![],
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("offset"), "{text}");
}
