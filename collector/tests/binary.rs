//! The `bulkhead-collector` binary: started, fed, killed with SIGKILL,
//! started again on the same data dir; nothing acknowledged is lost.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fixtures::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

const TOKEN: &str = "binary-test-token-0123456789";

struct Collector(Child);

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

async fn call(method: &str, url: &str, body: Vec<u8>) -> Option<(u16, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Full::new(Bytes::from(body)))
        .ok()?;
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&bytes).into_owned()))
}

async fn start(dir: &std::path::Path, port: u16, backend: &[&str]) -> Collector {
    let child = Command::new(env!("CARGO_BIN_EXE_bulkhead-collector"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--auth",
            "token-file",
        ])
        .args(backend)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--token-file")
        .arg(dir.join("tokens"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the collector");
    let mut c = Collector(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) =
            call("GET", &format!("http://127.0.0.1:{port}/readyz"), vec![]).await
        {
            return c;
        }
        if let Ok(Some(status)) = c.0.try_wait() {
            panic!("the collector exited with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the collector did not turn ready in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigkill_and_restart_lose_nothing() {
    kill_and_restart(&["--backend", "sqlite"]).await;
}

/// The same with `--backend clickhouse` against a real server.
#[tokio::test]
async fn sigkill_and_restart_lose_nothing_on_clickhouse() {
    let server = common::clickhouse::ClickHouseServer::start();
    let url = server.url();
    kill_and_restart(&[
        "--backend",
        "clickhouse",
        "--clickhouse-url",
        &url,
        "--clickhouse-database",
        "binary",
    ])
    .await;
    drop(server);
}

async fn kill_and_restart(backend: &[&str]) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tokens"), format!("{TOKEN} n1\n")).expect("tokens");
    let port = free_port();
    let now = Timestamp::now();
    let (n1, _) = mixed(now - SignedDuration::from_mins(5));
    let body = serde_json::to_vec(&batch("n1", "kill-1", n1.clone())).expect("json");
    let flows = format!("http://127.0.0.1:{port}/api/v1/flows");
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/aggregate?since=1h&groupBy=source.name,destination.name"
    );

    let mut first = start(dir.path(), port, backend).await;
    let (status, text) = call("POST", &flows, body.clone()).await.expect("post");
    assert_eq!(status, 200, "{text}");
    let (_, before) = call("GET", &query, vec![]).await.expect("query");
    first.0.kill().expect("SIGKILL");
    let _ = first.0.wait();

    let _second = start(dir.path(), port, backend).await;
    let (_, after) = call("GET", &query, vec![]).await.expect("query");
    let groups = |s: &str| serde_json::from_str::<Value>(s).expect("json")["groups"].clone();
    assert_eq!(
        groups(&after),
        groups(&before),
        "same answer after SIGKILL and restart"
    );
    assert_eq!(groups(&after).as_array().map(Vec::len), Some(4), "{after}");
    let (status, text) = call("POST", &flows, body).await.expect("retry");
    assert_eq!(status, 200);
    assert!(
        text.contains("\"duplicate\":true"),
        "the acknowledged batch is remembered: {text}"
    );
}
