#!/usr/bin/env bash
# Builds the OCI images of the operator, the agent and the collector without
# a container daemon (umoci builds the layout, skopeo writes the archive).
#
#   scripts/images.sh [--profile release|debug] [--out DIR]
#
# Each image starts FROM scratch and holds the binary (stripped), exactly the
# shared libraries `ldd` says it loads and the dynamic loader, and for the
# agent the one program it runs, mount(8) (for bpffs when the host has none
# mounted), with its libraries. The operator and the collector run as the
# non-root user 65532 (in /etc/passwd), as the chart's securityContext asks;
# the agent runs as root, because loading BPF programs and attaching them with
# TC takes CAP_BPF and CAP_NET_ADMIN (the chart grants it those, or runs it
# privileged). No shell, no CA bundle: the operator and the agent trust the
# cluster's CA from their ServiceAccount, the collector serves plain HTTP.
#
# Writes DIR/bulkhead-COMPONENT_VERSION.oci.tar (default DIR: target/images),
# named as the chart's default image (charts/bulkhead/values.yaml
# COMPONENT.image.repository) with the chart's appVersion as the tag.
# Binaries come from $CARGO_TARGET_DIR/PROFILE (default target dir: target).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/images-lib.sh

profile=release
out=target/images
while (($#)); do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "images: unknown argument $1" >&2; exit 2 ;;
  esac
done
need_tools umoci skopeo ldd strip
version=$(chart_app_version)
arch=$(oci_arch)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Copies an ELF file and everything ldd says it loads into ROOT, each at the
# path the loader will look for it.
copy_elf() {
  local root=$1 src=$2 dest=$3
  install -D -m 0755 "$src" "$root$dest"
  strip --strip-unneeded "$root$dest"
  local lib
  while read -r lib; do
    [ -e "$root$lib" ] && continue
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done < <(elf_libraries "$src")
}

for component in "${COMPONENTS[@]}"; do
  binary=${CARGO_TARGET_DIR:-target}/$profile/bulkhead-$component
  [ -x "$binary" ] || { echo "images: $binary is missing (cargo build ${profile/debug/} ${profile/release/--release} --bins)" >&2; exit 1; }
  ref=$(chart_image "$component"):$version
  root=$work/$component/rootfs
  mkdir -p "$root"
  copy_elf "$root" "$binary" "/usr/bin/bulkhead-$component"
  if [ "$component" = agent ]; then
    user=0:0
    copy_elf "$root" "$(command -v mount)" /usr/bin/mount
  else
    user=65532:65532
    install -d "$root/etc"
    echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$root/etc/passwd"
    echo 'nonroot:x:65532:' >"$root/etc/group"
    chmod 0644 "$root/etc/passwd" "$root/etc/group"
  fi

  layout=$work/$component/layout
  umoci init --layout "$layout"
  umoci new --image "$layout:$version"
  umoci unpack --image "$layout:$version" "$work/$component/bundle" >/dev/null
  cp -a "$root/." "$work/$component/bundle/rootfs/"
  umoci repack --image "$layout:$version" "$work/$component/bundle"
  umoci config --image "$layout:$version" --os linux --architecture "$arch" \
    --config.entrypoint "/usr/bin/bulkhead-$component" --config.user "$user" \
    --config.env PATH=/usr/bin --config.workingdir / \
    --config.label "org.opencontainers.image.title=bulkhead-$component" \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.source=https://github.com/bulkhead-dev/bulkhead" \
    --config.label "org.opencontainers.image.licenses=Apache-2.0"
  umoci gc --layout "$layout"
  archive=$out/bulkhead-${component}_$version.oci.tar
  rm -f "$archive"
  skopeo copy --quiet "oci:$layout:$version" "oci-archive:$archive:$ref"
  echo "images: $archive ($ref, user $user, $(du -k "$archive" | cut -f1) KiB)"
done
