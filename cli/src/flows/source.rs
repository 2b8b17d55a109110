//! Where flow records come from: an export file, a collector URL, or the
//! collector's Service through the API server (kubeconfig credentials).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bulkhead_api::flow::FlowRecord;
use bulkhead_insight::query::params;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Answer;
use crate::args::FlowQueryArgs;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub enum Source {
    File(PathBuf),
    Url(String),
    /// namespace, service, port
    Proxy(String, String, String),
}

fn query_string(p: &BTreeMap<String, String>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(p.iter())
        .finish()
}

impl Source {
    pub fn from_args(q: &FlowQueryArgs) -> anyhow::Result<Self> {
        Self::new(q.flows.as_ref(), q.collector.as_deref(), &q.service)
    }

    /// An export file, else a collector URL, else the collector's Service.
    pub fn new(
        flows: Option<&PathBuf>,
        collector: Option<&str>,
        service: &str,
    ) -> anyhow::Result<Self> {
        if let Some(path) = flows {
            return Ok(Source::File(path.clone()));
        }
        if let Some(url) = collector {
            return Ok(Source::Url(url.trim_end_matches('/').to_string()));
        }
        let (ns, rest) = service
            .split_once('/')
            .ok_or_else(|| anyhow!("--service {service:?}: expected namespace/name:port"))?;
        let (name, port) = rest
            .split_once(':')
            .ok_or_else(|| anyhow!("--service {service:?}: expected namespace/name:port"))?;
        Ok(Source::Proxy(ns.into(), name.into(), port.into()))
    }

    /// Every record of the query, page by page (`offset`, `nextOffset`), up
    /// to `max` records: beyond that it stops with an error rather than
    /// hold more than the caller can keep in memory. An export file is read
    /// whole (its `limit` does not apply).
    pub fn query_all(&self, p: &BTreeMap<String, String>, max: usize) -> anyhow::Result<Answer> {
        let answer = match self {
            Source::File(path) => offline(path, p, false)?,
            _ => {
                let mut p = p.clone();
                let page = max.clamp(1, params::MAX_LIMIT);
                p.insert("limit".into(), page.to_string());
                let mut all = Answer::default();
                let mut offset = 0;
                loop {
                    p.insert("offset".into(), offset.to_string());
                    let next = self.query(&p)?;
                    if offset == 0 {
                        // Losses are of the window, the same on every page.
                        all.lost = next.lost;
                    }
                    all.records.extend(next.records);
                    match next.next_offset {
                        Some(n) if n > offset && all.records.len() <= max => offset = n,
                        _ => break,
                    }
                }
                all
            }
        };
        if answer.records.len() > max {
            bail!(
                "the window holds more than {max} records (--max-records); narrow --since or raise the bound"
            );
        }
        Ok(answer)
    }

    pub fn query(&self, p: &BTreeMap<String, String>) -> anyhow::Result<Answer> {
        match self {
            Source::File(path) => offline(path, p, true),
            Source::Url(url) => {
                let uri = format!("{url}/api/v1/flows?{}", query_string(p));
                runtime()?.block_on(get(&uri))
            }
            Source::Proxy(ns, name, port) => {
                let path = format!(
                    "/api/v1/namespaces/{ns}/services/http:{name}:{port}/proxy/api/v1/flows?{}",
                    query_string(p)
                );
                runtime()?.block_on(proxied(path))
            }
        }
    }
}

/// `namespace/name` of a Service: its ClusterIP, from the API server, for
/// records that carry a Service address but no name (standalone agents,
/// records older than the name).
pub fn service_address(spec: &str) -> anyhow::Result<String> {
    let (ns, name) = spec
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        .ok_or_else(|| anyhow!("service:{spec}: expected service:namespace/name"))?;
    runtime()?.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the API server (KUBECONFIG) to look up the Service")?;
        let api: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::namespaced(client, ns);
        let svc = tokio::time::timeout(Duration::from_secs(10), api.get(name))
            .await
            .map_err(|_| anyhow!("reading Service {ns}/{name}: no answer within 10s"))?
            .with_context(|| format!("reading Service {ns}/{name}"))?;
        svc.spec
            .and_then(|s| s.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .ok_or_else(|| anyhow!("Service {ns}/{name} has no ClusterIP (a headless Service has no address to go through)"))
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The collector's answer, or its error message.
fn answer(status: u16, body: &[u8], from: &str) -> anyhow::Result<Answer> {
    if !(200..300).contains(&status) {
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        bail!("{from}: {status}: {}", message.trim());
    }
    serde_json::from_slice(body).with_context(|| format!("{from}: not a flows answer"))
}

async fn get(uri: &str) -> anyhow::Result<Answer> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(uri).body(Empty::new())?;
    let response = tokio::time::timeout(TIMEOUT, client.request(request))
        .await
        .map_err(|_| anyhow!("{uri}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("reaching the collector at {uri}"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    answer(status, &body, uri)
}

async fn proxied(path: String) -> anyhow::Result<Answer> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG); or pass --collector URL")?;
    let request = http::Request::get(&path).body(Vec::new())?;
    let response = tokio::time::timeout(TIMEOUT, client.send(request.map(Into::into)))
        .await
        .map_err(|_| anyhow!("{path}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("the collector through the API server ({path})"))?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    answer(status, &body, &path)
}

/// The same parameters the collector takes, applied to an export file.
fn offline(path: &PathBuf, p: &BTreeMap<String, String>, limit: bool) -> anyhow::Result<Answer> {
    let q = params::parse(p, &["limit"], jiff::Timestamp::now())?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: FlowRecord = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a flow/v1 record", path.display(), i + 1))?;
        if record.schema != bulkhead_api::flow::SCHEMA {
            bail!(
                "{}:{}: schema {:?}, expected {}",
                path.display(),
                i + 1,
                record.schema,
                bulkhead_api::flow::SCHEMA
            );
        }
        if q.filter.matches(&record) {
            records.push(record);
        }
    }
    records.sort_by_key(|r| r.start);
    let skip = if limit {
        records.len().saturating_sub(q.limit)
    } else {
        0
    };
    Ok(Answer {
        records: records.split_off(skip),
        lost: Vec::new(),
        next_offset: None,
    })
}
