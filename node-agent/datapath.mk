# Datapath targets; included from the root Makefile (`include node-agent/datapath.mk`).
# Paths are relative to the repository root.

CARGO ?= cargo
BPF_CLANG ?= clang
BPF_OUT ?= target/bpf
BPF_MULTIARCH := $(firstword $(wildcard /usr/include/$(shell uname -m)-linux-gnu))
BPF_CFLAGS := -g -O2 -target bpf -Wall -Werror -Ibpf/include -Ibpf/lib $(if $(BPF_MULTIARCH),-I$(BPF_MULTIARCH))

.PHONY: datapath-deps bpf test-datapath bench-datapath test-rr bench-rr test-restart bench-restart

# clang, llvm, libbpf-dev, bpftool, iproute2, python3 (apt; skipped when present).
datapath-deps:
	sh node-agent/deps.sh

# The BPF objects, standalone (build.rs compiles the same sources with the
# same flags into the agent binary).
bpf: $(BPF_OUT)/bpf_endpoint.o $(BPF_OUT)/bpf_host.o

$(BPF_OUT)/%.o: bpf/%.c $(wildcard bpf/include/*.h bpf/lib/*.h)
	@mkdir -p $(BPF_OUT)
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@

# The privileged datapath tests (`make unit` runs the agent's root-free ones:
# its library, the layout test, the encoding proptest): BPF_PROG_TEST_RUN
# tests and real packets between network
# namespaces, whose expected verdicts come from the verdict function and
# from `kubectl-bulkhead simulate` on tests/fixtures/cluster (compiled with
# `kubectl-bulkhead compile`). Needs root; fails (never skips) when eBPF or
# netns are missing.
test-datapath: datapath-deps
	@sh node-agent/preflight.sh
	$(CARGO) build -p kubectl-bulkhead
	$(CARGO) test -p bulkhead-agent --test prog_test_run_privileged --test datapath_netns_privileged \
		--test spoofing_privileged --test conntrack_lifecycle_privileged --test conntrack_full_privileged \
		--test programming_all_or_nothing_privileged --test services_privileged --test upgrade_privileged \
		--test advisories_privileged --test packet_parser_privileged \
		--test rule_hits_privileged --test first_start_privileged \
		-- --test-threads=2

# Per-packet run time and programming time at 10,000 rules, beside baselines.
bench-datapath: datapath-deps
	sh bench/datapath.sh --rules 10000

# Request/response between pods beside no program, a no-op TCX program, an
# nftables set and iptables (bench/rr.sh; root). The quick run is a few
# seconds per configuration on a debug build: it proves the harness works and
# that Bulkhead refuses the port its policy does not allow during the run.
test-rr: datapath-deps
	bash bench/rr.sh --quick

bench-rr: datapath-deps
	bash bench/rr.sh

# The agent SIGKILLed and restarted under TCP load (bench/restart.sh; root):
# established flows held, new allowed and denied flows tried all along, and
# the run fails unless none was dropped, refused or let through. The quick
# run (100 flows, 5 kills, 1,000 rules, debug agent) is ~40 s of traffic
# plus the agent's first programming (13 s at load average 14).
test-restart: datapath-deps
	bash bench/restart.sh --quick

bench-restart: datapath-deps
	bash bench/restart.sh
