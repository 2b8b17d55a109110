//! The embedded store: one SQLite file in WAL mode.
//!
//! ```text
//!  edges (id, key = canonical edge JSON, counts, node, src_* / dst_* columns,
//!         src_labels / dst_labels JSON, port, protocol, verdicts, rule ...)
//!    ▲ edge
//!  flows_minute | flows_hour | flows_day  (bucket, edge) → flows, packets, bytes
//!  batches (node, batch_id)   losses (node, start, end, counters)
//! ```
//!
//! An edge is stored once however many buckets it has, so 400 days of
//! daily buckets cost three integers and two counters per row. Buckets are
//! keyed by (bucket, edge) `WITHOUT ROWID`, so a time range is a range scan
//! of the primary key and dropping a month is a range delete.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bulkhead_api::flow::{FlowBatch, FlowRecord};
use bulkhead_insight::{FlowFilter, Group, GroupBy};
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

use super::{group_key, range, Inserted, Maintained, NodeLoss, Store, StoreConfig, TierStats};
use crate::edge::{self, EdgeColumns, SideColumns};
use crate::sql::{edge_conditions, group_exprs, stretch_condition, Dialect};
use crate::tier::{cutoff_partition, partition, plan, Tier};
use crate::StoreError;

const D: Dialect = Dialect::Sqlite;

