//! The ClickHouse backend, over the HTTP interface (port 8123).
//!
//! ```text
//!  flows_minute | flows_hour | flows_day   SummingMergeTree((flows, packets, bytes))
//!     PARTITION BY part (YYYYMM, UTC)  ORDER BY (bucket, edge)
//!     one row per (bucket, edge) once merged; queries sum() anyway
//!     edge columns denormalised, labels as parallel arrays:
//!     src_label_values[indexOf(src_label_keys, 'app')]
//!  losses   MergeTree PARTITION BY part ORDER BY (node, start)
//!  batches  MergeTree PARTITION BY part ORDER BY (node, batch_id)
//! ```
//!
//! The SQL runs on 18.16 (Debian's package) and on current releases: no
//! TTL (retention is `ALTER TABLE ... DROP PARTITION`), no JSON functions,
//! no Nullable columns (absent names are `''`), no query parameters
//! (literals are quoted by [`Dialect::quote`]), and the partition key is a
//! `UInt32` the collector computes, so no server time zone is involved.
//!
//! A batch is stored in this order: the tiers, the losses, then the batch
//! id; a retry finds the id and is skipped. Inserts are serialised in this
//! process, so concurrent retries of one batch cannot both pass the check;
//! with several replicas, route each node to one replica (see the chart
//! README). A write that fails or a collector that dies after the first
//! tier's INSERT and before the batch id's can count the retried batch
//! twice in the tiers already written: the window ClickHouse, without
//! transactions across tables, leaves. SQLite has no such window (one
//! transaction per batch).

use std::time::Duration;

use bulkhead_api::flow::{FlowBatch, FlowRecord};
use bulkhead_insight::{FlowFilter, Group, GroupBy};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use serde_json::{json, Value};

use super::{group_key, range, Inserted, Maintained, NodeLoss, Store, StoreConfig, TierStats};
use crate::edge::{self, EdgeColumns, SideColumns};
use crate::sql::{edge_conditions, group_exprs, stretch_condition, Dialect};
use crate::tier::{cutoff_partition, partition, plan, Tier};
use crate::StoreError;

const D: Dialect = Dialect::ClickHouse;
const TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server is and who we are to it.
#[derive(Clone, Debug)]
pub struct ClickHouseConfig {
    /// `http://host:8123`, without a path.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// The ClickHouse backend.
#[derive(Debug)]
pub struct ClickHouseStore {
    client: Client<HttpConnector, Full<Bytes>>,
    ch: ClickHouseConfig,
    config: StoreConfig,
    insert_lock: tokio::sync::Mutex<()>,
}

fn table(tier: Tier) -> &'static str {
    match tier {
        Tier::Minute => "flows_minute",
        Tier::Hour => "flows_hour",
        Tier::Day => "flows_day",
        Tier::Month => "flows_month",
    }
}

const FLOW_COLUMNS: &str = "part UInt32, bucket UInt32, edge String, counts UInt8, node String,
  src_addr String, src_ip_hi Int64, src_ip_lo Int64, src_identity UInt32, src_kind String,
  src_name String, src_namespace String, src_reported UInt8,
  src_label_keys Array(String), src_label_values Array(String),
  dst_addr String, dst_ip_hi Int64, dst_ip_lo Int64, dst_identity UInt32, dst_kind String,
  dst_name String, dst_namespace String, dst_reported UInt8,
  dst_label_keys Array(String), dst_label_values Array(String),
  port UInt16, protocol String, direction String, verdict String, would_verdict String,
  mode String, reason String, rule_policy String, rule_name String, rule_id UInt32,
  svc_addr String DEFAULT '', svc_name String DEFAULT '',
  flows UInt64, packets UInt64, bytes UInt64";

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn side_json(p: &str, s: &SideColumns, row: &mut serde_json::Map<String, Value>) {
    row.insert(format!("{p}_addr"), json!(s.addr));
    row.insert(format!("{p}_ip_hi"), json!(s.ip_hi));
    row.insert(format!("{p}_ip_lo"), json!(s.ip_lo));
    row.insert(format!("{p}_identity"), json!(s.identity));
    row.insert(format!("{p}_kind"), json!(s.kind));
    row.insert(format!("{p}_name"), json!(s.name));
    row.insert(format!("{p}_namespace"), json!(s.namespace));
    row.insert(format!("{p}_reported"), json!(u8::from(s.reported)));
    row.insert(
        format!("{p}_label_keys"),
        json!(s.labels.keys().collect::<Vec<_>>()),
    );
    row.insert(
        format!("{p}_label_values"),
        json!(s.labels.values().collect::<Vec<_>>()),
    );
}

