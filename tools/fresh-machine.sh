#!/usr/bin/env bash
# The README's two commands as a newcomer runs them: in a throwaway Debian 12 container that has never seen Vigie
# (no ~/.cache/vigie, no .cache/, none of our packages), on a clean clone of this repository's HEAD. It proves
# that `make up` works from nothing but the registries, and measures the cold times docs/development.md gives.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/fresh-machine.sh [--test-minutes N]
Runs, in a new container from debian:bookworm-slim (made from Debian packages by tools/docker.sh base):
  apt-get install git make ca-certificates (what a newcomer has; the host's local CAs, as every machine of our
  kind trusts), git clone of HEAD,
  make deps, make build, make up (must reach the final table), make status, make down,
  then make test for at most N minutes (default 10; 0 skips it): long enough to see the suite start testing.
Prints each step's time; the whole log goes to build/fresh-machine/<UTC time>.log. Needs root and Docker
(tools/docker.sh starts dockerd). Takes ~45 min on 2 cores: it is `make test-fresh`, not part of `make test`.
USAGE
}

die() { echo "fresh-machine: $*" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
test_minutes=10
while (($#)); do
    case "$1" in
        --test-minutes)
            [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--test-minutes needs a whole number of minutes"
            test_minutes=$2
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) echo "fresh-machine: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $(id -u) -eq 0 ]] || die "needs root (it runs Docker)"

revision=$(git -C "$root" rev-parse --short HEAD)
[[ -z "$(git -C "$root" status --porcelain --untracked-files=no)" ]] ||
    echo "fresh-machine: note: uncommitted changes are not part of the run (it clones HEAD $revision)" >&2
"$root/tools/docker.sh" base
mkdir -p "$root/build/fresh-machine"
log="$root/build/fresh-machine/$(date -u +%Y%m%dT%H%M%SZ).log"
name="vigie-fresh-$$"
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT

# The script the container runs. Each step prints "step NAME SECONDS rc" so the summary below can be read off.
# shellcheck disable=SC2016 # expanded inside the container
inner='
set -uo pipefail
step() {
    local name=$1 started=$SECONDS rc=0
    shift
    echo "=== $name: $*"
    "$@" || rc=$?
    echo "=== step $name $((SECONDS - started)) $rc"
    return $rc
}
export DEBIAN_FRONTEND=noninteractive
newcomer_tools="apt-get update -q && apt-get install -y -q --no-install-recommends git make ca-certificates"
# The machine'"'"'s own trust anchors (here the registries'"'"' TLS proxy), which every machine of our kind has.
newcomer_tools+=" && cp /host-ca/. /usr/local/share/ca-certificates/ -r && update-ca-certificates"
step newcomer-tools bash -c "$newcomer_tools" || exit 1
step clone git clone -q /src /root/vigie || exit 1
cd /root/vigie
step deps make deps || exit 1
step build make build || exit 1
step up make up || exit 1
step status make status || exit 1
step down make down || exit 1
if ((TEST_MINUTES > 0)); then
    step test-start timeout --signal=INT "$((TEST_MINUTES * 60))" make test
fi
exit 0
'
echo "fresh-machine: HEAD $revision in container $name; log: $log" >&2
started=$SECONDS
# Docker's default capabilities: the platform needs no more (and root on our VMs lacks CAP_SYS_RESOURCE, so
# --privileged cannot even start). The container's own network namespace keeps its ports apart from the host's.
set +e
docker run --name "$name" --hostname fresh-machine -e TEST_MINUTES="$test_minutes" -e CI=true \
    -v "$root:/src:ro" -v /usr/local/share/ca-certificates:/host-ca:ro debian:bookworm-slim bash -c "$inner" </dev/null 2>&1 | tee "$log" |
    grep --line-buffered -E '^(=== |go\.sh: |install-deps: |opensearch|jaeger|vigie-local|[0-9]+ (passed|failed))'
status=${PIPESTATUS[0]}
set -e
echo "fresh-machine: finished in $(((SECONDS - started) / 60)) min (container exit $status); step times:"
awk '$1 == "===" && $2 == "step" { printf "  %-15s %4d min %02d s  exit %s\n", $3, $4 / 60, $4 % 60, $5 }' "$log"
exit "$status"
