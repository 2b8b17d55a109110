#!/usr/bin/env bash
# Request/response between pods with real sockets (root): Bulkhead beside no
# program, a no-op TCX program on the same hooks, an nftables set and a linear
# iptables list, all in one run, interleaved in rounds so that drift cancels.
#
#   bench/rr.sh [--rounds 3] [--seconds 10] [--configs LIST] [--paths same,cross]
#   bench/rr.sh --quick      one short round; fails unless Bulkhead and the
#                            netfilter baselines refuse the port the policy
#                            does not allow (what `make test` runs)
#
# Topology, all in network namespaces of its own (rr-*): nodes rr-n1 and rr-n2
# joined by a veth link; pods rr-a and rr-b on rr-n1, rr-d on rr-n2, routed
# (/32 per pod) through their node. b and d carry the same identity; the
# policy lets a reach them on TCP and UDP 8000 and nothing else. "same" is
# a->b, "cross" is a->d. Client and server are pinned to the same CPU, so the
# VM's cross-CPU wake-ups do not hide the filters' cost.
#
# Configurations (--configs, comma separated):
#   none          no program, no netfilter rules
#   noop          a TCX program that passes everything, on the 6 hooks
#                 Bulkhead uses (ingress and egress of each pod's host veth)
#   bh-1k, bh-10k, bh-100k   Bulkhead, every pod in full mode, N rules and N
#                 address->identity entries, conntrack and the flow log on
#   bhvis-10k     Bulkhead in visibility mode at 10k
#   nft-10k       nftables forward chain: established accepted, then the
#                 source looked up in a set of 10k addresses
#   ipt-10k       iptables forward chain of 10k linear per-address rules,
#                 walked by every packet (no established shortcut first)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=3 SECONDS_PER=10 QUICK=0 PATHS=same,cross
CONFIGS=none,noop,bh-1k,bh-10k,bh-100k,bhvis-10k,nft-10k,ipt-10k
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) ROUNDS=$2; shift 2 ;;
        --seconds) SECONDS_PER=$2; shift 2 ;;
        --configs) CONFIGS=$2; shift 2 ;;
        --paths) PATHS=$2; shift 2 ;;
        --quick) QUICK=1; ROUNDS=1; SECONDS_PER=1; CONFIGS=none,noop,bh-1k,nft-10k,ipt-10k; shift ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "rr.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "rr.sh: needs root (network namespaces, eBPF)" >&2; exit 1; }
