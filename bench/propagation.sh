#!/bin/sh
# Propagation benchmark (root): time from `kubectl apply` of a policy, and
# from a pod label change, to the first packet that follows it, with a
# prober opening a new flow every 5 ms; p50/p90/p99/max over 60 trials of
# each, on a 3 x 4 baseline lab and then a 10 x 50 lab, side by side.
#   bench/propagation.sh [--nodes 10] [--pods 50] [--trials 60] [--interval-ms 5] [--raw FILE]
# Runs one lab at a time; takes the lab down on exit, and `bulkhead-lab prune`
# removes what a killed run left.
set -eu
cd "$(dirname "$0")/.."
bash e2e/tools.sh build
cargo build --release -p bulkhead-e2e -p bulkhead-operator -p bulkhead-agent --bins
release="$(pwd)/target/release"
"$release/bulkhead-lab" prune >/dev/null
trap '"$release/bulkhead-lab" prune >/dev/null 2>&1 || true' EXIT
BULKHEAD_OPERATOR="$release/bulkhead-operator" \
BULKHEAD_AGENT="$release/bulkhead-agent" \
  "$release/bulkhead-propagation" "$@"
