#!/usr/bin/env bash
# The agent killed and restarted under live traffic (root): issue #14 item 3.
#
#   bench/restart.sh [--flows 1000] [--kills 50] [--rules 10000]
#   bench/restart.sh --quick      100 flows, 5 kills, 1,000 rules (make test)
#
# Topology (network namespaces rs-*): node rs-n1 with pods rs-a (10.98.0.10)
# and rs-b (10.98.0.11), routed through it; both in full mode. The rule map
# (bench/rr/gen.py) lets a reach b on TCP 8000 only, plus filler rules and
# addresses so that programming takes a while. One agent, standalone, pins
# on a bpffs of the harness's own (as a DaemonSet's hostPath keeps them).
#
# bench/restart/flows.py holds FLOWS established TCP flows from a to b:8000
# and checks each every 0.2 s, and opens a new flow every 20 ms, alternately
# to 8000 (must connect within 0.9 s, before the first SYN retransmission)
# and to 8001 (must not connect; b listens there too). Meanwhile the agent
# is SIGKILLed KILLS times, each after a random delay between 0 and 1.5x the
# time it takes to program from start (so some kills land before or during
# programming), and started again at once.
#
# Prints the counts; exits 1 unless established flows dropped, new allowed
# flows refused and denied flows let through are all 0. TCP retransmissions
# in both pods are printed too (a dropped packet of a held flow shows there
# even when TCP recovers it).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FLOWS=1000 KILLS=50 RULES=10000
while [ $# -gt 0 ]; do
    case $1 in
        --flows) FLOWS=$2; shift 2 ;;
        --kills) KILLS=$2; shift 2 ;;
        --rules) RULES=$2; shift 2 ;;
        --quick) FLOWS=100; KILLS=5; RULES=1000; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "restart.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "restart.sh: needs root (network namespaces, eBPF)" >&2; exit 1; }
