#!/usr/bin/env bash
# The Bulkhead walk-through on the embedded example (examples/lab):
# see the traffic first, label it, then move a workload from visibility to
# full enforcement and watch exactly what changes, before anything is applied.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '%s\n' "$*" | fold -s -w 100; }

cargo build -q -p kubectl-bulkhead
kb=target/debug/kubectl-bulkhead
lab=examples/lab
work=$(mktemp -d /tmp/bulkhead-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$lab" "$work/lab"

step "1. Label everything: segmentation labels, identities, and the unlabeled queue"
say "LabelMappings turn pod, namespace and host labels into segmentation labels; every distinct set gets a numeric identity. dev/debug has no labels: it is the queue a security team works through."
$kb labels "$work/lab"

step "2. Today: prod/db is in full enforcement, prod/api only in visibility"
say "'.' passes, 'X' is dropped, '~' passes only because an endpoint is still in visibility mode: full enforcement would drop it."
$kb simulate "$work/lab" --matrix

step "3. One flow, explained: who decided, with which rule, in which mode"
$kb simulate "$work/lab" --from dev/api --to prod/api --port 8080
$kb simulate "$work/lab" --from prod/frontend --to prod/api --port 8080

step "4. Move prod/api to full enforcement (edit the policy, as a pull request would)"
sed -i 's/enforcement: visibility/enforcement: full/' "$work/lab/policies/prod-api.yaml"
grep -n 'enforcement' "$work/lab/policies/prod-api.yaml"
$kb simulate "$work/lab" --matrix --port 8080
say "dev/api -> prod/api is now dropped; prod/frontend -> prod/api still passes, by the allow rule."
$kb simulate "$work/lab" --from dev/api --to prod/api --port 8080 -o json \
  | python3 -c 'import json,sys; v=json.load(sys.stdin); print("dev/api -> prod/api:", v["verdict"])'

step "5. Compile what each node's agent will enforce"
$kb compile "$work/lab" --out "$work/maps"
ls "$work/maps"
say "Each NodeRuleMap lists the node's endpoints (address, identity, mode) and the rules resolved to identities; the IdentityMap shards map addresses to identities. The agent (bulkhead-agent --rule-map ... --identities ...) programs them into its eBPF maps."
