#!/usr/bin/env bash
# Proves the unit's CapabilityBoundingSet: the agent, run as root with only
# those capabilities (setpriv --bounding-set, as systemd applies it), programs
# a rule map on an interface; with any one of them taken away it cannot. Runs
# in a throwaway network namespace with its own bpffs mount (as systemd mounts
# one at boot). Needs root; fails, never skips.
#
#   packaging/check-caps-privileged.sh AGENT_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."

agent=$(readlink -f "${1:?usage: check-caps-privileged.sh AGENT_BINARY}")
fail() { echo "check-caps: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (network namespace, bpffs, BPF)"
for tool in ip setpriv mount; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done
[ -x "$agent" ] || fail "$agent is not an executable"
caps=$(sed -n 's/^CapabilityBoundingSet=//p' packaging/bulkhead-agent.service)
[ -n "$caps" ] || fail "packaging/bulkhead-agent.service sets no CapabilityBoundingSet"

ns=bhcaps$$
work=$(mktemp -d)
cleanup() { ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cp node-agent/tests/fixtures/rule-map.yaml node-agent/tests/fixtures/identities.yaml "$work/"
ip netns add "$ns"
ip -n "$ns" link add bhcaps0 type veth peer name bhcaps1
ip -n "$ns" link set bhcaps0 up
ip -n "$ns" link set bhcaps1 up

# Runs the agent with the capabilities in $1 (e.g. "CAP_BPF CAP_NET_ADMIN");
# prints "programmed" once it wrote a status with generation 1 programmed,
# or "refused: <its error>" when it exited first.
run_with() {
  local set=-all cap status=$work/status.json log=$work/log
  for cap in $1; do set+=",+$(tr '[:upper:]' '[:lower:]' <<<"${cap#CAP_}")"; done
  rm -f "$status"
  # The namespace gets its own mount namespace from `ip netns exec`, so this
  # bpffs (and everything pinned in it) goes away with the agent.
  ip netns exec "$ns" sh -c 'mount -t bpf bpf /sys/fs/bpf && exec "$@"' _ \
    setpriv --bounding-set="$set" --inh-caps=-all -- "$agent" \
    --rule-map "$work/rule-map.yaml" --identities "$work/identities.yaml" \
    --host-interface bhcaps0 --endpoint-prefix bhcapsnone --status-file "$status" \
    --spool-dir "$work/spool" >"$log" 2>&1 &
  local pid=$! i
  for ((i = 0; i < 300; i++)); do
    if grep -q '"programmed": 1' "$status" 2>/dev/null; then
      kill "$pid"; wait "$pid" 2>/dev/null || true
      echo programmed; return
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null || true
      echo "refused: $( (grep -m1 -iE 'denied|not permitted' "$log" || grep -m1 -i error "$log") | sed 's/^ *//' | head -c 160)"; return
    fi
    sleep 0.1
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
  fail "the agent with $1 neither programmed nor exited in 30 s: $(tail -3 "$log")"
}

got=$(run_with "$caps")
[ "$got" = programmed ] || fail "with the unit's set ($caps) the agent did not program: $got ($(cat "$work/log"))"
echo "check-caps: $caps: programmed"
for drop in $caps; do
  rest=$(tr ' ' '\n' <<<"$caps" | grep -vx "$drop" | tr '\n' ' ')
  got=$(run_with "$rest")
  [ "$got" != programmed ] || fail "$drop is not needed: the agent programmed without it (with: ${rest:-nothing})"
  echo "check-caps: without $drop: $got"
done
echo "check-caps: ok: $caps is enough, and each is needed"
