#!/usr/bin/env bash
# The pinned Go toolchain and the one place Vigie's tools are built with it (Jaeger, Sloth, ...).
#
# Debian 12 ships Go 1.19; our tools need >= 1.24. The toolchain comes from the Go module proxy, which serves every
# Go release as the module golang.org/toolchain (what `GOTOOLCHAIN=go1.X.Y` downloads), so no other registry is
# needed: the zip is fetched once, checked against the hash pinned here, and unpacked into the tool cache. A Go
# already on PATH at exactly the pinned version is used as is.
set -euo pipefail

GO_VERSION=1.26.8
# sha256 of https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go1.26.8.linux-amd64.zip (fetched 2026-12-07)
GO_ZIP_SHA256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7

usage() {
    cat <<'USAGE'
Usage: tools/go.sh path
       tools/go.sh build LABEL USUAL_MINUTES DIR -- GO_ARGUMENTS...
  path   print the pinned Go binary, fetching the toolchain from the Go module proxy first if needed
  build  run `go GO_ARGUMENTS...` in DIR with the shared module and build caches
         (${VIGIE_TOOL_CACHE:-~/.cache/vigie}/go),
         saying what is built, how long it usually takes the first time, and a line a minute while it runs
USAGE
}

cache=${VIGIE_TOOL_CACHE:-$HOME/.cache/vigie}
toolchain="$cache/go/toolchain/go$GO_VERSION"

die() { echo "go.sh: $*" >&2; exit 1; }

pinned_go() {
    local candidate
    for candidate in "$toolchain/bin/go" "$(command -v go || true)" /usr/local/go/bin/go; do
        [[ -n "$candidate" && -x "$candidate" ]] || continue
        if [[ $(GOTOOLCHAIN=local "$candidate" env GOVERSION 2>/dev/null) == "go$GO_VERSION" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

fetch_toolchain() {
    local arch proxy url work
    case "$(uname -m)" in
        x86_64) arch=amd64 ;;
        *) die "no pinned Go toolchain for $(uname -m) (only linux-amd64 is pinned; add its hash to tools/go.sh)" ;;
    esac
    local tool
    for tool in curl unzip; do
        command -v "$tool" >/dev/null || die "$tool is needed to fetch Go (tools/install-deps.sh installs it)"
    done
    proxy=${GOPROXY:-https://proxy.golang.org}
    proxy=${proxy%%,*}
    [[ "$proxy" == http* ]] || proxy=https://proxy.golang.org
    url="$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$arch.zip"
    echo "go.sh: fetching Go $GO_VERSION from the Go module proxy ($url, ~70 MB, once per machine)" >&2
    mkdir -p "$(dirname "$toolchain")"
    work=$(mktemp -d "$(dirname "$toolchain")/.fetch.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    curl -sSfL --retry 3 -o "$work/go.zip" "$url" || die "could not download $url"
    echo "$GO_ZIP_SHA256  $work/go.zip" | sha256sum --quiet -c - ||
        die "Go $GO_VERSION from $url does not match the pinned sha256 (tools/go.sh): refusing it"
    unzip -q "$work/go.zip" -d "$work/unpacked"
    # Module zips carry no file modes: restore the executables as the go command does when it switches toolchains.
    local tree="$work/unpacked/golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-$arch"
    chmod -R a+x "$tree/bin" "$tree/pkg/tool"
    rm -rf "$toolchain"
    mv "$tree" "$toolchain"  # only a complete toolchain ever has the final name
    rm -rf "$work"
    trap - EXIT
}

go_binary() {
    pinned_go && return 0
    fetch_toolchain
    pinned_go || die "the fetched Go in $toolchain does not report go$GO_VERSION"
}

build() {
    local label=$1 usual=$2 dir=$3 go pid started minutes status
    shift 3
    [[ "${1:-}" == -- ]] || { usage >&2; exit 2; }
    shift
    go=$(go_binary)
    echo "go.sh: building $label with Go $GO_VERSION (first time on this machine: usually ~$usual min on 2 cores)" >&2
    started=$SECONDS
    # One module cache and one build cache for every tool: a fresh clone, and each later tool, reuse them.
    (cd "$dir" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOPATH="$cache/go/path" GOMODCACHE="$cache/go/mod" \
        GOCACHE="$cache/go/build" "$go" "$@") &
    pid=$!
    trap 'kill "$pid" 2>/dev/null || true' EXIT
    while ! wait_briefly "$pid" 60; do
        minutes=$(((SECONDS - started) / 60))
        echo "go.sh: still building $label ($minutes min so far, usually ~$usual)" >&2
    done
    status=0
    wait "$pid" || status=$?
    trap - EXIT
    ((status == 0)) || die "building $label failed (go exited $status)"
    echo "go.sh: built $label in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s" >&2
}

# Waits up to $2 seconds for process $1; true when it has ended.
wait_briefly() {
    local i
    for ((i = 0; i < $2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 1
    done
    ! kill -0 "$1" 2>/dev/null
}

case "${1:-}" in
    path) (($# == 1)) || { usage >&2; exit 2; }; go_binary ;;
    build) (($# >= 5)) || { usage >&2; exit 2; }; shift; build "$@" ;;
    -h | --help) usage ;;
    *) echo "go.sh: unknown command '${1:-}'" >&2; usage >&2; exit 2 ;;
esac
