//! Store benchmark (a harness, not criterion: one run takes minutes).
//!
//!  1. ingest: records/s through `Store::insert` (batches of 1,000, every
//!     record upserted into three tiers) for SQLite and ClickHouse, beside
//!     the baseline of appending the same records as JSON lines to a file
//!     (what the agent's flow log does);
//!  2. a generated 400-day history of 2,000 workloads, loaded straight into
//!     each backend's tier tables, then through `Store::aggregate` and
//!     `Store::records`: a 400-day top-talkers group-by and a filtered
//!     time-range query, each run 5 times after a warm-up (median, min).
//!
//! `bench/store.sh` runs it, then the DuckDB side (`bench/store-duckdb/`)
//! on the same history (`edges.jsonl` written here).
//!
//! Env: `BENCH_WORKLOADS` (2000), `BENCH_INGEST` (100000 records),
//! `BENCH_OUT` (directory for edges.jsonl and results.json).

#[path = "../tests/common/clickhouse.rs"]
mod clickhouse_server;
/// The generator, shared with the report benchmark (insight/benches/report.rs).
#[path = "../../insight/benches/common/history.rs"]
mod history;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use bulkhead_api::flow::{FlowBatch, FlowRecord};
use bulkhead_collector::edge::EdgeColumns;
use bulkhead_collector::store::clickhouse::ClickHouseConfig;
use bulkhead_collector::store::{ClickHouseStore, Clock, SqliteStore, Store, StoreConfig};
use bulkhead_collector::tier::{Retention, Tier};
use bulkhead_insight::{EndpointMatch, FlowFilter, GroupBy};
use history::{active, counters, edge, PEERS};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

const NOW: &str = "2026-06-15T12:00:00Z";
/// Per mille of (edge, bucket) pairs active, per tier.
const RATE: [(Tier, i64); 3] = [(Tier::Minute, 5), (Tier::Hour, 100), (Tier::Day, 500)];