fn u64_of(v: &Value) -> Result<u64, StoreError> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| StoreError::Corrupt(format!("expected an unsigned number, got {v}")))
}

fn i64_of(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| StoreError::Corrupt(format!("expected a number, got {v}")))
}

fn str_of(v: &Value) -> Result<String, StoreError> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| StoreError::Corrupt(format!("expected a string, got {v}")))
}

impl ClickHouseStore {
    /// Connects, creates the database and tables if missing.
    pub async fn open(ch: ClickHouseConfig, config: StoreConfig) -> Result<Self, StoreError> {
        config.retention.validate()?;
        if ch.database.is_empty()
            || !ch
                .database
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            return Err(StoreError::Config(format!(
                "clickhouse database {:?}: letters, digits and '_' only",
                ch.database
            )));
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        let store = ClickHouseStore {
            client,
            ch,
            config,
            insert_lock: tokio::sync::Mutex::new(()),
        };
        store
            .run(
                &format!("CREATE DATABASE IF NOT EXISTS {}", store.ch.database),
                None,
            )
            .await?;
        for tier in Tier::ALL {
            store
                .run(
                    &format!(
                        "CREATE TABLE IF NOT EXISTS {}.{} ({FLOW_COLUMNS})
                         ENGINE = SummingMergeTree((flows, packets, bytes))
                         PARTITION BY part ORDER BY (bucket, edge)",
                        store.ch.database,
                        table(tier)
                    ),
                    None,
                )
                .await?;
            store.add_service_columns(table(tier)).await?;
        }
        store
            .run(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {}.losses (part UInt32, node String, start UInt32,
                       end UInt32, ring_buffer_events UInt64, export_records UInt64)
                     ENGINE = MergeTree PARTITION BY part ORDER BY (node, start)",
                    store.ch.database
                ),
                None,
            )
            .await?;
        store
            .run(
                &format!(
                    "CREATE TABLE IF NOT EXISTS {}.batches (part UInt32, node String,
                       batch_id String, received UInt32)
                     ENGINE = MergeTree PARTITION BY part ORDER BY (node, batch_id)",
                    store.ch.database
                ),
                None,
            )
            .await?;
        Ok(store)
    }

    /// A table from before the Service columns gets them; rows written
    /// before read `''` there (their edge key still holds `service`).
    async fn add_service_columns(&self, table: &str) -> Result<(), StoreError> {
        let have = self
            .select(&format!(
                "SELECT name FROM system.columns WHERE database = '{}' AND table = '{table}' \
                 AND name IN ('svc_addr', 'svc_name')",
                self.ch.database
            ))
            .await?;
        for column in ["svc_addr", "svc_name"] {
            if !have
                .iter()
                .any(|row| row.first().and_then(Value::as_str) == Some(column))
            {
                self.run(
                    &format!("ALTER TABLE {table} ADD COLUMN {column} String DEFAULT ''"),
                    None,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Runs one statement: `sql` in the URL when a body (rows) is given,
    /// else as the body. Returns the response text.
    async fn run(&self, sql: &str, rows: Option<String>) -> Result<String, StoreError> {
        let mut url = format!("{}/?", self.ch.url.trim_end_matches('/'));
        // The database does not exist before it is created.
        if !sql.starts_with("CREATE DATABASE") {
            url.push_str(&format!("database={}", self.ch.database));
        }
        if let Some(u) = &self.ch.user {
            url.push_str(&format!("&user={}", encode(u)));
        }
        if let Some(p) = &self.ch.password {
            url.push_str(&format!("&password={}", encode(p)));
        }
        let body = match rows {
            Some(rows) => {
                url.push_str(&format!("&query={}", encode(sql)));
                rows
            }
            None => sql.to_string(),
        };
        let request = hyper::Request::post(&url)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| StoreError::ClickHouse(format!("request: {e}")))?;
        let response = tokio::time::timeout(TIMEOUT, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| StoreError::ClickHouse(format!("{}: {e}", self.ch.url)))?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| StoreError::ClickHouse(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, StoreError>((status, String::from_utf8_lossy(&bytes).into_owned()))
        })
        .await
        .map_err(|_| {
            StoreError::ClickHouse(format!("no answer from {} within {TIMEOUT:?}", self.ch.url))
        })??;
        let (status, text) = response;
        if !status.is_success() {
            return Err(StoreError::ClickHouse(format!("{status}: {}", text.trim())));
        }
        Ok(text)
    }

    /// A SELECT in `FORMAT JSONCompact`; its rows.
    async fn select(&self, sql: &str) -> Result<Vec<Vec<Value>>, StoreError> {
        let text = self.run(&format!("{sql} FORMAT JSONCompact"), None).await?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| StoreError::ClickHouse(format!("answer is not JSON: {e}")))?;
        let rows = v
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| StoreError::ClickHouse("answer has no data".into()))?;
        Ok(rows
            .iter()
            .map(|r| r.as_array().cloned().unwrap_or_default())
            .collect())
    }

    async fn insert_rows(&self, table: &str, rows: Vec<Value>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut body = String::new();
        for r in rows {
            body.push_str(&r.to_string());
            body.push('\n');
        }
        self.run(
            &format!("INSERT INTO {table} FORMAT JSONEachRow"),
            Some(body),
        )
        .await?;
        Ok(())
    }

    async fn partitions(&self, table: &str) -> Result<Vec<u32>, StoreError> {
        let rows = self
            .select(&format!(
                "SELECT DISTINCT partition FROM system.parts WHERE database = {} AND table = {} AND active",
                D.quote(&self.ch.database),
                D.quote(table)
            ))
            .await?;
        let mut parts = Vec::new();
        for r in rows {
            let p = r.first().map(str_of).transpose()?.unwrap_or_default();
            let p: u32 = p
                .trim_matches('\'')
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("partition {p:?} of {table}")))?;
            parts.push(p);
        }
        parts.sort_unstable();
        Ok(parts)
    }

    async fn drop_before(&self, table: &str, cutoff: u32) -> Result<Vec<u32>, StoreError> {
        let mut dropped = Vec::new();
        for p in self.partitions(table).await? {
            if p < cutoff {
                self.run(&format!("ALTER TABLE {table} DROP PARTITION {p}"), None)
                    .await?;
                dropped.push(p);
            }
        }
        Ok(dropped)
    }
}

