#!/usr/bin/env bash
# Checks the archives scripts/images.sh wrote: `skopeo inspect` reads each one;
# its name is the chart's default image with the chart's appVersion as the
# tag; then the image is unpacked, and chroot runs its binary's --version as
# the image's user, with the image's own loader and libraries. Every file in
# the image must be the binary, a library one of its programs loads (as the
# image's loader resolves them, inside the chroot), or /etc/passwd and
# /etc/group: nothing else. Needs root (chroot, umoci unpack); fails, never
# skips, when a tool is missing.
#
#   scripts/check-images.sh [DIR]      (default DIR: target/images)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/images-lib.sh

dir=${1:-target/images}
fail() { echo "check-images: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (chroot into the unpacked images)"
need_tools skopeo umoci jq chroot tar
version=$(chart_app_version)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for component in "${COMPONENTS[@]}"; do
  archive=$dir/bulkhead-${component}_$version.oci.tar
  want_ref=$(chart_image "$component"):$version
  [ -f "$archive" ] || fail "$archive is missing (make images writes it)"
  echo "check-images: $archive" >&2

  skopeo inspect "oci-archive:$archive" >"$work/inspect.json" || fail "skopeo inspect rejects $archive"
  skopeo inspect --config "oci-archive:$archive" >"$work/config.json" || fail "skopeo inspect --config rejects $archive"
  [ "$(jq -r .Os "$work/inspect.json")/$(jq -r .Architecture "$work/inspect.json")" = "linux/$(oci_arch)" ] \
    || fail "$archive is for $(jq -r '.Os + "/" + .Architecture' "$work/inspect.json"), not linux/$(oci_arch)"
  ref=$(tar -xOf "$archive" index.json | jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]')
  [ "$ref" = "$want_ref" ] || fail "$archive is named '$ref', want the chart's default '$want_ref'"
  entrypoint=$(jq -r '.config.Entrypoint | join(" ")' "$work/config.json")
  [ "$entrypoint" = "/usr/bin/bulkhead-$component" ] || fail "$archive's entrypoint is '$entrypoint'"
  user=$(jq -r '.config.User' "$work/config.json")
  case $component in
    agent) [ "$user" = 0:0 ] || fail "the agent image runs as '$user'; the agent needs root (CAP_BPF, CAP_NET_ADMIN)" ;;
    *) [ "$user" = 65532:65532 ] || fail "the $component image runs as '$user', not the non-root 65532:65532" ;;
  esac

  rm -rf "$work/layout" "$work/bundle"
  skopeo copy --quiet "oci-archive:$archive" "oci:$work/layout:check"
  umoci unpack --image "$work/layout:check" "$work/bundle" >/dev/null
  rootfs=$work/bundle/rootfs

  got=$(env -i PATH=/usr/bin "$(command -v chroot)" --userspec="$user" "$rootfs" "/usr/bin/bulkhead-$component" --version 2>&1) \
    || fail "chroot $rootfs /usr/bin/bulkhead-$component --version failed: $got"
  [ "$got" = "bulkhead-$component $version" ] || fail "--version in the image says '$got', want 'bulkhead-$component $version'"

  # What the image's loader loads for each of its programs, resolved inside it.
  loader=$(cd "$rootfs" && find lib64 lib -maxdepth 1 -name "ld-linux-*.so.*" 2>/dev/null | head -n 1 || true)
  [ -n "$loader" ] || fail "$archive has no dynamic loader"
  : >"$work/needed"
  echo "/$loader" >>"$work/needed"
  for program in "$rootfs"/usr/bin/*; do
    program=/usr/bin/${program##*/}
    echo "$program" >>"$work/needed"
    list=$(chroot "$rootfs" "/$loader" --list "$program" 2>&1) || fail "$program in $archive: $list"
    ! grep -q 'not found' <<<"$list" || fail "$program in $archive lacks libraries: $(grep 'not found' <<<"$list")"
    awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$list" >>"$work/needed"
  done
  [ "$component" = agent ] || printf '/etc/passwd\n/etc/group\n' >>"$work/needed"
  if [ "$component" = agent ]; then
    chroot "$rootfs" /usr/bin/mount --version >/dev/null || fail "mount(8) in the agent image does not run"
  fi
  extra=$(cd "$rootfs" && find . \( -type f -o -type l \) -printf '/%P\n' | sort | comm -23 - <(sort -u "$work/needed"))
  [ -z "$extra" ] || fail "$archive holds files none of its programs needs: $extra"
  missing=$(sort -u "$work/needed" | while read -r f; do [ -e "$rootfs$f" ] || echo "$f"; done)
  [ -z "$missing" ] || fail "$archive lacks $missing"
  echo "check-images: ok $want_ref: user $user, $(find "$rootfs" -type f | wc -l) files, $(du -sk "$rootfs" | cut -f1) KiB unpacked"
done
