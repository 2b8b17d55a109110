# Shared by scripts/images.sh and scripts/check-images.sh (sourced, from the
# repository root): what the images are called, and what goes in them.

COMPONENTS=(operator agent collector)

need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "images: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
  done
}

# The chart's appVersion, the images' tag.
chart_app_version() {
  local v
  v=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' charts/bulkhead/Chart.yaml)
  [ -n "$v" ] || { echo "images: no appVersion in charts/bulkhead/Chart.yaml" >&2; exit 1; }
  echo "$v"
}

# COMPONENT.image.repository in the chart's values.yaml.
chart_image() {
  local repo
  repo=$(awk -v want="$1" '
    /^[^[:space:]#][^:]*:/ { section = $1; sub(/:$/, "", section); image = 0 }
    section == want && /^  image:/ { image = 1; next }
    section == want && image && /^    repository:/ { print $2; exit }
  ' charts/bulkhead/values.yaml)
  [ -n "$repo" ] || { echo "images: no $1.image.repository in charts/bulkhead/values.yaml" >&2; exit 1; }
  echo "$repo"
}

oci_arch() {
  case $(uname -m) in
    x86_64) echo amd64 ;;
    aarch64) echo arm64 ;;
    *) uname -m ;;
  esac
}

# The absolute paths of the shared libraries and the loader an ELF file
# loads, one a line (ldd's "name => path" lines and the loader's own line).
elf_libraries() {
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}
