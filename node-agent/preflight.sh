#!/bin/sh
# Fails loudly when this machine cannot run the privileged datapath tests.
set -eu
fail() { echo "test-datapath: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (eBPF programs, bpffs, network namespaces)"
ns="bh-preflight-$$"
ip netns add "$ns" 2>/dev/null || fail "cannot create a network namespace (ip netns add)"
ip netns del "$ns"
if ! grep -q " /sys/fs/bpf bpf " /proc/self/mounts; then
	mount -t bpf bpf /sys/fs/bpf || fail "cannot mount bpffs at /sys/fs/bpf"
fi
[ -e /proc/sys/kernel/bpf_stats_enabled ] || fail "kernel has no eBPF syscall support"
command -v python3 >/dev/null || fail "python3 missing (run make datapath-deps)"
echo "test-datapath: preflight ok (kernel $(uname -r))"
