# The lab and the end-to-end tests; included by the root Makefile.
#
#   make tools       kube-apiserver, etcd, kubectl and helm from Go modules, into
#                    a versioned cache outside the tree (minutes once, instant afterwards)
#   make e2e         the end-to-end tests against a real control plane (the Helm
#                    chart's among them: e2e/tests/helm.rs)
#   make helm-lint   helm lint --strict of the chart (charts/bulkhead)
#   make lab-up      bulkhead-lab up (leaves it running); lab-status, lab-down
#   make lab-demo    the lab walk-through (e2e/demo.sh): visibility, then enforcement, real packets
#   make lab-prune   remove what crashed labs (a test killed with Ctrl-C) left behind
#   make bench-propagation  policy and label change to first packet, p50/p99, 3x4 baseline
#                    beside 10 nodes x 50 pods (bench/propagation.sh; minutes)

CARGO ?= cargo
E2E_TOOLS := e2e/tools.sh
LAB := $(CARGO) run -q -p bulkhead-e2e --bin bulkhead-lab --

.PHONY: tools e2e helm-lint lab-up lab-down lab-status lab-prune lab-demo bench-propagation

tools:
	@bash $(E2E_TOOLS) build

# The lab needs root (network namespaces, a bridge, BPF); the tests build the
# operator, agent and CLI themselves (cargo build --workspace --bins).
e2e: tools
	@$(LAB) prune
	$(CARGO) test -p bulkhead-e2e -- --test-threads=1

helm-lint: tools
	@eval "$$(bash $(E2E_TOOLS) env)" && "$$HELM" lint --strict charts/bulkhead

lab-up: tools
	$(LAB) up

lab-down:
	$(LAB) down

lab-status:
	$(LAB) status

lab-prune:
	$(LAB) prune

lab-demo: tools
	@bash e2e/demo.sh --down

bench-propagation: tools
	@sh bench/propagation.sh
