#!/usr/bin/env bash
# Installs the pinned Debian packages (tools/apt-packages.lock) and the pinned Python test tools
# (tools/python-requirements.txt, into .cache/venv). Idempotent: when everything is already at its pinned
# version it only checks and returns in about a second.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/install-deps.sh [--apt-only | --python-only]
Installs what Vigie needs to build, run and test, at pinned versions: Debian packages, the Python test tools
(.cache/venv) and tools built from the Go module proxy and Maven (Sloth, Jaeger, OpenSearch; cached in
~/.cache/vigie). Safe to re-run.
USAGE
}

root=$(cd "$(dirname "$0")/.." && pwd)
do_apt=1
do_python=1
case "${1:-}" in
    "") ;;
    --apt-only) do_python=0 ;;
    --python-only) do_apt=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install-deps: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

install_apt() {
    local wanted=() name version have
    while read -r line; do
        line=${line%%#*}
        [[ -z "${line// /}" ]] && continue
        name=${line%%=*}
        version=${line#*=}
        have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
        if [[ "$have" != "install ok installed $version" ]]; then
            wanted+=("$name=$version")
        fi
    done <"$root/tools/apt-packages.lock"
    ((${#wanted[@]} == 0)) && return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-deps: these packages are missing and installing them needs root: ${wanted[*]}" >&2
        exit 1
    fi
    echo "install-deps: installing ${wanted[*]}"
    # Package scripts must not try to start services: Vigie runs its own processes under var/.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' RETURN
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${wanted[@]}"; then
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${wanted[@]}"
    fi
}

install_python() {
    local venv="$root/.cache/venv" stamp req="$root/tools/python-requirements.txt"
    stamp="$venv/.requirements.sha256"
    if [[ -f "$stamp" ]] && sha256sum --status -c "$stamp" 2>/dev/null; then
        return 0
    fi
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    (cd / && sha256sum "$req") >"$stamp"
}

install_tools() {
    # Tools built from the Go module proxy, cached per machine in ~/.cache/vigie (see each script).
    "$root/platform/slo/generate.py" --install >/dev/null
    # The log store (OpenSearch, Maven) and the trace store (Jaeger, Go), both cached per machine.
    "$root/tools/opensearch.sh" install
    "$root/tools/jaeger.sh" install
}

((do_apt)) && install_apt
((do_python)) && install_python
((do_apt && do_python)) && install_tools
exit 0