/// The SQLite backend.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    config: StoreConfig,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn table(tier: Tier) -> &'static str {
    match tier {
        Tier::Minute => "flows_minute",
        Tier::Hour => "flows_hour",
        Tier::Day => "flows_day",
        Tier::Month => "flows_month",
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS edges (
  id INTEGER PRIMARY KEY,
  key TEXT NOT NULL UNIQUE,
  counts INTEGER NOT NULL,
  node TEXT NOT NULL,
  src_addr TEXT NOT NULL, src_ip_hi INTEGER NOT NULL, src_ip_lo INTEGER NOT NULL,
  src_identity INTEGER NOT NULL, src_kind TEXT NOT NULL, src_name TEXT NOT NULL,
  src_namespace TEXT NOT NULL, src_reported INTEGER NOT NULL, src_labels TEXT NOT NULL,
  dst_addr TEXT NOT NULL, dst_ip_hi INTEGER NOT NULL, dst_ip_lo INTEGER NOT NULL,
  dst_identity INTEGER NOT NULL, dst_kind TEXT NOT NULL, dst_name TEXT NOT NULL,
  dst_namespace TEXT NOT NULL, dst_reported INTEGER NOT NULL, dst_labels TEXT NOT NULL,
  port INTEGER NOT NULL, protocol TEXT NOT NULL, direction TEXT NOT NULL,
  verdict TEXT NOT NULL, would_verdict TEXT NOT NULL, mode TEXT NOT NULL, reason TEXT NOT NULL,
  rule_policy TEXT NOT NULL, rule_name TEXT NOT NULL, rule_id INTEGER NOT NULL,
  svc_addr TEXT NOT NULL DEFAULT '', svc_name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS flows_minute (bucket INTEGER NOT NULL, edge INTEGER NOT NULL,
  flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
  PRIMARY KEY (bucket, edge)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flows_hour (bucket INTEGER NOT NULL, edge INTEGER NOT NULL,
  flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
  PRIMARY KEY (bucket, edge)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flows_day (bucket INTEGER NOT NULL, edge INTEGER NOT NULL,
  flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
  PRIMARY KEY (bucket, edge)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flows_month (bucket INTEGER NOT NULL, edge INTEGER NOT NULL,
  flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,
  PRIMARY KEY (bucket, edge)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (node TEXT NOT NULL, batch_id TEXT NOT NULL,
  received INTEGER NOT NULL, PRIMARY KEY (node, batch_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_received ON batches (received);
CREATE TABLE IF NOT EXISTS losses (node TEXT NOT NULL, start INTEGER NOT NULL,
  end_ INTEGER NOT NULL, ring_buffer_events INTEGER NOT NULL, export_records INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS losses_start ON losses (start);
";

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // WAL with synchronous=NORMAL survives a process crash; a power cut can
    // lose the last transactions, which the agents' spools resend.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// The first second of month `YYYYMM`.
fn month_start(part: u32) -> i64 {
    let (y, m) = ((part / 100) as i16, (part % 100) as i8);
    jiff::civil::date(y, m, 1)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_second())
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens (or creates) `dir/flows.sqlite`.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        config.retention.validate()?;
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Config(format!("data dir {}: {e}", dir.display())))?;
        let path = dir.join("flows.sqlite");
        let writer = open_conn(&path)?;
        writer.execute_batch(SCHEMA)?;
        add_service_columns(&writer)?;
        let reader = open_conn(&path)?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
            config,
            path,
        })
    }

    async fn with<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("sqlite connection lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// A store from before the Service columns gets them, filled from each
/// edge's key (the record, which always kept `service`).
fn add_service_columns(conn: &Connection) -> Result<(), StoreError> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('edges') WHERE name = 'svc_addr'")?
        .exists([])?;
    if has {
        return Ok(());
    }
    conn.execute_batch(
        "BEGIN;
         ALTER TABLE edges ADD COLUMN svc_addr TEXT NOT NULL DEFAULT '';
         ALTER TABLE edges ADD COLUMN svc_name TEXT NOT NULL DEFAULT '';
         UPDATE edges SET
           svc_addr = COALESCE(json_extract(key, '$.service.address'), ''),
           svc_name = COALESCE(json_extract(key, '$.service.namespace') || '/' ||
                               json_extract(key, '$.service.name'), '')
         WHERE json_extract(key, '$.service') IS NOT NULL;
         COMMIT;",
    )?;
    Ok(())
}

fn labels_json(side: &SideColumns) -> String {
    serde_json::to_string(&side.labels).unwrap_or_else(|_| "{}".into())
}

fn edge_id(tx: &rusqlite::Transaction<'_>, e: &EdgeColumns) -> Result<i64, StoreError> {
    let found: Option<i64> = tx
        .prepare_cached("SELECT id FROM edges WHERE key = ?1")?
        .query_row([&e.key], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    let (s, d) = (&e.src, &e.dst);
    tx.prepare_cached(
        "INSERT INTO edges (key, counts, node,
           src_addr, src_ip_hi, src_ip_lo, src_identity, src_kind, src_name, src_namespace, src_reported, src_labels,
           dst_addr, dst_ip_hi, dst_ip_lo, dst_identity, dst_kind, dst_name, dst_namespace, dst_reported, dst_labels,
           port, protocol, direction, verdict, would_verdict, mode, reason, rule_policy, rule_name, rule_id,
           svc_addr, svc_name)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
           ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33)",
    )?
    .execute(params![
        e.key, e.counts, e.node,
        s.addr, s.ip_hi, s.ip_lo, s.identity, s.kind, s.name, s.namespace, s.reported, labels_json(s),
        d.addr, d.ip_hi, d.ip_lo, d.identity, d.kind, d.name, d.namespace, d.reported, labels_json(d),
        e.port, e.protocol, e.direction, e.verdict, e.would_verdict, e.mode, e.reason,
        e.rule_policy, e.rule_name, e.rule_id,
        e.svc_addr, e.svc_name,
    ])?;
    Ok(tx.last_insert_rowid())
}

fn insert_batch(
    conn: &mut Connection,
    batch: &FlowBatch,
    now: i64,
) -> Result<Inserted, StoreError> {
    let tx = conn.transaction()?;
    let fresh = tx
        .prepare_cached(
            "INSERT INTO batches (node, batch_id, received) VALUES (?1, ?2, ?3)
             ON CONFLICT (node, batch_id) DO NOTHING",
        )?
        .execute(params![batch.node, batch.batch_id, now])?;
    if fresh == 0 {
        return Ok(Inserted {
            records: 0,
            losses: 0,
            duplicate: true,
        });
    }
    for r in &batch.records {
        let e = EdgeColumns::of(r)?;
        let id = edge_id(&tx, &e)?;
        let start = r.start.as_second();
        // Validated to fit i64.
        let c = [r.flows as i64, r.packets as i64, r.bytes as i64];
        for tier in Tier::ALL {
            tx.prepare_cached(&format!(
                "INSERT INTO {} (bucket, edge, flows, packets, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (bucket, edge) DO UPDATE SET flows = flows + excluded.flows,
                   packets = packets + excluded.packets, bytes = bytes + excluded.bytes",
                table(tier)
            ))?
            .execute(params![tier.bucket(start), id, c[0], c[1], c[2]])?;
        }
    }
    for l in &batch.losses {
        tx.prepare_cached(
            "INSERT INTO losses (node, start, end_, ring_buffer_events, export_records)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            l.node,
            l.start.as_second(),
            l.end.as_second(),
            l.ring_buffer_events as i64,
            l.export_records as i64
        ])?;
    }
    tx.commit()?;
    Ok(Inserted {
        records: batch.records.len(),
        losses: batch.losses.len(),
        duplicate: false,
    })
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store for SqliteStore {
    async fn insert(&self, batch: &FlowBatch) -> Result<Inserted, StoreError> {
        edge::validate(batch)?;
        let batch = batch.clone();
        let now = self.config.clock.now().as_second();
        Self::with(&self.writer, move |c| insert_batch(c, &batch, now)).await
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
        let parts: Vec<String> = stretches
            .iter()
            .map(|s| {
                format!(
                    "SELECT bucket, {} AS tier, edge, flows, packets, bytes FROM {} WHERE {}",
                    s.tier.index(),
                    table(s.tier),
                    stretch_condition(s)
                )
            })
            .collect();
        let sql = format!(
            "SELECT t.bucket, t.tier, e.key, t.flows, t.packets, t.bytes
             FROM ({}) t JOIN edges e ON e.id = t.edge WHERE {}
             ORDER BY t.bucket, t.tier, e.key LIMIT {} OFFSET {}",
            parts.join(" UNION ALL "),
            edge_conditions(D, filter),
            limit.min(i64::MAX as usize),
            offset.min(i64::MAX as usize)
        );
        Self::with(&self.reader, move |c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    [
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ],
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (bucket, tier, key, c) = row?;
                let tier = Tier::from_index(tier)
                    .ok_or_else(|| StoreError::Corrupt(format!("tier {tier}")))?;
                out.push(edge::record_of(
                    &key,
                    bucket,
                    tier.end(bucket),
                    c.map(u64_of),
                )?);
            }
            Ok(out)
        })
        .await
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
        // Sum per edge first (a range scan of each tier's primary key), then
        // join the edges and group by their labels: label lookups run once
        // per edge, not once per bucket.
        let parts: Vec<String> = stretches
            .iter()
            .map(|s| {
                format!(
                    "SELECT edge, flows, packets, bytes FROM {} WHERE {}",
                    table(s.tier),
                    stretch_condition(s)
                )
            })
            .collect();
        let mut select = Vec::new();
        let mut group = Vec::new();
        for (i, k) in by.0.iter().enumerate() {
            let (p, v) = group_exprs(D, k);
            select.push(format!("{p} AS p{i}, coalesce({v}, '') AS v{i}"));
            group.push(format!("p{i}, v{i}"));
        }
        select.push(format!(
            "sum(c.flows), sum(c.packets), sum(c.bytes), {}",
            D.peers()
        ));
        let sql = format!(
            "WITH c AS (SELECT edge, sum(flows) AS flows, sum(packets) AS packets, sum(bytes) AS bytes
                        FROM ({}) GROUP BY edge)
             SELECT {} FROM c JOIN edges e ON e.id = c.edge
             WHERE e.counts = 1 AND {} {}",
            parts.join(" UNION ALL "),
            select.join(", "),
            edge_conditions(D, filter),
            if group.is_empty() { String::new() } else { format!("GROUP BY {}", group.join(", ")) }
        );
        let n = by.0.len();
        let mut groups = Self::with(&self.reader, move |c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([], |r| {
                let mut pairs = Vec::with_capacity(n);
                for i in 0..n {
                    pairs.push((r.get::<_, i64>(2 * i)? != 0, r.get::<_, String>(2 * i + 1)?));
                }
                let sum = |j: usize| {
                    r.get::<_, Option<i64>>(2 * n + j)
                        .map(|v| u64_of(v.unwrap_or(0)))
                };
                Ok(Group {
                    key: group_key(pairs),
                    flows: sum(0)?,
                    packets: sum(1)?,
                    bytes: sum(2)?,
                    peers: sum(3)?,
                })
            })?;
            let mut out = Vec::new();
            for g in rows {
                let g = g?;
                if g.peers > 0 {
                    out.push(g);
                }
            }
            Ok(out)
        })
        .await?;
        Group::sort(&mut groups);
        Ok(groups)
    }

    async fn losses(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<NodeLoss>, StoreError> {
        let lo = since.map_or(i64::MIN, |t| t.as_second());
        let hi = until.map_or(i64::MAX, |t| t.as_second());
        Self::with(&self.reader, move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT node, sum(ring_buffer_events), sum(export_records) FROM losses
                 WHERE start >= ?1 AND start < ?2 GROUP BY node ORDER BY node",
            )?;
            let rows = stmt.query_map([lo, hi], |r| {
                let (ring, export) = (u64_of(r.get(1)?), u64_of(r.get(2)?));
                Ok(NodeLoss {
                    node: r.get(0)?,
                    records: ring.saturating_add(export),
                    ring_buffer_events: ring,
                    export_records: export,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn maintain(&self, now: Timestamp) -> Result<Maintained, StoreError> {
        let retention = self.config.retention;
        Self::with(&self.writer, move |c| {
            let mut dropped = Vec::new();
            let tx = c.transaction()?;
            for tier in Tier::ALL {
                let cutoff = month_start(cutoff_partition(&retention, tier, now));
                let parts: Vec<i64> = tx
                    .prepare(&format!(
                        "SELECT DISTINCT bucket FROM {} WHERE bucket < ?1",
                        table(tier)
                    ))?
                    .query_map([cutoff], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut months: Vec<u32> = parts.into_iter().map(partition).collect();
                months.dedup();
                tx.execute(
                    &format!("DELETE FROM {} WHERE bucket < ?1", table(tier)),
                    [cutoff],
                )?;
                dropped.extend(months.into_iter().map(|m| format!("{}:{m}", tier.name())));
            }
            let day_cutoff = month_start(cutoff_partition(&retention, Tier::Day, now));
            tx.execute("DELETE FROM losses WHERE start < ?1", [day_cutoff])?;
            let minute_cutoff = month_start(cutoff_partition(&retention, Tier::Minute, now));
            tx.execute("DELETE FROM batches WHERE received < ?1", [minute_cutoff])?;
            // Every edge has a bucket in the day tier, the longest kept.
            tx.execute(
                "DELETE FROM edges WHERE id NOT IN (SELECT edge FROM flows_day)",
                [],
            )?;
            tx.commit()?;
            Ok(Maintained { dropped })
        })
        .await
    }

    async fn stats(&self) -> Result<Vec<TierStats>, StoreError> {
        Self::with(&self.reader, move |c| {
            let mut out = Vec::new();
            for tier in Tier::ALL {
                let rows: i64 =
                    c.query_row(&format!("SELECT count(*) FROM {}", table(tier)), [], |r| {
                        r.get(0)
                    })?;
                let buckets: Vec<i64> = c
                    .prepare(&format!(
                        "SELECT DISTINCT bucket FROM {} ORDER BY bucket",
                        table(tier)
                    ))?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let mut partitions: Vec<u32> = buckets.into_iter().map(partition).collect();
                partitions.dedup();
                out.push(TierStats {
                    tier,
                    rows: u64_of(rows),
                    partitions,
                });
            }
            Ok(out)
        })
        .await
    }
}