for tool in ip nsenter python3 mount; do
    command -v "$tool" >/dev/null || { echo "restart.sh: $tool is missing (bash scripts/deps.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/bulkhead-restart.XXXXXX)
BPFFS=/run/bulkhead-restart-bpffs
NS="rs-n1 rs-a rs-b"
AGENT_PID=

cleanup() {
    [ -z "$AGENT_PID" ] || kill -KILL "$AGENT_PID" 2>/dev/null || true
    for n in $NS; do
        ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$n" 2>/dev/null || true
    done
    if mountpoint -q "$BPFFS"; then
        rm -rf "${BPFFS:?}"/* 2>/dev/null || true
        umount "$BPFFS" || true
    fi
    rmdir "$BPFFS" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${BULKHEAD_AGENT:-}" ]; then
    AGENT=$BULKHEAD_AGENT
else
    (cd "$ROOT" && cargo build -q -p bulkhead-agent --bin bulkhead-agent)
    AGENT=${CARGO_TARGET_DIR:-$ROOT/target}/debug/bulkhead-agent
fi

in_ns() { local n=$1; shift; nsenter --net="/run/netns/$n" -- "$@"; }

# wait_for SECONDS CMD...: retry CMD every 20 ms until it succeeds.
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    until "$@" 2>/dev/null; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}

pod() {
    local name=$1 addr=$2 veth=vethrs$1 gw=10.99.0.1
    ip netns add "rs-$name"
    ip link add "$veth" netns rs-n1 type veth peer name eth0 netns "rs-$name"
    in_ns "rs-$name" ip link set lo up
    in_ns "rs-$name" ip addr add "$addr/32" dev eth0
    in_ns "rs-$name" ip link set eth0 up
    in_ns "rs-$name" ip route add "$gw" dev eth0 scope link
    in_ns "rs-$name" ip route add default via "$gw" dev eth0
    in_ns rs-n1 ip addr add "$gw/32" dev "$veth"
    in_ns rs-n1 ip link set "$veth" up
    in_ns rs-n1 ip route add "$addr/32" dev "$veth"
}

programmed() { python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("programmed",0)>=1 else 1)' "$1"; }

# start_agent: the agent in the node's namespace (ip netns exec, so it reads
# that namespace's sysfs), on the harness's bpffs, with a fresh status file.
start_agent() {
    rm -f "$WORK/status.json"
    ip netns exec rs-n1 "$AGENT" --rule-map "$WORK/maps/rule-map-rs-n1.json" \
        --identities "$WORK/maps/identities.json" --endpoint-prefix vethrs \
        --bpffs "$BPFFS" --pin-name bulkhead --status-file "$WORK/status.json" \
        --spool-dir "$WORK/spool" >>"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
}

ip netns add rs-n1
in_ns rs-n1 ip link set lo up
in_ns rs-n1 sysctl -qw net.ipv4.ip_forward=1
pod a 10.98.0.10
pod b 10.98.0.11
mkdir -p "$BPFFS"
mountpoint -q "$BPFFS" || mount -t bpf bpf "$BPFFS"
python3 "$ROOT/bench/rr/gen.py" --rules "$RULES" --mode full --out "$WORK/maps" --node rs-n1=a,b

start=$(date +%s%N)
start_agent
wait_for 120 programmed "$WORK/status.json" ||
    { echo "restart.sh: the agent did not program; see $WORK/agent.log" >&2; KEEP=1; exit 1; }
PROGRAM_MS=$(( ($(date +%s%N) - start) / 1000000 ))

in_ns rs-b python3 "$ROOT/bench/restart/flows.py" server 8000 8001 &
wait_for 10 in_ns rs-a python3 -c 'import socket; socket.create_connection(("10.98.0.11", 8000), timeout=0.5)' ||
    { echo "restart.sh: a cannot reach b:8000 with the agent programmed" >&2; KEEP=1; exit 1; }
retrans_b0=$(in_ns rs-b awk '/^Tcp:/{n++; if(n==1){for(i=1;i<=NF;i++) if($i=="RetransSegs") c=i} else print $c}' /proc/net/snmp)
in_ns rs-a python3 "$ROOT/bench/restart/flows.py" client --server 10.98.0.11 --flows "$FLOWS" \
    --allowed 8000 --denied 8001 --ready "$WORK/ready" --stop "$WORK/stop" --out "$WORK/result.json" &
CLIENT=$!
wait_for 60 test -e "$WORK/ready" ||
    { echo "restart.sh: the client could not open $FLOWS flows" >&2; KEEP=1; exit 1; }

early=0
t0=$(date +%s%N)
for i in $(seq 1 "$KILLS"); do
    delay=$(( RANDOM * 32768 + RANDOM ))
    delay=$(( delay % (PROGRAM_MS * 3 / 2 + 1) ))
    sleep "$(awk -v d="$delay" 'BEGIN{printf "%.3f", d/1000}')"
    [ -e "$WORK/status.json" ] || early=$((early + 1))
    kill -KILL "$AGENT_PID"
    wait "$AGENT_PID" 2>/dev/null || true
    start_agent
done
wait_for 120 programmed "$WORK/status.json" ||
    { echo "restart.sh: the last agent did not program; see $WORK/agent.log" >&2; KEEP=1; exit 1; }
sleep 1 # one more second of traffic with the agent settled
touch "$WORK/stop"
wait "$CLIENT"
SECONDS_RUN=$(( ($(date +%s%N) - t0) / 1000000000 ))
retrans_b1=$(in_ns rs-b awk '/^Tcp:/{n++; if(n==1){for(i=1;i<=NF;i++) if($i=="RetransSegs") c=i} else print $c}' /proc/net/snmp)

python3 - "$WORK/result.json" "$KILLS" "$early" "$PROGRAM_MS" "$RULES" "$SECONDS_RUN" "$((retrans_b1 - retrans_b0))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
kills, early, program_ms, rules, secs, retrans_b = sys.argv[2:]
rows = [
    ("rules in the map", rules),
    ("time to program from start (ms)", program_ms),
    ("SIGKILLs", kills),
    ("  of them before the agent had programmed", early),
    ("seconds under test", secs),
    ("established flows held", r["flows"]),
    ("established flows dropped", r["established_dropped"]),
    ("check rounds over the held flows", r["rounds"]),
    ("new allowed flows connected", r["allowed_ok"]),
    ("new allowed flows refused", r["allowed_refused"]),
    ("new denied flows refused", r["denied_refused"]),
    ("new denied flows let through", r["denied_let_through"]),
    ("TCP retransmissions, client pod", r["client_retransmissions"]),
    ("TCP retransmissions, server pod", retrans_b),
]
for k, v in rows:
    print(f"{k:<45} {v}")
bad = r["established_dropped"] + r["allowed_refused"] + r["denied_let_through"]
if bad or r["allowed_ok"] == 0 or r["denied_refused"] == 0:
    print("restart.sh: FAILED: flows were dropped, refused or let through (or none were tried)", file=sys.stderr)
    sys.exit(1)
print("restart.sh: ok")
PY
