#!/usr/bin/env bash
# Builds the pinned Kubernetes release (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy
# and kubectl) from the Go module proxy into the per-machine tool cache, once; later calls only check it is there.
# No release download and no container image: tools/kubernetes/go.mod requires k8s.io/kubernetes and replaces each
# of its staging modules with the published one of the same release.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/kubernetes.sh install | path | print-replaces
  install         build the six binaries into ${VIGIE_TOOL_CACHE:-~/.cache/vigie}/kubernetes/<version>/ unless
                  they are there (6.5 minutes measured on 2 idle cores after Jaeger's build, up to 30 on a busy
                  machine; ~7 GB of Go caches; then instant)
  path            print the directory of the cached binaries (exit 1 when they are not built yet)
  print-replaces  print the replace block go.mod needs, from k8s.io/kubernetes's own go.mod (after a version bump)
USAGE
}

root=$(cd "$(dirname "$0")/.." && pwd)
module_dir="$root/tools/kubernetes"
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$module_dir/go.mod")
if [[ ! "$version" =~ ^v1\.([0-9]+)\.[0-9]+$ ]]; then
    echo "kubernetes.sh: no k8s.io/kubernetes version in $module_dir/go.mod" >&2
    exit 1
fi
minor=${BASH_REMATCH[1]}
cache=${VIGIE_TOOL_CACHE:-$HOME/.cache/vigie}
dest="$cache/kubernetes/$version"
commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

built() {
    local name
    for name in "${commands[@]}"; do
        [[ -x "$dest/$name" ]] || return 1
    done
}

install() {
    built && return 0
    mkdir -p "$cache/kubernetes"
    local partial packages=() name
    partial=$(mktemp -d "$cache/kubernetes/.build-$version.XXXXXX")
    trap 'rm -rf "$partial"' EXIT
    for name in "${commands[@]}"; do
        packages+=("k8s.io/kubernetes/cmd/$name")
    done
    # What `kubectl version` and the API server's /version report; the tree state is that of the released module.
    local base=k8s.io/component-base/version
    local ldflags="-s -w -X $base.gitVersion=$version -X $base.gitMajor=1 -X $base.gitMinor=$minor"
    ldflags+=" -X $base.gitTreeState=clean"
    CGO_ENABLED=0 "$root/tools/go.sh" build "Kubernetes $version (6 binaries)" 7 "$module_dir" -- \
        build -trimpath -ldflags="$ldflags" -o "$partial/" "${packages[@]}"
    chmod 0755 "$partial"
    rm -rf "$dest"
    mv "$partial" "$dest"  # only a complete set ever has the final name
    trap - EXIT
}

print_replaces() {
    local go mod
    go=$("$root/tools/go.sh" path)
    mod=$(cd "$module_dir" && GOFLAGS=-mod=mod GOMODCACHE="$cache/go/mod" "$go" mod download -json \
        "k8s.io/kubernetes@$version" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [[ -f "$mod" ]] || { echo "kubernetes.sh: could not download k8s.io/kubernetes@$version's go.mod" >&2; exit 1; }
    echo "replace ("
    awk -v v="v0.$minor.${version##*.}" '$1 ~ /^k8s.io\// && $2 == "=>" && $3 ~ /^\.\/staging\// {
        printf "\t%s => %s %s\n", $1, $1, v }' "$mod"
    echo ")"
}

case "${1:-}" in
    install) (($# == 1)) || { usage >&2; exit 2; }; install ;;
    path)
        (($# == 1)) || { usage >&2; exit 2; }
        if ! built; then
            echo "kubernetes.sh: Kubernetes $version is not built; run tools/kubernetes.sh install" >&2
            exit 1
        fi
        echo "$dest"
        ;;
    print-replaces) (($# == 1)) || { usage >&2; exit 2; }; print_replaces ;;
    -h | --help) usage ;;
    *) echo "kubernetes.sh: unknown command '${1:-}'" >&2; usage >&2; exit 2 ;;
esac
