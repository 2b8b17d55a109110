# Bulkhead: every entry point a person or CI needs.
#
#   make demo    set up this machine and run the lab demo (the README's first command)
#   make test    set up this machine and run every test: lint, unit, CRD drift, datapath
#
# Both install what they need first (`make deps`), so they work on a fresh machine.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
# One-off builds (CI, make test on a fresh clone) gain nothing from incremental
# state, which costs gigabytes of disk.
export CARGO_INCREMENTAL ?= 0

.PHONY: all deps rust-deps build crds lint unit test demo demo-offline bench bench-store fuzz clean

all: build

## deps: system packages and Rust components (idempotent; quick when present)
deps: rust-deps
	@bash scripts/deps.sh

rust-deps:
	@rustup component add clippy rustfmt >/dev/null 2>&1 || true

build: deps
	$(CARGO) build --workspace --all-targets

## crds: regenerate crds/*.yaml and the Helm chart's copy from the Rust types (CI fails when they drift)
crds:
	$(CARGO) run -q -p bulkhead-api --bin crdgen -- crds charts/bulkhead/crds

# The Python the tests and benchmarks run (one traffic program, scripts/traffic.py).
PYTHON_SOURCES := scripts/traffic.py $(wildcard bench/rr/*.py bench/restart/*.py bench/store-duckdb/*.py)

lint: deps
	pyflakes3 $(PYTHON_SOURCES)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## unit: every cargo test that needs neither root nor a control plane (includes the
## agent's root-free tests: its library, the map layout against the BPF objects' BTF, the
## rule encoding proptest; and the CRD
## drift check, the flow/v1 schema, and the collector's store suite against a real
## ClickHouse server the tests start themselves)
unit: deps
	$(CARGO) test --workspace --exclude bulkhead-e2e --exclude bulkhead-agent
	$(CARGO) test -p bulkhead-agent --lib --test layout --test policy_encoding --test export_tls --test alerts

## test: the whole suite, as CI runs it
test: lint unit test-datapath e2e

## demo: the lab walk-through (e2e/demo.sh): a real API server, operator and
## agents; traffic seen in visibility mode, then a policy enforced on real packets
demo: deps tools
	@bash e2e/demo.sh --down

## demo-offline: the same story without root, from YAML (examples/lab) with kubectl-bulkhead
demo-offline: deps
	@bash scripts/demo.sh

## bench: compiler benchmarks (criterion) with a same-run baseline
bench: deps
	$(CARGO) bench -p bulkhead-policy --bench compile

## bench-store: the flow store (SQLite, ClickHouse 18.16, DuckDB) on a 400-day
## history of 2,000 workloads, beside a JSON-lines baseline (bench/store.sh)
bench-store: deps
	@bash bench/store.sh

## fuzz: the cargo-fuzz targets (fuzz/README.md), 20 s each from the committed
## corpus; needs the nightly toolchain. Not part of `make test`: building the
## fuzz crate (release, instrumented) alone takes longer than its 2-minute budget.
fuzz: deps
	@bash scripts/fuzz.sh --seconds $(or $(FUZZ_SECONDS),20)

clean:
	$(CARGO) clean

include node-agent/datapath.mk
include e2e/e2e.mk
include packaging/packaging.mk

# The .deb and OCI image checks (packaging/packaging.mk), on debug builds, and
# bench/rr.sh --quick and bench/restart.sh --quick (node-agent/datapath.mk).
test: test-package test-images test-rr test-restart
