#!/usr/bin/env bash
# Builds the agent's .deb from a built binary, with dpkg-deb (no debhelper).
#
#   packaging/build-deb.sh [--profile release|debug] [--out DIR]
#
# Takes $CARGO_TARGET_DIR/PROFILE/bulkhead-agent (default target dir: target)
# and writes DIR/bulkhead-agent_VERSION_ARCH.deb (default DIR: target/packages).
# The version is the Cargo workspace's.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=target/packages
while (($#)); do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in dpkg-deb fakeroot help2man strip objdump gzip; do
  command -v "$tool" >/dev/null || { echo "build-deb: $tool is missing (apt-get install it, or run scripts/deps.sh)" >&2; exit 1; }
done

binary=${CARGO_TARGET_DIR:-target}/$profile/bulkhead-agent
[ -x "$binary" ] || { echo "build-deb: $binary is missing: cargo build${profile/debug/} ${profile/release/--release} -p bulkhead-agent" >&2; exit 1; }
version=$(awk -F'"' '/^\[workspace.package\]/ {ws=1} ws && /^version *=/ {print $2; exit}' Cargo.toml)
arch=$(dpkg --print-architecture)
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
doc=$root/usr/share/doc/bulkhead-agent
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/bulkhead" \
  "$root/usr/share/man/man8" "$doc"
install -m 0755 "$binary" "$root/usr/bin/bulkhead-agent"
# Debian ships stripped binaries (debug symbols would go in a -dbgsym package).
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/bulkhead-agent"
install -m 0644 packaging/bulkhead-agent.service "$root/lib/systemd/system/"
install -m 0644 packaging/agent.yaml "$root/etc/bulkhead/agent.yaml"
install -m 0644 packaging/deb/copyright "$doc/copyright"
install -d "$root/usr/share/lintian/overrides"
install -m 0644 packaging/deb/lintian-overrides "$root/usr/share/lintian/overrides/bulkhead-agent"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
echo /etc/bulkhead/agent.yaml >"$root/DEBIAN/conffiles"

# The man page is the agent's own --help, so it cannot drift from the flags.
help2man --no-info --section 8 --source "Bulkhead $version" \
  --name "Bulkhead node agent: enforces segmentation policy with eBPF" \
  --include packaging/bulkhead-agent.8.h2m "$root/usr/bin/bulkhead-agent" \
  | gzip -9n >"$root/usr/share/man/man8/bulkhead-agent.8.gz"

# A native package's changelog, dated by the last commit so that rebuilding
# the same tree gives the same package.
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
printf 'bulkhead-agent (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- Bulkhead maintainers <maintainers@bulkhead.dev>  %s\n' \
  "$version" "$version" "$date" | gzip -9n >"$doc/changelog.gz"

# Shared libraries: those the binary links, with the newest symbol version it uses.
glibc=$(objdump -T "$root/usr/bin/bulkhead-agent" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: bulkhead-agent
Version: $version
Architecture: $arch
Maintainer: Bulkhead maintainers <maintainers@bulkhead.dev>
Installed-Size: $installed_kib
Depends: libc6 (>= $glibc), libgcc-s1, init-system-helpers (>= 1.52)
Section: net
Priority: optional
Homepage: https://github.com/bulkhead-dev/bulkhead
Description: Bulkhead node agent: host-based micro-segmentation with eBPF
 Bulkhead enforces label-based segmentation policy on each host with eBPF
 programs attached to its network interfaces with TC. This package holds the
 agent, a hardened systemd unit (bulkhead-agent.service, neither enabled nor
 started on install) and its settings in /etc/bulkhead/agent.yaml.
 .
 The agent runs standalone, from a rule map and identity files, or against a
 Kubernetes API server. Its programs stay attached while it is stopped, so
 restarts and upgrades keep enforcing; removing the package detaches them.
CONTROL

(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/bulkhead-agent_${version}_${arch}.deb
fakeroot dpkg-deb --build --root-owner-group -Zxz "$root" "$deb" >/dev/null
echo "$deb"
