#!/usr/bin/env bash
# Builds Jaeger v2 from the Go module proxy (tools/jaeger/go.mod pins github.com/jaegertracing/jaeger v1.76.0,
# the v2.13.0 release) into the per-machine tool cache, once; later calls only check it is there.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/jaeger.sh install | path
  install   build the pinned Jaeger v2 into ${VIGIE_TOOL_CACHE:-~/.cache/vigie}/jaeger/<version>/ unless it is
            already there (about 4 minutes on 2 idle cores, up to
            19 on a busy machine, the first time; then instant)
  path      print the path of the cached binary (exit 1 when it is not built yet)
USAGE
}

root=$(cd "$(dirname "$0")/.." && pwd)
module_dir="$root/tools/jaeger"
version=$(awk '$1 == "require" && $2 == "github.com/jaegertracing/jaeger" {print $3}' "$module_dir/go.mod")
[[ -n "$version" ]] || { echo "jaeger.sh: no Jaeger version in $module_dir/go.mod" >&2; exit 1; }
cache=${VIGIE_TOOL_CACHE:-$HOME/.cache/vigie}
binary="$cache/jaeger/$version/jaeger"

install() {
    [[ -x "$binary" ]] && return 0
    mkdir -p "$(dirname "$binary")"
    local partial="$binary.partial.$$"
    trap 'rm -f "$partial"' EXIT
    # Only the one command is built; the module and build caches are shared with the other Go tools (tools/go.sh).
    "$root/tools/go.sh" build "Jaeger $version" 5 "$module_dir" -- \
        build -trimpath -ldflags=-s -o "$partial" github.com/jaegertracing/jaeger/cmd/jaeger
    mv "$partial" "$binary"  # only a complete binary ever has the final name
    trap - EXIT
}

case "${1:-}" in
    install) (($# == 1)) || { usage >&2; exit 2; }; install ;;
    path)
        (($# == 1)) || { usage >&2; exit 2; }
        [[ -x "$binary" ]] || { echo "jaeger.sh: Jaeger $version is not built; run tools/jaeger.sh install" >&2; exit 1; }
        echo "$binary"
        ;;
    -h | --help) usage ;;
    *) echo "jaeger.sh: unknown command '${1:-}'" >&2; usage >&2; exit 2 ;;
esac
