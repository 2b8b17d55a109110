#!/usr/bin/env bash
# The cargo-fuzz targets (fuzz/README.md), each run from its committed
# corpus for SECONDS (default 20), then a table of runs and time.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]
#
# Needs the nightly toolchain (libFuzzer's instrumentation) and cargo-fuzz
# (installed into ~/.cargo when missing). New inputs go to a scratch corpus,
# never into fuzz/corpus/; a crash leaves its input in fuzz/artifacts/ and
# fails the run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER=20
TARGETS=()
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECONDS_PER=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) TARGETS+=("$1"); shift ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(load_manifests compile_incremental rule_map_translation)

rustup run nightly rustc --version >/dev/null 2>&1 ||
    { echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}
cd "$ROOT/fuzz"
# No sanitizer: the code under test is safe Rust (the agent's one unsafe
# block is the Pod impls), so ASan would find nothing and halve the runs.
cargo +nightly fuzz build -s none >/dev/null
SCRATCH=$(mktemp -d /tmp/bulkhead-fuzz.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
printf '%-24s %12s %8s %8s\n' target runs seconds corpus
for t in "${TARGETS[@]}"; do
    mkdir -p "$SCRATCH/$t"
    log=$SCRATCH/$t.log
    if ! cargo +nightly fuzz run -s none "$t" "$SCRATCH/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        echo "fuzz.sh: $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    printf '%-24s %12s %8s %8s\n' "$t" "${runs:-?}" "${secs:-?}" "$(ls "corpus/$t" | wc -l)"
done