fn flow_row(tier: Tier, r: &FlowRecord, e: &EdgeColumns) -> Value {
    let bucket = tier.bucket(r.start.as_second());
    let mut row = serde_json::Map::new();
    row.insert("part".into(), json!(partition(bucket)));
    row.insert("bucket".into(), json!(bucket));
    row.insert("edge".into(), json!(e.key));
    row.insert("counts".into(), json!(u8::from(e.counts)));
    row.insert("node".into(), json!(e.node));
    side_json("src", &e.src, &mut row);
    side_json("dst", &e.dst, &mut row);
    for (k, v) in [
        ("protocol", &e.protocol),
        ("direction", &e.direction),
        ("verdict", &e.verdict),
        ("would_verdict", &e.would_verdict),
        ("mode", &e.mode),
        ("reason", &e.reason),
        ("rule_policy", &e.rule_policy),
        ("rule_name", &e.rule_name),
        ("svc_addr", &e.svc_addr),
        ("svc_name", &e.svc_name),
    ] {
        row.insert(k.into(), json!(v));
    }
    row.insert("port".into(), json!(e.port));
    row.insert("rule_id".into(), json!(e.rule_id));
    row.insert("flows".into(), json!(r.flows));
    row.insert("packets".into(), json!(r.packets));
    row.insert("bytes".into(), json!(r.bytes));
    Value::Object(row)
}