for tool in cc clang ip nsenter nft iptables-restore taskset python3 bpftool; do
    command -v "$tool" >/dev/null || { echo "rr.sh: $tool is missing (bash scripts/deps.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/bulkhead-rr.XXXXXX)
LOAD=$(cut -d" " -f1-3 /proc/loadavg)
PIN=/sys/fs/bpf/bulkhead-rr
NS="rr-n1 rr-n2 rr-a rr-b rr-d"
AGENTS=()
SERVERS=()

cleanup() {
    stop_agents
    for p in "${SERVERS[@]}"; do kill "$p" 2>/dev/null || true; done
    for n in $NS; do
        ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$n" 2>/dev/null || true
    done
    rm -rf "$PIN" "$PIN"-n1 "$PIN"-n2
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

build() {
    local multiarch
    multiarch=/usr/include/$(cc -dumpmachine)
    cc -O2 -Wall -Wextra -o "$WORK/rr" "$ROOT/bench/rr/rr.c"
    cc -O2 -Wall -o "$WORK/tcx_attach" "$ROOT/bench/rr/tcx_attach.c" -lbpf
    clang -O2 -g -target bpf -I"$multiarch" -c "$ROOT/bench/rr/noop.bpf.c" -o "$WORK/noop.bpf.o"
    if [ -n "${BULKHEAD_AGENT:-}" ]; then
        AGENT=$BULKHEAD_AGENT
    elif [ "$QUICK" = 1 ]; then
        (cd "$ROOT" && cargo build -q -p bulkhead-agent --bin bulkhead-agent)
        AGENT=${CARGO_TARGET_DIR:-$ROOT/target}/debug/bulkhead-agent
    else
        (cd "$ROOT" && cargo build -q --release -p bulkhead-agent --bin bulkhead-agent)
        AGENT=${CARGO_TARGET_DIR:-$ROOT/target}/release/bulkhead-agent
    fi
}

# nsenter rather than `ip netns exec`, which remounts /sys in a mount
# namespace of its own (bpffs pins made there would not be the host's).
in_ns() { local n=$1; shift; nsenter --net="/run/netns/$n" -- "$@"; }

# pod NAME NODE_NS NODE_INDEX ADDRESS: a pod netns with a veth to its node.
pod() {
    local name=$1 node=$2 k=$3 addr=$4 veth=vethrr$1 gw=10.99.$3.1
    ip netns add "rr-$name"
    ip link add "$veth" netns "$node" type veth peer name eth0 netns "rr-$name"
    in_ns "rr-$name" ip link set lo up
    in_ns "rr-$name" ip addr add "$addr/32" dev eth0
    in_ns "rr-$name" ip link set eth0 up
    in_ns "rr-$name" ip route add "$gw" dev eth0 scope link
    in_ns "rr-$name" ip route add default via "$gw" dev eth0
    in_ns "$node" ip addr add "$gw/32" dev "$veth"
    in_ns "$node" ip link set "$veth" up
    in_ns "$node" ip route add "$addr/32" dev "$veth"
}

topology() {
    ip netns add rr-n1
    ip netns add rr-n2
    ip link add rrlink netns rr-n1 type veth peer name rrlink netns rr-n2
    for k in 1 2; do
        in_ns "rr-n$k" ip link set lo up
        in_ns "rr-n$k" ip addr add "192.168.77.$k/30" dev rrlink
        in_ns "rr-n$k" ip link set rrlink up
        in_ns "rr-n$k" sysctl -qw net.ipv4.ip_forward=1
    done
    in_ns rr-n1 ip route add 10.98.1.0/24 via 192.168.77.2
    in_ns rr-n2 ip route add 10.98.0.0/24 via 192.168.77.1
    pod a rr-n1 0 10.98.0.10
    pod b rr-n1 0 10.98.0.11
    pod d rr-n2 1 10.98.1.11
    for p in b d; do
        in_ns "rr-$p" taskset -c 0 "$WORK/rr" server 8000 & SERVERS+=($!)
        in_ns "rr-$p" taskset -c 0 "$WORK/rr" server 8001 & SERVERS+=($!)
    done
    for dst in 10.98.0.11 10.98.1.11; do
        wait_for 5 in_ns rr-a "$WORK/rr" probe "$dst" 8000 200 ||
            { echo "rr.sh: the topology does not carry a->$dst" >&2; exit 1; }
    done
}

# wait_for SECONDS CMD...: retry CMD every 50 ms until it succeeds.
wait_for() {
    local deadline=$(( $(date +%s%N) + $1 * 1000000000 )); shift
    until "$@" 2>/dev/null; do
        [ "$(date +%s%N)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

stop_agents() {
    for k in 1 2; do ip netns pids "rr-n$k" 2>/dev/null | xargs -r kill -TERM 2>/dev/null || true; done
    for p in "${AGENTS[@]}"; do wait "$p" 2>/dev/null || true; done
    AGENTS=()
    rm -rf "$PIN"-n1 "$PIN"-n2
}

programmed() { python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1])).get("programmed",0)>=1 else 1)' "$1"; }

# bulkhead N MODE: one agent per node, standalone, on the generated rule maps.
# Records the time to enforcing and the agent's RSS.
bulkhead() {
    local n=$1 mode=$2 dir=$WORK/maps-$1-$2 k max
    [ -d "$dir" ] || python3 "$ROOT/bench/rr/gen.py" --rules "$n" --mode "$mode" --out "$dir" \
        --node rr-n1=a,b --node rr-n2=d
    max=$(( n * 2 > 262144 ? n * 2 : 262144 ))
    for k in 1 2; do
        local status=$WORK/status-n$k.json start
        rm -f "$status"
        start=$(date +%s%N)
        # ip netns exec: the agent reads the node's interfaces from a sysfs of
        # that namespace (and mounts a bpffs of its own there).
        ip netns exec "rr-n$k" "$AGENT" --rule-map "$dir/rule-map-rr-n$k.json" --identities "$dir/identities.json" \
            --endpoint-prefix vethrr --pin-name "bulkhead-rr-n$k" --detach-on-exit \
            --policy-max-entries "$max" --status-file "$status" --flow-log "$WORK/flows-n$k.jsonl" \
            --spool-dir "$WORK/spool-n$k" >>"$WORK/agent-n$k.log" 2>&1 &
        AGENTS+=($!)
        wait_for 60 programmed "$status" ||
            { echo "rr.sh: the agent on rr-n$k did not program $n rules; see $WORK/agent-n$k.log" >&2; KEEP=1; exit 1; }
        if [ "$k" = 1 ]; then
            echo -e "$cfg\t$(( ($(date +%s%N) - start) / 1000000 ))\t$(awk '/VmRSS/{print $2}' "/proc/$(ip netns pids rr-n1 | head -1)/status")" >>"$WORK/agent.tsv"
        fi
    done
}

netfilter_nft() {
    local k set
    set=$(python3 -c 'import ipaddress as i; b=i.IPv4Address("10.64.0.1"); print(", ".join(["10.98.0.10"]+[str(b+j) for j in range(9999)]))')
    for k in 1 2; do
        in_ns "rr-n$k" nft -f - <<EOF
table inet rrbench {
    set allowed { type ipv4_addr; elements = { $set } }
    chain forward {
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ip saddr @allowed ip daddr { 10.98.0.11, 10.98.1.11 } tcp dport 8000 accept
        ip saddr @allowed ip daddr { 10.98.0.11, 10.98.1.11 } udp dport 8000 accept
    }
}
EOF
    done
}

netfilter_ipt() {
    local k
    python3 - "$WORK/ipt.rules" <<'EOF'
import ipaddress, sys
b = ipaddress.IPv4Address("10.64.0.1")
lines = ["*filter", ":FORWARD DROP [0:0]"]
lines += [f"-A FORWARD -s {b + j}/32 -j ACCEPT" for j in range(9999)]
lines += ["-A FORWARD -s 10.98.0.10/32 -p tcp --dport 8000 -j ACCEPT",
          "-A FORWARD -s 10.98.0.10/32 -p udp --dport 8000 -j ACCEPT",
          "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT", "COMMIT", ""]
open(sys.argv[1], "w").write("\n".join(lines))
EOF
    for k in 1 2; do in_ns "rr-n$k" iptables-restore <"$WORK/ipt.rules"; done
}

apply() {
    case $1 in
        none) ;;
        noop)
            in_ns rr-n1 "$WORK/tcx_attach" "$WORK/noop.bpf.o" "$PIN" vethrra vethrrb
            in_ns rr-n2 "$WORK/tcx_attach" "$WORK/noop.bpf.o" "$PIN-noop2" vethrrd ;;
        bh-*) bulkhead "$(kilo "${1#bh-}")" full ;;
        bhvis-*) bulkhead "$(kilo "${1#bhvis-}")" visibility ;;
        nft-10k) netfilter_nft ;;
        ipt-10k) netfilter_ipt ;;
        *) echo "rr.sh: unknown configuration $1" >&2; exit 2 ;;
    esac
}