fn env_u(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The buckets (index k, so bucket = k * width) a tier holds at NOW.
fn buckets(tier: Tier, now: i64, r: &Retention) -> std::ops::Range<i64> {
    let w = tier.width().expect("a fixed-width tier");
    let from = (now - r.of(tier).as_secs()).div_euclid(w) - 1;
    from..now.div_euclid(w) + 1
}

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

struct Row {
    what: String,
    backend: &'static str,
    figure: String,
}

async fn time_queries<S: Store>(
    store: &S,
    backend: &'static str,
    now: Timestamp,
    rows: &mut Vec<Row>,
) {
    let top = FlowFilter {
        since: Some(now - SignedDuration::from_hours(400 * 24)),
        ..Default::default()
    };
    let by = GroupBy::parse("source.app,destination.app").expect("by");
    let ranged = FlowFilter {
        since: Some(now - SignedDuration::from_hours(20 * 24)),
        until: Some(now - SignedDuration::from_hours(10 * 24)),
        from: Some(EndpointMatch::parse("app=app7").expect("from")),
        port: Some(443),
        ..Default::default()
    };
    let mut results = Vec::new();
    for (name, f) in [
        ("top talkers, 400 d, by source.app,destination.app", 0),
        (
            "records, 10 d across the hour/minute boundary, from app=app7 port 443",
            1,
        ),
    ] {
        let mut times = Vec::new();
        let mut n = 0;
        for run in 0..6 {
            let t = Instant::now();
            n = if f == 0 {
                store.aggregate(&top, &by).await.expect("aggregate").len()
            } else {
                store
                    .records(&ranged, 100_000)
                    .await
                    .expect("records")
                    .len()
            };
            if run > 0 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let (med, min) = median(times);
        results.push(json!({"query": name, "rows": n, "median_ms": med, "min_ms": min}));
        eprintln!("{backend}: {name}: {n} rows, median {med:.0} ms");
        rows.push(Row {
            what: format!("{name} ({n} rows out)"),
            backend,
            figure: format!("{med:.0} ms (min {min:.0})"),
        });
    }
    let _ = results;
}

async fn ingest<S: Store>(
    store: &S,
    records: &[FlowRecord],
    backend: &'static str,
    rows: &mut Vec<Row>,
) {
    let t = Instant::now();
    for (n, chunk) in records.chunks(1000).enumerate() {
        let b = FlowBatch {
            node: "node0".into(),
            batch_id: format!("ingest-{n}"),
            records: chunk.to_vec(),
            losses: vec![],
        };
        store.insert(&b).await.expect("insert");
    }
    let s = t.elapsed().as_secs_f64();
    rows.push(Row {
        what: format!("ingest, {} records in batches of 1,000", records.len()),
        backend,
        figure: format!("{:.0} records/s", records.len() as f64 / s),
    });
}

fn ingest_records(n: usize, workloads: u32, now: Timestamp) -> Vec<FlowRecord> {
    let edges = workloads * PEERS;
    (0..n)
        .map(|j| {
            let mut r = edge(j as u32 % edges, workloads);
            r.node = "node0".into();
            r.start = now - SignedDuration::from_secs(600)
                + SignedDuration::from_secs((j / edges as usize) as i64 * 60);
            r.end = r.start + SignedDuration::from_secs(10);
            (r.flows, r.packets, r.bytes) = (1, 10, 1200);
            r
        })
        .collect()
}

fn load_sqlite(
    path: &std::path::Path,
    workloads: u32,
    now: i64,
    r: &Retention,
) -> BTreeMap<&'static str, u64> {
    let mut conn = rusqlite::Connection::open(path).expect("sqlite");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "OFF")
        .expect("sync");
    let tx = conn.transaction().expect("tx");
    let edges = workloads * PEERS;
    {
        let mut st = tx
            .prepare(
                "INSERT INTO edges (id, key, counts, node,
               src_addr, src_ip_hi, src_ip_lo, src_identity, src_kind, src_name, src_namespace, src_reported, src_labels,
               dst_addr, dst_ip_hi, dst_ip_lo, dst_identity, dst_kind, dst_name, dst_namespace, dst_reported, dst_labels,
               port, protocol, direction, verdict, would_verdict, mode, reason, rule_policy, rule_name, rule_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
               ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32)",
            )
            .expect("prepare");
        for i in 0..edges {
            let e = EdgeColumns::of(&edge(i, workloads)).expect("edge");
            let (s, d) = (&e.src, &e.dst);
            let lj = |l: &BTreeMap<String, String>| serde_json::to_string(l).expect("labels");
            st.execute(rusqlite::params![
                i64::from(i) + 1,
                e.key,
                e.counts,
                e.node,
                s.addr,
                s.ip_hi,
                s.ip_lo,
                s.identity,
                s.kind,
                s.name,
                s.namespace,
                s.reported,
                lj(&s.labels),
                d.addr,
                d.ip_hi,
                d.ip_lo,
                d.identity,
                d.kind,
                d.name,
                d.namespace,
                d.reported,
                lj(&d.labels),
                e.port,
                e.protocol,
                e.direction,
                e.verdict,
                e.would_verdict,
                e.mode,
                e.reason,
                e.rule_policy,
                e.rule_name,
                e.rule_id
            ])
            .expect("edge row");
        }
    }
    let mut counts = BTreeMap::new();
    for (tier, rate) in RATE {
        let mut st = tx
            .prepare(&format!("INSERT INTO flows_{} (bucket, edge, flows, packets, bytes) VALUES (?1, ?2, ?3, ?4, ?5)", tier.name()))
            .expect("prepare");
        let mut n = 0u64;
        for k in buckets(tier, now, r) {
            for i in 0..i64::from(edges) {
                if active(i, k, rate) {
                    let (f, p, b) = counters(i, k);
                    st.execute(rusqlite::params![
                        k * tier.width().expect("fixed"),
                        i + 1,
                        f,
                        p,
                        b
                    ])
                    .expect("row");
                    n += 1;
                }
            }
        }
        counts.insert(tier.name(), n);
    }
    // Months are the sums of their days, as ingest makes them.
    let months = tx
        .execute(
            "INSERT INTO flows_month (bucket, edge, flows, packets, bytes)
             SELECT CAST(strftime('%s', date(bucket, 'unixepoch', 'start of month')) AS INTEGER), edge,
                    sum(flows), sum(packets), sum(bytes)
             FROM flows_day GROUP BY 1, 2",
            [],
        )
        .expect("months");
    counts.insert("month", months as u64);
    tx.commit().expect("commit");
    conn.execute_batch("ANALYZE").expect("analyze");
    counts
}

