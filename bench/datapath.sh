#!/bin/sh
# Datapath benchmark (root): per-packet run time (BPF_PROG_TEST_RUN mean and
# kernel.bpf_stats_enabled run_time_ns/run_cnt) and map programming time at
# N rules, each beside a baseline measured in the same run.
#   bench/datapath.sh [--rules 10000] [--repeat 200000]
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p bulkhead-agent --bin bulkhead-datapath-bench
exec target/release/bulkhead-datapath-bench "$@"
