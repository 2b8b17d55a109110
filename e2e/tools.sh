#!/usr/bin/env bash
# Builds (once) and locates the control-plane binaries the lab runs:
# kube-apiserver and etcd from their Go modules, kubectl when the machine has
# none within one minor version of the API server (the supported skew),
# kube-proxy and kube-controller-manager (the lab's Services: DNAT on each node
# and the EndpointSlice controller) from the same Kubernetes module version,
# and helm (for the chart's tests) from its Go module.
#
#   e2e/tools.sh [build]   build what is missing, print KEY=path lines
#   e2e/tools.sh env       same, as `export KEY=path` lines: eval "$(e2e/tools.sh env)"
#   e2e/tools.sh paths     print KEY=path lines, build nothing; exit 1 if something is missing
#
# Binaries live outside the work tree, keyed by version:
#   ${BULKHEAD_CACHE:-$XDG_CACHE_HOME/bulkhead}/k8s-<version>/{kube-apiserver,kubectl,kube-proxy,kube-controller-manager}
#   ${BULKHEAD_CACHE:-$XDG_CACHE_HOME/bulkhead}/etcd-<version>/etcd
#   ${BULKHEAD_CACHE:-$XDG_CACHE_HOME/bulkhead}/helm-<version>/helm
# with the Go build cache beside them (go-build/), so a rebuild is quick.
# KUBECTL=path in the environment chooses kubectl, HELM=path chooses helm.
# If KUBEBUILDER_ASSETS names a directory holding kube-apiserver and etcd (an
# envtest asset directory), those are used and nothing is built.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE=${BULKHEAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bulkhead}
K8S_DIR="$CACHE/k8s-$K8S_VERSION"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"
HELM_DIR="$CACHE/helm-$HELM_VERSION"

log() { echo "tools.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# The build is CPU-bound for many minutes; stay out of the way of interactive work.
nice_cmd() { nice -n "${BULKHEAD_NICE:-10}" "$@"; }

go_env() {
	export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
	export GOCACHE="$CACHE/go-build"
	# The module cache stays the user's own so downloads are shared with other projects.
}

# A throwaway module, outside the repository, that pins k8s.io/kubernetes and
# points every staging module (k8s.io/api, k8s.io/client-go, ...) at its
# published v0.Y.Z tag, exactly as the go.mod of that release lists them.
k8s_module() {
	local mod="$1" kube_gomod staging_version
	staging_version="v0.${K8S_VERSION#v1.}"
	kube_gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -f "$kube_gomod" ]] || die "cannot download the go.mod of k8s.io/kubernetes@$K8S_VERSION"
	mkdir -p "$mod"
	{
		echo "module bulkhead.dev/tools/k8s"
		grep -E '^go [0-9]' "$kube_gomod"
		grep -E '^godebug ' "$kube_gomod" || true
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo "replace ("
		sed -n 's|^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/src/k8s\.io/.*$|\t\1 => \1 '"$staging_version"'|p' "$kube_gomod"
		echo ")"
	} >"$mod/go.mod"
	grep -q 'k8s.io/client-go => k8s.io/client-go' "$mod/go.mod" ||
		die "found no staging replace lines in $kube_gomod"
	cat >"$mod/tools.go" <<-'GO'
		//go:build tools

		package tools

		import (
			_ "k8s.io/kubernetes/cmd/kube-apiserver"
			_ "k8s.io/kubernetes/cmd/kube-controller-manager"
			_ "k8s.io/kubernetes/cmd/kube-proxy"
			_ "k8s.io/kubernetes/cmd/kubectl"
		)
	GO
	(cd "$mod" && go mod tidy)
}

k8s_ldflags() {
	local minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	local f="" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		f+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "-s -w$f"
}

build_k8s() { # build_k8s <cmd> ...
	local work="$WORK/k8s"
	mkdir -p "$work"
	go_env
	k8s_module "$work/mod"
	mkdir -p "$K8S_DIR"
	local cmd start
	for cmd in "$@"; do
		log "building $cmd $K8S_VERSION (several minutes on a cold cache)"
		start=$SECONDS
		(cd "$work/mod" && nice_cmd go build -trimpath -ldflags "$(k8s_ldflags)" \
			-o "$work/$cmd" "k8s.io/kubernetes/cmd/$cmd")
		mv "$work/$cmd" "$K8S_DIR/$cmd"
		log "built $K8S_DIR/$cmd in $((SECONDS - start))s"
	done
}

