#!/bin/sh
# Store benchmark: ingest records/s per backend, and a 400-day history of
# 2,000 workloads queried on SQLite, ClickHouse (a real 18.16 server the
# harness starts) and DuckDB side by side. Needs clickhouse-server
# (scripts/deps.sh) and, for DuckDB, python3 with venv and PyPI.
#   bench/store.sh [OUT]        (BENCH_WORKLOADS, BENCH_INGEST to resize)
set -eu
cd "$(dirname "$0")/.."
out=${1:-${TMPDIR:-/tmp}/bulkhead-store-bench}
mkdir -p "$out"
BENCH_OUT="$out" cargo bench -p bulkhead-collector --bench store
venv="$out/duckdb-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r bench/store-duckdb/requirements.txt
fi
"$venv/bin/python" bench/store-duckdb/run.py "$out"