impl Store for ClickHouseStore {
    async fn insert(&self, batch: &FlowBatch) -> Result<Inserted, StoreError> {
        edge::validate(batch)?;
        let _serial = self.insert_lock.lock().await;
        let seen = self
            .select(&format!(
                "SELECT count() FROM batches WHERE node = {} AND batch_id = {}",
                D.quote(&batch.node),
                D.quote(&batch.batch_id)
            ))
            .await?;
        let seen = seen
            .first()
            .and_then(|r| r.first())
            .map(u64_of)
            .transpose()?
            .unwrap_or(0);
        if seen > 0 {
            return Ok(Inserted {
                records: 0,
                losses: 0,
                duplicate: true,
            });
        }
        let edges: Vec<EdgeColumns> = batch
            .records
            .iter()
            .map(EdgeColumns::of)
            .collect::<Result<_, _>>()?;
        for tier in Tier::ALL {
            let rows = batch
                .records
                .iter()
                .zip(&edges)
                .map(|(r, e)| flow_row(tier, r, e))
                .collect();
            self.insert_rows(table(tier), rows).await?;
        }
        let losses = batch
            .losses
            .iter()
            .map(|l| {
                json!({
                    "part": partition(l.start.as_second()),
                    "node": l.node,
                    "start": l.start.as_second(),
                    "end": l.end.as_second(),
                    "ring_buffer_events": l.ring_buffer_events,
                    "export_records": l.export_records,
                })
            })
            .collect();
        self.insert_rows("losses", losses).await?;
        let now = self.config.clock.now().as_second();
        self.insert_rows(
            "batches",
            vec![json!({"part": partition(now), "node": batch.node, "batch_id": batch.batch_id, "received": now})],
        )
        .await?;
        Ok(Inserted {
            records: batch.records.len(),
            losses: batch.losses.len(),
            duplicate: false,
        })
    }