async fn ch_run(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--fail-with-body",
            "--data-binary",
            "@-",
            &format!("{url}/?database=bench"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(sql.as_bytes())?;
            c.wait_with_output()
        })
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "clickhouse: {text}\n{sql}");
    text
}

async fn load_clickhouse(url: &str, workloads: u32, now: i64, r: &Retention) {
    let edges = workloads * PEERS;
    ch_run(url, "CREATE TABLE bench_edges AS flows_day ENGINE = Memory").await;
    let mut body = String::from("INSERT INTO bench_edges FORMAT JSONEachRow\n");
    for i in 0..edges {
        let e = EdgeColumns::of(&edge(i, workloads)).expect("edge");
        let side = |p: &str,
                    s: &bulkhead_collector::edge::SideColumns,
                    m: &mut serde_json::Map<String, serde_json::Value>| {
            m.insert(format!("{p}_addr"), json!(s.addr));
            m.insert(format!("{p}_ip_hi"), json!(s.ip_hi));
            m.insert(format!("{p}_ip_lo"), json!(s.ip_lo));
            m.insert(format!("{p}_identity"), json!(s.identity));
            m.insert(format!("{p}_kind"), json!(s.kind));
            m.insert(format!("{p}_name"), json!(s.name));
            m.insert(format!("{p}_namespace"), json!(s.namespace));
            m.insert(format!("{p}_reported"), json!(u8::from(s.reported)));
            m.insert(
                format!("{p}_label_keys"),
                json!(s.labels.keys().collect::<Vec<_>>()),
            );
            m.insert(
                format!("{p}_label_values"),
                json!(s.labels.values().collect::<Vec<_>>()),
            );
        };
        let mut m = serde_json::Map::new();
        m.insert("part".into(), json!(i));
        m.insert("bucket".into(), json!(0));
        m.insert("edge".into(), json!(e.key));
        m.insert("counts".into(), json!(u8::from(e.counts)));
        m.insert("node".into(), json!(e.node));
        side("src", &e.src, &mut m);
        side("dst", &e.dst, &mut m);
        for (k, v) in [
            ("protocol", &e.protocol),
            ("direction", &e.direction),
            ("verdict", &e.verdict),
            ("would_verdict", &e.would_verdict),
            ("mode", &e.mode),
            ("reason", &e.reason),
            ("rule_policy", &e.rule_policy),
            ("rule_name", &e.rule_name),
        ] {
            m.insert(k.into(), json!(v));
        }
        m.insert("port".into(), json!(e.port));
        m.insert("rule_id".into(), json!(e.rule_id));
        for k in ["flows", "packets", "bytes"] {
            m.insert(k.into(), json!(0));
        }
        body.push_str(&serde_json::Value::Object(m).to_string());
        body.push('\n');
    }
    ch_run(url, &body).await;
    let describe = ch_run(url, "DESCRIBE TABLE flows_day FORMAT TabSeparated").await;
    let cols: Vec<String> = describe
        .lines()
        .filter_map(|l| l.split('\t').next())
        .map(str::to_string)
        .collect();
    for (tier, rate) in RATE {
        let range = buckets(tier, now, r);
        let w = tier.width().expect("fixed");
        let select: Vec<String> = cols
            .iter()
            .map(|c| match c.as_str() {
                "part" => {
                    "toUInt32(toYYYYMM(toDateTime(k * W))) AS part".replace('W', &w.to_string())
                }
                "bucket" => format!("toUInt32(k * {w}) AS bucket"),
                "flows" => "toUInt64(1 + (i + k) % 5) AS flows".into(),
                "packets" => "toUInt64((1 + (i + k) % 5) * 10) AS packets".into(),
                "bytes" => "toUInt64((1 + (i + k) % 5) * 10 * (100 + i % 900)) AS bytes".into(),
                other => other.to_string(),
            })
            .collect();
        let others: Vec<&str> = cols
            .iter()
            .map(String::as_str)
            .filter(|c| !["part", "bucket", "flows", "packets", "bytes"].contains(c))
            .collect();
        // In slices of buckets: one INSERT over every (edge, minute) pair
        // would not fit the server's memory limit.
        let mut k0 = range.start;
        while k0 < range.end {
            // About 100k rows (of wide edge columns) per INSERT.
            let slice = (100_000 * 1000 / (i64::from(edges) * rate)).max(1);
            let n = (range.end - k0).min(slice);
            ch_run(
                url,
                &format!(
                    "INSERT INTO flows_{t} SELECT {sel} FROM (
                       SELECT i, k FROM (SELECT toInt64(number) AS i FROM numbers({edges}))
                       CROSS JOIN (SELECT toInt64(number) + {k0} AS k FROM numbers({n}))
                       WHERE (i * 7919 + k * 104729) % 1000 < {rate})
                     ANY INNER JOIN (SELECT toInt64(part) AS i, {others} FROM bench_edges) USING i",
                    t = tier.name(),
                    sel = select.join(", "),
                    others = others.join(", "),
                ),
            )
            .await;
            k0 += n;
        }
    }
    let month_cols: Vec<String> = cols
        .iter()
        .map(|c| match c.as_str() {
            "part" => "toUInt32(toYYYYMM(toDateTime(bucket))) AS part".into(),
            "bucket" => "toUInt32(toDateTime(toStartOfMonth(toDateTime(bucket)))) AS bucket".into(),
            other => other.to_string(),
        })
        .collect();
    ch_run(
        url,
        &format!(
            "INSERT INTO flows_month SELECT {} FROM flows_day",
            month_cols.join(", ")
        ),
    )
    .await;
    ch_run(url, "DROP TABLE bench_edges").await;
    for tier in Tier::ALL {
        ch_run(url, &format!("OPTIMIZE TABLE flows_{} FINAL", tier.name())).await;
    }
}

