#!/usr/bin/env bash
# Installs the system packages Bulkhead builds and tests with, on Debian or
# Ubuntu, only when something is missing. Safe to run again.
set -euo pipefail

packages=(clang llvm libbpf-dev bpftool iproute2 python3 python3-pyflakes jq clickhouse-server clickhouse-client prometheus chromium)
# The agent's .deb and the OCI images (make package, make images, and their
# checks in make test): packaging/, scripts/images.sh.
packages+=(fakeroot help2man lintian systemd umoci skopeo)
# The collector's syslog delivery is tested against a real rsyslog (UDP, TCP
# and, with the GnuTLS driver, TLS): collector/tests/syslog_rsyslog.rs.
packages+=(rsyslog rsyslog-gnutls)
# bench/rr.sh (its --quick run is part of make test): the netfilter baselines.
packages+=(nftables iptables util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "deps: cargo (rustup) is required" >&2; exit 1; }
# The lab builds kube-apiserver and etcd from Go modules (e2e/tools.sh);
# Go 1.22 or later fetches the exact toolchain they ask for by itself.
if ! command -v go >/dev/null; then
  echo "deps: go is required to build kube-apiserver and etcd (install Go 1.22+ from go.dev or your image)" >&2
  exit 1
fi
