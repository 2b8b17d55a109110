"""DuckDB beside SQLite and ClickHouse on the store benchmark's history.

Reads spec.json and edges.jsonl that `cargo bench -p bulkhead-collector
--bench store` wrote into OUT, builds the same normalised layout as the
SQLite store (edges + one table per tier, (bucket, edge) -> counters, the
same activity rule and counters), and runs the same two queries in the
shape the SQLite store issues them. Prints markdown table rows.

Kept out of the Cargo workspace on purpose: DuckDB's bundled Rust build
compiles its C++ for a long time; the Python wheel is prebuilt.

    python3 run.py OUT
"""

import datetime
import json
import os
import statistics
import sys
import time

import duckdb

WIDTH = {"minute": 60, "hour": 3600, "day": 86400}


def align_up(s, w):
    return -((-s) // w) * w


def month_floor(s):
    d = datetime.datetime.fromtimestamp(s, datetime.timezone.utc)
    return int(d.replace(day=1, hour=0, minute=0, second=0).timestamp())


def month_ceil(s):
    f = month_floor(s)
    if f == s:
        return f
    d = datetime.datetime.fromtimestamp(f, datetime.timezone.utc)
    y, m = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return int(d.replace(year=y, month=m).timestamp())


COARSER = {"minute": "hour", "hour": "day", "day": "month", "month": None}


def bucket_floor(tier, s):
    return month_floor(s) if tier == "month" else s // WIDTH[tier] * WIDTH[tier]


def bucket_ceil(tier, s):
    return month_ceil(s) if tier == "month" else align_up(s, WIDTH[tier])


def split(tier, f, t, out):
    """[f, t) at tier (t None: unbounded), whole coarser buckets to the coarser tier."""
    if t is not None and f >= t:
        return
    c = COARSER[tier]
    if c:
        first = bucket_ceil(c, f)
        last = None if t is None else bucket_floor(c, t)
        if last is None or first < last:
            split(tier, f, first, out)
            split(c, first, last, out)
            if last is not None:
                split(tier, last, t, out)
            return
    out.append((tier, f, t))


def main(out):
    spec = json.load(open(os.path.join(out, "spec.json")))
    now = spec["now"]
    path = os.path.join(out, "duck.db")
    if os.path.exists(path):
        os.remove(path)
    con = duckdb.connect(path)
    t0 = time.time()
    con.execute(
        "CREATE TABLE edges AS SELECT * FROM read_json_auto(?, format='newline_delimited')",
        [os.path.join(out, "edges.jsonl")],
    )
    counts = {}
    for tier, rate in spec["rates"].items():
        k0, k1 = spec["buckets"][tier]
        w = WIDTH[tier]
        con.execute(
            f"""CREATE TABLE flows_{tier} AS
                SELECT k * {w} AS bucket, id AS edge,
                       1 + (i + k) % 5 AS flows,
                       (1 + (i + k) % 5) * 10 AS packets,
                       (1 + (i + k) % 5) * 10 * (100 + i % 900) AS bytes
                FROM range({k0}, {k1}) t(k), (SELECT id, id - 1 AS i FROM edges) e
                WHERE (i * 7919 + k * 104729) % 1000 < {rate}
                ORDER BY bucket, edge"""
        )
        counts[tier] = con.execute(f"SELECT count(*) FROM flows_{tier}").fetchone()[0]
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        """CREATE TABLE flows_month AS
           SELECT CAST(epoch(date_trunc('month', to_timestamp(bucket))) AS BIGINT) AS bucket, edge,
                  sum(flows) AS flows, sum(packets) AS packets, sum(bytes) AS bytes
           FROM flows_day GROUP BY ALL ORDER BY bucket, edge"""
    )
    counts["month"] = con.execute("SELECT count(*) FROM flows_month").fetchone()[0]
    con.execute("CHECKPOINT")
    load_s = time.time() - t0
    if counts != spec["rows"]:
        sys.exit(f"DuckDB rows {counts} differ from the Rust generator's {spec['rows']}")

    m0 = align_up(now - 14 * 86400, 3600)
    h0 = align_up(now - 90 * 86400, 86400)
    d0 = align_up(now - 400 * 86400, 86400)
    since = now - 400 * 86400
    # The stretches the store's aggregate reads (collector/src/tier.rs plan
    # with coarsen): every whole coarser bucket from the coarser tier.
    stretches = []
    for tier, f, t in (("day", d0, h0), ("hour", h0, m0), ("minute", m0, None)):
        split(tier, max(f, since), t, stretches)
    parts = []
    for tier, f, t in stretches:
        cond = f"bucket >= {f}" + ("" if t is None else f" AND bucket < {t}")
        parts.append(f"SELECT edge, flows, packets, bytes FROM flows_{tier} WHERE {cond}")
    top = f"""
      WITH c AS (SELECT edge, sum(flows) AS flows, sum(packets) AS packets, sum(bytes) AS bytes FROM (
          {" UNION ALL ".join(parts)}) GROUP BY edge)
      SELECT json_extract_string(src_labels, '$.app') IS NOT NULL AS p0,
             coalesce(json_extract_string(src_labels, '$.app'), '') AS v0,
             json_extract_string(dst_labels, '$.app') IS NOT NULL AS p1,
             coalesce(json_extract_string(dst_labels, '$.app'), '') AS v1,
             sum(c.flows), sum(c.packets), sum(c.bytes), count(DISTINCT src_addr || '>' || dst_addr)
      FROM c JOIN edges e ON e.id = c.edge WHERE e.counts GROUP BY p0, v0, p1, v1"""
    a, b = now - 20 * 86400, now - 10 * 86400
    ranged = f"""
      SELECT t.bucket, t.width, e.key, t.flows, t.packets, t.bytes FROM (
          SELECT bucket, 3600 AS width, edge, flows, packets, bytes FROM flows_hour WHERE bucket >= {a} AND bucket < {m0}
          UNION ALL SELECT bucket, 60 AS width, edge, flows, packets, bytes FROM flows_minute WHERE bucket >= {m0} AND bucket < {b}
      ) t JOIN edges e ON e.id = t.edge
      WHERE json_extract_string(src_labels, '$.app') = 'app7' AND port = 443
      ORDER BY t.bucket, e.key LIMIT 100000"""
    names = [
        ("top talkers, 400 d, by source.app,destination.app", top),
        ("records, 10 d across the hour/minute boundary, from app=app7 port 443", ranged),
    ]
    print(f"DuckDB {duckdb.__version__}: history loaded in {load_s:.1f} s, rows {counts}", file=sys.stderr)
    for name, sql in names:
        times = []
        n = 0
        for run in range(6):
            t = time.perf_counter()
            n = len(con.execute(sql).fetchall())
            if run:
                times.append((time.perf_counter() - t) * 1000)
        print(f"| {name} ({n} rows out) | DuckDB {duckdb.__version__} | {statistics.median(times):.0f} ms (min {min(times):.0f}) |")


if __name__ == "__main__":
    main(sys.argv[1])