fn write_edges(out: &std::path::Path, workloads: u32) {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(out.join("edges.jsonl")).expect("edges.jsonl"),
    );
    for i in 0..workloads * PEERS {
        let e = EdgeColumns::of(&edge(i, workloads)).expect("edge");
        let v = json!({
            "id": i + 1, "key": e.key, "counts": e.counts, "node": e.node,
            "src_addr": e.src.addr, "src_name": e.src.name, "src_namespace": e.src.namespace, "src_labels": serde_json::to_string(&e.src.labels).expect("labels"),
            "dst_addr": e.dst.addr, "dst_name": e.dst.name, "dst_namespace": e.dst.namespace, "dst_labels": serde_json::to_string(&e.dst.labels).expect("labels"),
            "port": e.port, "protocol": e.protocol, "verdict": e.verdict, "would_verdict": e.would_verdict,
        });
        writeln!(f, "{v}").expect("write");
    }
}

#[tokio::main]
async fn main() {
    let workloads = env_u("BENCH_WORKLOADS", 2000) as u32;
    let n_ingest = env_u("BENCH_INGEST", 100_000) as usize;
    let out = PathBuf::from(std::env::var("BENCH_OUT").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("bulkhead-store-bench")
            .display()
            .to_string()
    }));
    std::fs::create_dir_all(&out).expect("out dir");
    let now: Timestamp = NOW.parse().expect("now");
    let r = Retention::default();
    let (clock, _) = Clock::manual(now);
    let config = || StoreConfig {
        retention: r,
        clock: clock.clone(),
    };
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = clickhouse_server::ClickHouseServer::start();
    let ch = |db: &str| ClickHouseConfig {
        url: server.url(),
        database: db.into(),
        user: None,
        password: None,
    };

    // 1. Ingest.
    let records = ingest_records(n_ingest, workloads, now);
    let t = Instant::now();
    {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.path().join("flows.jsonl")).expect("jsonl"),
        );
        for r in &records {
            serde_json::to_writer(&mut f, r).expect("json");
            f.write_all(b"\n").expect("nl");
        }
        f.into_inner().expect("flush").sync_all().expect("fsync");
    }
    rows.push(Row {
        what: format!("ingest, {} records in batches of 1,000", records.len()),
        backend: "baseline: JSON lines to a file",
        figure: format!(
            "{:.0} records/s",
            records.len() as f64 / t.elapsed().as_secs_f64()
        ),
    });
    let sqlite = SqliteStore::open(&dir.path().join("ingest"), config()).expect("sqlite");
    ingest(&sqlite, &records, "SQLite", &mut rows).await;
    let chs = ClickHouseStore::open(ch("ingest"), config())
        .await
        .expect("clickhouse");
    ingest(&chs, &records, "ClickHouse 18.16", &mut rows).await;

    // 2. History.
    let t = Instant::now();
    let sqlite = SqliteStore::open(&dir.path().join("history"), config()).expect("sqlite");
    let counts = load_sqlite(
        &dir.path().join("history").join("flows.sqlite"),
        workloads,
        now.as_second(),
        &r,
    );
    eprintln!(
        "sqlite history loaded in {:.1} s: {counts:?}",
        t.elapsed().as_secs_f64()
    );
    let size = std::fs::metadata(dir.path().join("history").join("flows.sqlite"))
        .map(|m| m.len())
        .unwrap_or(0);
    time_queries(&sqlite, "SQLite", now, &mut rows).await;
    let t = Instant::now();
    let chs = ClickHouseStore::open(ch("bench"), config())
        .await
        .expect("clickhouse");
    load_clickhouse(&server.url(), workloads, now.as_second(), &r).await;
    eprintln!(
        "clickhouse history loaded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ch_stats = chs.stats().await.expect("stats");
    time_queries(&chs, "ClickHouse 18.16", now, &mut rows).await;
    write_edges(&out, workloads);

    println!(
        "Store benchmark: {workloads} workloads, {} edges; history at {NOW}",
        workloads * PEERS
    );
    println!("history rows per tier: minute {} (14 d), hour {} (90 d), day {} (400 d), month {} (400 d); SQLite file {:.0} MiB", counts["minute"], counts["hour"], counts["day"], counts["month"], size as f64 / 1048576.0);
    println!(
        "ClickHouse rows per tier: {}",
        ch_stats
            .iter()
            .map(|s| format!("{} {}", s.tier.name(), s.rows))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!("| what | backend | figure |");
    println!("|---|---|---|");
    for r in &rows {
        println!("| {} | {} | {} |", r.what, r.backend, r.figure);
    }
    let spec = json!({
        "workloads": workloads, "peers": PEERS, "now": now.as_second(),
        "rates": RATE.iter().map(|(t, r)| (t.name(), *r)).collect::<BTreeMap<_, _>>(),
        "buckets": RATE.iter().map(|(t, _)| { let b = buckets(*t, now.as_second(), &r); (t.name(), [b.start, b.end]) }).collect::<BTreeMap<_, _>>(),
        "rows": counts,
    });
    std::fs::write(out.join("spec.json"), spec.to_string()).expect("spec.json");
    eprintln!(
        "wrote {}/edges.jsonl and spec.json for bench/store-duckdb",
        out.display()
    );
    drop(server);
}
