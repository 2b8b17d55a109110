#!/usr/bin/env bash
# The lab walk-through: a cluster of network namespaces with the real
# operator and agents. Traffic is seen in visibility mode first, then a
# policy is applied with kubectl and real packets are allowed and dropped as
# it says (and as `kubectl-bulkhead simulate` predicted). Needs root.
#
#   e2e/demo.sh            build the lab in $BULKHEAD_LAB_DIR (default /tmp/bulkhead-demo),
#                          walk through, leave it running
#   e2e/demo.sh --down     and take it down at the end
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '%s\n' "$*" | fold -s -w 100; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

[[ $(id -u) == 0 ]] || { echo "demo.sh: the lab needs root (network namespaces, a bridge, eBPF)" >&2; exit 1; }
down_at_end=false
[[ ${1:-} == --down ]] && down_at_end=true

dir=${BULKHEAD_LAB_DIR:-/tmp/bulkhead-demo}
bash e2e/tools.sh build >/dev/null
cargo build -q --workspace --bins
lab() { target/debug/bulkhead-lab --dir "$dir" "$@"; }
kb=target/debug/kubectl-bulkhead
if [[ -e $dir/lab.json ]]; then lab down >/dev/null; fi

step "1. A cluster on this machine: 3 nodes, 12 pods in namespaces prod and dev"
say "Nodes and pods are network namespaces; a real kube-apiserver and etcd, the Bulkhead operator, and one bulkhead-agent per node (inside its node's namespace). Every pod answers on TCP 8080 and 9090."
run lab up --nodes 3 --pods 4
eval "$(lab env)"
k() { run "$KUBECTL" "$@"; }
k get pods -A -o wide

step "2. Segmentation labels: app from the pod, env from its namespace"
"$KUBECTL" apply -f - <<'EOF'
apiVersion: bulkhead.dev/v1alpha1
kind: LabelMapping
metadata: {name: workloads}
spec:
  rules:
  - name: app-and-env
    match: {pods: {}}
    copyLabels:
    - {key: app, fromLabel: app}
    - {key: env, fromLabel: env, source: namespace}
EOF
sleep 1
k get labelmappings
k get noderulemaps

step "3. A policy in visibility mode: prod apis take TCP 8080 from prod webs, nothing else"
policy_yaml() {
	cat <<EOF
apiVersion: bulkhead.dev/v1alpha1
kind: SegmentationPolicy
metadata: {name: prod-api}
spec:
  scope: {selector: {matchLabels: {app: api, env: prod}}}
  enforcement: $1
  ingress:
  - name: from-prod-web
    action: allow
    peers: [{selector: {matchLabels: {app: web, env: prod}}}]
    ports: [{protocol: TCP, port: 8080}]
EOF
}
policy() { policy_yaml "$1" | "$KUBECTL" apply -f -; }
policy visibility
run "$KUBECTL" wait --for=condition=Ready --timeout=30s segpol/prod-api
say "Nothing is dropped yet: every pod still reaches every other."
run lab matrix --port 8080
say "(The agents send a window of records every second.)"
sleep 3
say "But every agent reports what full enforcement would drop, as flow/v1 records shipped to the collector (the lab runs one; the agents authenticate with node-bound ServiceAccount tokens). Flows into the prod apis that the policy would deny, from the collector:"
run "$kb" flows --collector "$BULKHEAD_COLLECTOR" --since 10m --to app=api,env=prod --verdict would-deny --limit 12
say "The same history from the other side: everything prod/web pods sent, with the rule that decided it."
run "$kb" flows --collector "$BULKHEAD_COLLECTOR" --since 10m --from app=web,env=prod --limit 8

step "4. Before enforcing: what would change? (simulated on the objects in the cluster)"
snap=$(mktemp -d)
trap 'rm -rf "$snap"' EXIT
"$KUBECTL" get namespaces,nodes,pods,labelmappings,segmentationpolicies -A -o yaml >"$snap/today.yaml"
mkdir "$snap/full"
sed 's/enforcement: visibility/enforcement: full/' "$snap/today.yaml" >"$snap/full/cluster.yaml"
run "$kb" simulate "$snap/full" --matrix --port 8080
say "And against the traffic actually seen in step 3: what-if replays the collector's history under today's policy and under the draft, each flow judged by the labels it carried. It exits 3 when observed traffic would be newly denied (a CI job fails on that; see docs/what-if.md)."
policy_yaml full >"$snap/prod-api-full.yaml"
run "$kb" what-if "$snap/prod-api-full.yaml" --cluster "$snap/today.yaml" --collector "$BULKHEAD_COLLECTOR" --since 10m || say "(exit status $?: the change would drop observed traffic, listed above)"

step "5. Enforce: the same policy in full mode"
policy full
run "$KUBECTL" wait --for=condition=Ready --timeout=30s segpol/prod-api
k get segmentationpolicies
say "Real packets now: prod webs reach the prod apis; dev pods do not; the prod apis, in full mode, send nothing that no rule allows."
run lab matrix --port 8080
say "On another port, nothing reaches a prod api:"
run lab probe prod/web-1-0 prod/api-2-2 --port 9090 || true
run lab probe prod/web-1-0 prod/api-2-2 --port 8080

if $down_at_end; then
	step "6. Down"
	run lab down
else
	step "The lab keeps running"
	say "eval \"\$(target/debug/bulkhead-lab --dir $dir env)\"; \$KUBECTL get nrm,segpol"
	say "target/debug/bulkhead-lab --dir $dir matrix --port 8080     # real packets"
	say "target/debug/bulkhead-lab --dir $dir down                    # remove it all"
fi
