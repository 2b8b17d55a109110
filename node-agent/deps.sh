#!/bin/sh
# Installs what building and testing the datapath needs on Debian/Ubuntu:
# clang/llvm for the BPF objects, libbpf headers, bpftool for figures,
# iproute2 for the network-namespace tests, python3 for the test traffic.
# Skips apt entirely when everything is already there.
set -eu
need=""
command -v clang >/dev/null 2>&1 || need="$need clang"
command -v llvm-objdump >/dev/null 2>&1 || need="$need llvm"
[ -f /usr/include/bpf/bpf_helpers.h ] || need="$need libbpf-dev"
command -v bpftool >/dev/null 2>&1 || need="$need bpftool"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v python3 >/dev/null 2>&1 || need="$need python3"
[ -f /usr/include/linux/bpf.h ] || need="$need linux-libc-dev"
if [ -z "$need" ]; then
	echo "datapath deps: all present"
	exit 0
fi
echo "datapath deps: installing$need"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
# shellcheck disable=SC2086
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $need