    async fn page(
        &self,
        filter: &FlowFilter,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<FlowRecord>, StoreError> {
        filter.validate()?;
        let (since, until) = range(filter);
        let stretches = plan(
            &self.config.retention,
            self.config.clock.now(),
            since,
            until,
            false,
        );
        if stretches.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let cond = edge_conditions(D, filter);
        let parts: Vec<String> = stretches
            .iter()
            .map(|s| {
                format!(
                    "SELECT bucket, {} AS tier, edge, flows, packets, bytes FROM {} WHERE {} AND {cond}",
                    s.tier.index(),
                    table(s.tier),
                    stretch_condition(s)
                )
            })
            .collect();
        let rows = self
            .select(&format!(
                "SELECT bucket, tier, edge, sum(flows), sum(packets), sum(bytes) FROM ({})
                 GROUP BY bucket, tier, edge ORDER BY bucket, tier, edge LIMIT {} OFFSET {}",
                parts.join(" UNION ALL "),
                limit.min(i64::MAX as usize),
                offset.min(i64::MAX as usize)
            ))
            .await?;
        rows.iter()
            .map(|r| {
                if r.len() != 6 {
                    return Err(StoreError::Corrupt(format!(
                        "record row of {} columns",
                        r.len()
                    )));
                }
                let bucket = i64_of(&r[0])?;
                let tier = Tier::from_index(i64_of(&r[1])?)
                    .ok_or_else(|| StoreError::Corrupt(format!("tier {}", r[1])))?;
                edge::record_of(
                    &str_of(&r[2])?,
                    bucket,
                    tier.end(bucket),
                    [u64_of(&r[3])?, u64_of(&r[4])?, u64_of(&r[5])?],
                )
            })
            .collect()
    }

    async fn aggregate(&self, filter: &FlowFilter, by: &GroupBy) -> Result<Vec<Group>, StoreError> {
        filter.validate()?;
        let (since, until) = range(filter);
        let stretches = plan(
            &self.config.retention,
            self.config.clock.now(),
            since,
            until,
            true,
        );
        if stretches.is_empty() {
            return Ok(Vec::new());
        }
        let cond = edge_conditions(D, filter);
        let mut inner = Vec::new();
        let mut outer = Vec::new();
        for (i, k) in by.0.iter().enumerate() {
            let (p, v) = group_exprs(D, k);
            inner.push(format!("{p} AS p{i}, {v} AS v{i}"));
            outer.push(format!("p{i}, v{i}"));
        }
        inner.push("flows, packets, bytes, src_addr, dst_addr".into());
        let parts: Vec<String> = stretches
            .iter()
            .map(|s| {
                format!(
                    "SELECT {} FROM {} WHERE {} AND counts = 1 AND {cond}",
                    inner.join(", "),
                    table(s.tier),
                    stretch_condition(s)
                )
            })
            .collect();
        let keys = outer.join(", ");
        let sql = format!(
            "SELECT {}sum(flows), sum(packets), sum(bytes), {} FROM ({}) {}",
            if keys.is_empty() {
                String::new()
            } else {
                format!("{keys}, ")
            },
            D.peers(),
            parts.join(" UNION ALL "),
            if keys.is_empty() {
                String::new()
            } else {
                format!("GROUP BY {keys}")
            }
        );
        let n = by.0.len();
        let mut groups = Vec::new();
        for r in self.select(&sql).await? {
            if r.len() != 2 * n + 4 {
                return Err(StoreError::Corrupt(format!(
                    "group row of {} columns",
                    r.len()
                )));
            }
            let mut pairs = Vec::with_capacity(n);
            for i in 0..n {
                pairs.push((u64_of(&r[2 * i])? != 0, str_of(&r[2 * i + 1])?));
            }
            let g = Group {
                key: group_key(pairs),
                flows: u64_of(&r[2 * n])?,
                packets: u64_of(&r[2 * n + 1])?,
                bytes: u64_of(&r[2 * n + 2])?,
                peers: u64_of(&r[2 * n + 3])?,
            };
            if g.peers > 0 {
                groups.push(g);
            }
        }
        Group::sort(&mut groups);
        Ok(groups)
    }

    async fn losses(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<NodeLoss>, StoreError> {
        let mut cond = vec!["1".to_string()];
        if let Some(s) = since {
            cond.push(format!("start >= {}", s.as_second().max(0)));
        }
        if let Some(u) = until {
            cond.push(format!("start < {}", u.as_second().max(0)));
        }
        let rows = self
            .select(&format!(
                "SELECT node, sum(ring_buffer_events), sum(export_records) FROM losses
                 WHERE {} GROUP BY node ORDER BY node",
                cond.join(" AND ")
            ))
            .await?;
        rows.iter()
            .map(|r| {
                if r.len() != 3 {
                    return Err(StoreError::Corrupt(format!(
                        "loss row of {} columns",
                        r.len()
                    )));
                }
                let (ring, export) = (u64_of(&r[1])?, u64_of(&r[2])?);
                Ok(NodeLoss {
                    node: str_of(&r[0])?,
                    records: ring.saturating_add(export),
                    ring_buffer_events: ring,
                    export_records: export,
                })
            })
            .collect()
    }

    async fn maintain(&self, now: Timestamp) -> Result<Maintained, StoreError> {
        let r = &self.config.retention;
        let mut dropped = Vec::new();
        for tier in Tier::ALL {
            for p in self
                .drop_before(table(tier), cutoff_partition(r, tier, now))
                .await?
            {
                dropped.push(format!("{}:{p}", tier.name()));
            }
        }
        self.drop_before("losses", cutoff_partition(r, Tier::Day, now))
            .await?;
        self.drop_before("batches", cutoff_partition(r, Tier::Minute, now))
            .await?;
        Ok(Maintained { dropped })
    }

    async fn stats(&self) -> Result<Vec<TierStats>, StoreError> {
        let mut out = Vec::new();
        for tier in Tier::ALL {
            // Rows as merged: one per (bucket, edge), whatever merges are pending.
            let rows = self
                .select(&format!(
                    "SELECT count() FROM (SELECT bucket, edge FROM {} GROUP BY bucket, edge)",
                    table(tier)
                ))
                .await?;
            let rows = rows
                .first()
                .and_then(|r| r.first())
                .map(u64_of)
                .transpose()?
                .unwrap_or(0);
            let parts = self
                .select(&format!(
                    "SELECT DISTINCT part FROM {} ORDER BY part",
                    table(tier)
                ))
                .await?;
            let partitions = parts
                .iter()
                .filter_map(|r| r.first())
                .map(|v| u64_of(v).map(|p| p as u32))
                .collect::<Result<_, _>>()?;
            out.push(TierStats {
                tier,
                rows,
                partitions,
            });
        }
        Ok(out)
    }
}