build_etcd() {
	local work="$WORK/etcd" start
	go_env
	mkdir -p "$work/mod" "$ETCD_DIR"
	# etcd's own main module carries replace lines, so `go install` refuses it;
	# a three-line main in a module of our own does not.
	cat >"$work/mod/main.go" <<-'GO'
		package main

		import (
			"os"

			"go.etcd.io/etcd/server/v3/etcdmain"
		)

		func main() { etcdmain.Main(os.Args) }
	GO
	local server_gomod
	server_gomod=$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	{
		echo "module bulkhead.dev/tools/etcd"
		grep -E '^go [0-9]' "$server_gomod"
		echo "require ("
		local m
		for m in server/v3 api/v3 client/pkg/v3 client/v3 pkg/v3; do
			echo "	go.etcd.io/etcd/$m $ETCD_VERSION"
		done
		echo ")"
	} >"$work/mod/go.mod"
	(cd "$work/mod" && go mod tidy)
	log "building etcd $ETCD_VERSION"
	start=$SECONDS
	(cd "$work/mod" && nice_cmd go build -trimpath -ldflags "-s -w" -o "$work/etcd" .)
	mv "$work/etcd" "$ETCD_DIR/etcd"
	log "built $ETCD_DIR/etcd in $((SECONDS - start))s"
}

