#!/usr/bin/env bash
# Checks the agent's .deb: lintian (every override explained in
# packaging/deb/lintian-overrides), then a real install on this machine, the
# unit through `systemd-analyze verify`, removal (the conffile stays), and
# purge (nothing stays). Needs root; fails, never skips, when something is
# missing. Leaves the machine as it found it.
#
#   packaging/test-deb-privileged.sh target/packages/bulkhead-agent_VERSION_ARCH.deb
set -euo pipefail

deb=${1:?usage: test-deb-privileged.sh PACKAGE.deb}
fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i of the package)"
for tool in dpkg dpkg-deb dpkg-query lintian systemd-analyze; do
  command -v "$tool" >/dev/null || fail "$tool is missing (scripts/deps.sh installs it)"
done
[ -f "$deb" ] || fail "$deb does not exist (make package builds it)"
pkg=$(dpkg-deb -f "$deb" Package)
version=$(dpkg-deb -f "$deb" Version)
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'installed\|config-files'; then
  fail "$pkg is already on this machine; this test installs and purges it, so remove it first"
fi

echo "test-deb: lintian $deb"
lintian --pedantic --display-info --fail-on error,warning,info,pedantic "$deb" 2>&1 \
  | grep -v 'running with root privileges' || true
lintian --pedantic --fail-on error,warning,info,pedantic "$deb" >/dev/null 2>&1 \
  || fail "lintian reports tags that no override explains (above)"

# Removal detaches the pins of the package's agent (/sys/fs/bpf/bulkhead, as
# agent.yaml says); an agent's pins already here would be detached by this test.
pins=/sys/fs/bpf/bulkhead
[ ! -e "$pins" ] || fail "$pins exists: an agent is pinned on this machine, and removing the package would detach it"
mapfile -t files < <(dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -n 's|^\./\(.*[^/]\)$|/\1|p')
trap 'dpkg --purge "$pkg" >/dev/null 2>&1 || true; rm -rf "$pins"' EXIT

echo "test-deb: dpkg -i"
dpkg -i "$deb" >/dev/null
[ "$(dpkg-query -W -f='${Status}' "$pkg")" = "install ok installed" ] || fail "$pkg is not installed after dpkg -i"
for f in "${files[@]}"; do [ -e "$f" ] || fail "$f, in the package, is not on disk after dpkg -i"; done
dpkg-query -W -f='${Conffiles}\n' "$pkg" | grep -q '^ /etc/bulkhead/agent.yaml ' \
  || fail "/etc/bulkhead/agent.yaml is not registered as a conffile"
got=$(bulkhead-agent --version)
[ "$got" = "bulkhead-agent $version" ] || fail "bulkhead-agent --version says '$got', want 'bulkhead-agent $version'"
# The installed conffile is one the agent accepts (a bad key would stop it here).
bulkhead-agent --config /etc/bulkhead/agent.yaml --version >/dev/null \
  || fail "bulkhead-agent refuses the installed /etc/bulkhead/agent.yaml"
man -w bulkhead-agent >/dev/null 2>&1 || fail "man bulkhead-agent finds no page"

echo "test-deb: systemd-analyze verify bulkhead-agent.service"
verify=$(systemd-analyze verify /lib/systemd/system/bulkhead-agent.service 2>&1) \
  || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
security=$(systemd-analyze security --offline=true /lib/systemd/system/bulkhead-agent.service 2>/dev/null | tail -1)
echo "test-deb: systemd-analyze security: ${security#→ }"

echo "test-deb: dpkg -r detaches what an agent pinned"
# `--detach` opens the datapath, which pins its maps (and attaches nothing).
bulkhead-agent --config /etc/bulkhead/agent.yaml --detach || fail "bulkhead-agent --detach failed"
[ -d "$pins" ] || fail "bulkhead-agent pinned nothing under $pins"
dpkg -r "$pkg" >/dev/null
[ ! -e "$pins" ] || fail "dpkg -r left the agent's pins in $pins"
dpkg -i "$deb" >/dev/null

echo "test-deb: dpkg -r (a changed conffile stays)"
echo "# changed by test-deb" >>/etc/bulkhead/agent.yaml
dpkg -r "$pkg" >/dev/null
[ "$(dpkg-query -W -f='${Status}' "$pkg")" = "deinstall ok config-files" ] || fail "$pkg is not in config-files state after dpkg -r"
[ ! -e /usr/bin/bulkhead-agent ] || fail "/usr/bin/bulkhead-agent is still there after dpkg -r"
grep -q 'changed by test-deb' /etc/bulkhead/agent.yaml || fail "dpkg -r lost the changed /etc/bulkhead/agent.yaml"

[ ! -e "$pins" ] || fail "dpkg -r created $pins"

echo "test-deb: dpkg --purge (nothing stays)"
dpkg --purge "$pkg" >/dev/null
trap - EXIT
if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'installed\|config-files'; then
  fail "$pkg is still known to dpkg after purge"
fi
for f in "${files[@]}" /etc/bulkhead /var/lib/bulkhead; do
  [ ! -e "$f" ] || fail "$f is still there after dpkg --purge"
done
echo "test-deb: ok ($pkg $version: lintian clean, unit verified, installs, removes and purges cleanly)"