unapply() {
    stop_agents
    rm -rf "$PIN" "$PIN-noop2"
    for k in 1 2; do
        in_ns "rr-n$k" nft delete table inet rrbench 2>/dev/null || true
        in_ns "rr-n$k" iptables -P FORWARD ACCEPT
        in_ns "rr-n$k" iptables -F FORWARD
    done
}

kilo() { local v=$1; v=${v%k}; echo $(( v * 1000 )); }

dst_of() { [ "$1" = same ] && echo 10.98.0.11 || echo 10.98.1.11; }

enforcing() { case $1 in bh-*|nft-*|ipt-*) return 0 ;; *) return 1 ;; esac; }

# check CFG PATH: the allowed port answers; the other is refused where enforced.
check() {
    local dst
    dst=$(dst_of "$2")
    in_ns rr-a "$WORK/rr" probe "$dst" 8000 1000 ||
        { echo "rr.sh: $1 $2: the allowed port 8000 did not answer" >&2; KEEP=1; exit 1; }
    if in_ns rr-a "$WORK/rr" probe "$dst" 8001 300; then
        if enforcing "$1"; then
            echo "rr.sh: $1 $2: port 8001, which the policy does not allow, was reached" >&2
            KEEP=1; exit 1
        fi
        echo -e "$1\t$2\topen" >>"$WORK/refused.tsv"
    else
        echo -e "$1\t$2\trefused" >>"$WORK/refused.tsv"
    fi
}

# bpf_stats CFG: Bulkhead's own run time per program run, in a short pass of
# its own so that the statistics' cost stays out of the measured rounds.
bpf_stats() {
    local before after
    before=$(bpftool prog show --json)
    sysctl -qw kernel.bpf_stats_enabled=1
    in_ns rr-a taskset -c 0 "$WORK/rr" client tcp_rr 10.98.0.11 8000 2 >/dev/null
    sysctl -qw kernel.bpf_stats_enabled=0
    after=$(bpftool prog show --json)
    python3 - "$1" "$before" "$after" >>"$WORK/bpfstats.tsv" <<'EOF'
import json, sys
cfg, before, after = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
old = {p["id"]: p for p in before}
ns = cnt = 0
for p in after:
    if not p.get("name", "").startswith("bh_"):
        continue
    o = old.get(p["id"], {})
    ns += p.get("run_time_ns", 0) - o.get("run_time_ns", 0)
    cnt += p.get("run_cnt", 0) - o.get("run_cnt", 0)
print(f"{cfg}\t{ns / cnt if cnt else 0:.0f}\t{cnt}")
EOF
}

build
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
topology
: >"$WORK/results.tsv"
for round in $(seq 1 "$ROUNDS"); do
    for cfg in ${CONFIGS//,/ }; do
        apply "$cfg"
        for path in ${PATHS//,/ }; do
            check "$cfg" "$path"
            for mode in tcp_rr tcp_crr udp_rr; do
                line=$(in_ns rr-a taskset -c 0 "$WORK/rr" client "$mode" "$(dst_of "$path")" 8000 "$SECONDS_PER")
                echo -e "$round\t$cfg\t$path\t$line" >>"$WORK/results.tsv"
            done
        done
        if [ "$round" = "$ROUNDS" ] && [[ $cfg == bh* ]]; then bpf_stats "$cfg"; fi
        unapply
    done
done
python3 "$ROOT/bench/rr/summary.py" "$WORK" "$LOAD" "$ROUNDS" "$SECONDS_PER"