# helm's go.mod has no replace lines, so `go install module@version` builds it
# with exactly the dependencies of that release. The ldflags are those of
# helm's Makefile: the version `helm version` reports, and the Kubernetes
# version `helm template` and `helm lint` assume (that of its client-go, not
# the 1.20 compiled in by default, which a chart's kubeVersion would refuse).
build_helm() {
	local work="$WORK/helm" gomod client_go major minor pkg=helm.sh/helm/v3 p start
	go_env
	mkdir -p "$work" "$HELM_DIR"
	gomod=$(go mod download -json "$pkg@$HELM_VERSION" |
		sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
	[[ -f "$gomod" ]] || die "cannot download the go.mod of $pkg@$HELM_VERSION"
	! grep -qE '^replace' "$gomod" || die "$pkg@$HELM_VERSION has replace lines; go install cannot build it"
	client_go=$(sed -n 's|^[[:space:]]*k8s\.io/client-go v0\.\([0-9]*\)\..*|\1|p' "$gomod")
	[[ -n "$client_go" ]] || die "found no k8s.io/client-go in $gomod"
	major=1 minor=$client_go
	local ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION"
	ldflags+=" -X $pkg/internal/version.metadata= -X $pkg/internal/version.gitTreeState=clean"
	for p in lint/rules chartutil; do
		ldflags+=" -X $pkg/pkg/$p.k8sVersionMajor=$major -X $pkg/pkg/$p.k8sVersionMinor=$minor"
	done
	log "building helm $HELM_VERSION (a few minutes on a cold cache)"
	start=$SECONDS
	GOBIN="$work" nice_cmd go install -trimpath -ldflags "$ldflags" "$pkg/cmd/helm@$HELM_VERSION"
	mv "$work/helm" "$HELM_DIR/helm"
	log "built $HELM_DIR/helm in $((SECONDS - start))s"
}

# Sets KUBE_APISERVER, ETCD, KUBECTL, KUBE_PROXY, KUBE_CONTROLLER_MANAGER and
# HELM to what exists; builds the rest if $1 = build.
resolve() {
	local mode="$1" want_k8s=() assets="" cmd
	KUBE_APISERVER="" ETCD="" KUBE_PROXY="" KUBE_CONTROLLER_MANAGER=""
	if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
		if [[ -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
			assets="$KUBEBUILDER_ASSETS"
		else
			log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver or etcd; using the cache"
		fi
	fi
	# kubectl: $KUBECTL, the assets' own, the one on PATH if its version fits, the cache's.
	KUBECTL="${KUBECTL:-}"
	[[ -n "$KUBECTL" || -z "$assets" || ! -x "$assets/kubectl" ]] || KUBECTL="$assets/kubectl"
	[[ -n "$KUBECTL" ]] || KUBECTL=$(usable_kubectl)
	[[ -n "$KUBECTL" || -x "$K8S_DIR/kubectl" ]] || want_k8s+=(kubectl)
	[[ -n "$assets" || -x "$K8S_DIR/kube-apiserver" ]] || want_k8s+=(kube-apiserver)
	# Envtest assets carry neither; they always come from the cache.
	for cmd in kube-proxy kube-controller-manager; do
		[[ -x "$K8S_DIR/$cmd" ]] || want_k8s+=("$cmd")
	done
	if [[ "$mode" == build ]]; then
		if ((${#want_k8s[@]} > 0)) || [[ -z "$assets" && ! -x "$ETCD_DIR/etcd" ]] ||
			[[ -z "${HELM:-}" && ! -x "$HELM_DIR/helm" ]]; then
			command -v go >/dev/null || die "Go (>= 1.26) is needed to build the lab's binaries"
		fi
		((${#want_k8s[@]} == 0)) || build_k8s "${want_k8s[@]}"
		[[ -n "$assets" || -x "$ETCD_DIR/etcd" ]] || build_etcd
		[[ -n "${HELM:-}" || -x "$HELM_DIR/helm" ]] || build_helm
	fi
	if [[ -n "$assets" ]]; then
		KUBE_APISERVER="$assets/kube-apiserver"
		ETCD="$assets/etcd"
	else
		[[ ! -x "$K8S_DIR/kube-apiserver" ]] || KUBE_APISERVER="$K8S_DIR/kube-apiserver"
		[[ ! -x "$ETCD_DIR/etcd" ]] || ETCD="$ETCD_DIR/etcd"
	fi
	[[ -n "$KUBECTL" || ! -x "$K8S_DIR/kubectl" ]] || KUBECTL="$K8S_DIR/kubectl"
	[[ ! -x "$K8S_DIR/kube-proxy" ]] || KUBE_PROXY="$K8S_DIR/kube-proxy"
	[[ ! -x "$K8S_DIR/kube-controller-manager" ]] || KUBE_CONTROLLER_MANAGER="$K8S_DIR/kube-controller-manager"
	HELM="${HELM:-}"
	[[ -n "$HELM" || ! -x "$HELM_DIR/helm" ]] || HELM="$HELM_DIR/helm"
}

# The kubectl on PATH if it is within the supported skew of the API server
# (one minor version either way); otherwise nothing, and the cache's own
# kubectl of the server's version is used (built if missing).
usable_kubectl() {
	local path minor want=${K8S_VERSION#v1.}
	want=${want%%.*}
	path=$(command -v kubectl) || return 0
	minor=$("$path" version --client -o json 2>/dev/null |
		sed -n 's/^[[:space:]]*"minor": "\([0-9]*\).*/\1/p' | head -n1)
	if [[ -n "$minor" ]] && ((minor >= want - 1 && minor <= want + 1)); then
		echo "$path"
	elif [[ ! -x "$K8S_DIR/kubectl" ]]; then
		log "not using $path (client minor version '${minor:-unknown}', server 1.$want: outside the supported skew)"
	fi
}

with_lock() {
	mkdir -p "$CACHE"
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-tools.XXXXXX")
	trap 'rm -rf "$WORK"' EXIT
	if command -v flock >/dev/null; then
		exec 9>"$CACHE/.lock"
		flock 9
	fi
}

main() {
	local cmd="${1:-build}" prefix=""
	case "$cmd" in
	build) with_lock; resolve build ;;
	env) with_lock; resolve build; prefix="export " ;;
	paths) resolve none ;;
	-h | --help | help) sed -n "2,18p" "$0"; exit 0 ;;
	*) die "unknown command '$cmd' (build, env, paths)" ;;
	esac
	local missing=()
	[[ -n "$KUBE_APISERVER" ]] || missing+=(kube-apiserver)
	[[ -n "$ETCD" ]] || missing+=(etcd)
	[[ -n "$KUBECTL" ]] || missing+=(kubectl)
	((${#missing[@]} == 0)) || die "missing ${missing[*]}: run 'make tools' (or e2e/tools.sh build)"
	echo "${prefix}KUBE_APISERVER=$KUBE_APISERVER"
	echo "${prefix}ETCD=$ETCD"
	echo "${prefix}KUBECTL=$KUBECTL"
	# Only the Service tests need these two (built by `build`); they say so when missing.
	[[ -z "$KUBE_PROXY" ]] || echo "${prefix}KUBE_PROXY=$KUBE_PROXY"
	[[ -z "$KUBE_CONTROLLER_MANAGER" ]] || echo "${prefix}KUBE_CONTROLLER_MANAGER=$KUBE_CONTROLLER_MANAGER"
	# Only the chart's tests need helm; they say so when it is missing.
	[[ -z "$HELM" ]] || echo "${prefix}HELM=$HELM"
}

main "$@"
