#!/usr/bin/env bash
# Installs the pinned Debian packages (tools/apt-packages.lock) and the pinned Python test tools
# (tools/python-requirements.txt, into .cache/venv). Idempotent: when everything is already at its pinned
# version it only checks and returns in about a second.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/install-deps.sh [--apt-only | --python-only | --check | --refresh-lock [NAME...]]
Installs what Vigie needs to build, run and test, at pinned versions: Debian packages (tools/apt-packages.lock),
the Python test tools (.cache/venv), Go (tools/go.sh) and the tools built from the Go module proxy and Maven
(Sloth, Jaeger, OpenSearch; cached in ~/.cache/vigie). Safe to re-run; the first run on a machine takes ~40 min.
  --check         say whether every Debian pin can be installed from what the archive serves now, printing each
                  substitution (another Debian revision of the same upstream version); exit 1 with the list of
                  pins that cannot. Installs nothing (it refreshes apt's package lists when run as root).
  --refresh-lock  rewrite the lock to the newest versions the archive serves now (only NAME... when given) and
                  show the diff; review it and run `make test` before committing.
A pin whose exact version Debian no longer serves is replaced by the newest served revision of the same upstream
version, with a notice; a pin of which only another upstream version is served is refused (docs/development.md).
USAGE
}

root=$(cd "$(dirname "$0")/.." && pwd)
lock="$root/tools/apt-packages.lock"
do_apt=1
do_python=1
mode=install
case "${1:-}" in
    "") ;;
    --apt-only) do_python=0 ;;
    --python-only) do_apt=0 ;;
    --check) mode=check ;;
    --refresh-lock) mode=refresh ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install-deps: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac
if [[ "$mode" != refresh ]] && (($# > 1)); then
    echo "install-deps: unexpected argument '$2'" >&2; usage >&2; exit 2
fi

# The pins of the lock, one NAME=VERSION per line (comments and blank lines dropped).
lock_pins() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$lock"; }

# Waits (up to 10 minutes) while another process holds one of apt's or dpkg's locks, saying so once.
# apt takes them with fcntl; /proc/locks lists the holders by inode.
wait_for_apt_locks() {
    local file inode holder waited=0 said=0
    while :; do
        holder=""
        for file in /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock \
            /var/cache/apt/archives/lock; do
            [[ -e "$file" ]] || continue
            inode=$(stat -c %i "$file")
            holder=$(awk -v inode="$inode" '$2 != "->" { split($6, id, ":"); if (id[3] == inode) { print $5; exit } }' \
                /proc/locks)
            [[ -n "$holder" ]] && break
        done
        [[ -z "$holder" ]] && return 0
        if ((!said)); then
            echo "install-deps: waiting for the apt/dpkg lock ($file), held by PID $holder" \
                "($(tr '\0' ' ' <"/proc/$holder/cmdline" 2>/dev/null | cut -c1-80)); up to 10 minutes" >&2
            said=1
        fi
        ((waited >= 600)) && { echo "install-deps: the apt/dpkg lock is still held after 10 minutes" >&2; exit 1; }
        sleep 2
        waited=$((waited + 2))
    done
}

# apt-get that waits for the dpkg lock instead of failing at once (a second guard behind wait_for_apt_locks).
apt_get() {
    wait_for_apt_locks
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

update_lists() {
    echo "install-deps: refreshing apt's package lists" >&2
    apt_get update -q >/dev/null
}

# Resolves the given pins against the archive (tools/apt-pins.sh), printing its lines.
resolve_pins() {
    local names=("${@%%=*}")
    apt-cache madison "${names[@]}" 2>/dev/null | "$root/tools/apt-pins.sh" resolve - "$@"
}

# Prints the refusals of resolve_pins output ($1) as an explanation; true when there were none.
report_refusals() {
    local verb name locked served refused=0
    while read -r verb name locked served _; do
        [[ "$verb" == refuse ]] || continue
        refused=1
        if [[ "$served" == none ]]; then
            echo "install-deps: $name: apt knows no version of it at all (apt's lists are missing or stale: run" \
                "this as root, which refreshes them, or apt-get update)" >&2
            continue
        fi
        echo "install-deps: $name: the lock says $locked but the archive serves only ${served//,/, }: another" \
            "upstream version, which someone must review" >&2
    done <<<"$1"
    if ((refused)); then
        echo "install-deps: to take the served versions: tools/install-deps.sh --refresh-lock NAME...," \
            "then make test" >&2
        return 1
    fi
}

report_substitutions() {
    local verb name version locked
    while read -r verb name version locked; do
        [[ "$verb" == substitute ]] || continue
        echo "install-deps: $name: $locked is no longer served; using $version (same upstream, another Debian revision)"
    done <<<"$1"
}

check_apt() {
    local resolved
    [[ $(id -u) -eq 0 ]] && update_lists
    mapfile -t pins < <(lock_pins)
    resolved=$(resolve_pins "${pins[@]}")
    report_substitutions "$resolved"
    report_refusals "$resolved" || exit 1
    simulate_fresh_install "$resolved" || exit 1
    echo "install-deps: all ${#pins[@]} Debian pins can be installed from what the archive serves now"
}

# Asks apt to plan the whole install for a machine with nothing installed (an empty dpkg status), so a pin whose
# dependencies cannot be met from the archive fails here, not on the next fresh machine. Installs nothing.
simulate_fresh_install() {
    local targets empty plan
    targets=$(awk '$1 != "refuse" { print $2 "=" $3 }' <<<"$1")
    empty=$(mktemp)
    # shellcheck disable=SC2086 # one word per package
    if ! plan=$(apt-get -s -q -o Dir::State::status="$empty" install --no-install-recommends $targets 2>&1); then
        rm -f "$empty"
        grep -E '^ |^E:' <<<"$plan" | grep -v '^ *$' >&2 || true
        echo "install-deps: on a fresh machine these pins cannot be installed together (above); a locked package" \
            "that needs an exact version of another one needs that one locked too" >&2
        return 1
    fi
    rm -f "$empty"
    echo "install-deps: a fresh install of the lock resolves ($(grep -c '^Inst ' <<<"$plan") packages with dependencies)"
}

refresh_lock() {
    local names=("$@") newest name version new_lock
    ((${#names[@]} > 0)) || mapfile -t names < <(lock_pins | sed 's/=.*//')
    for name in "${names[@]}"; do
        lock_pins | grep -q "^$name=" || { echo "install-deps: '$name' is not in $lock" >&2; exit 2; }
    done
    [[ $(id -u) -eq 0 ]] && update_lists
    newest=$(apt-cache madison "${names[@]}" 2>/dev/null | "$root/tools/apt-pins.sh" newest - "${names[@]}")
    new_lock=$(mktemp "$lock.XXXXXX")
    trap 'rm -f "$new_lock"' EXIT
    cp "$lock" "$new_lock"
    while read -r name version; do
        [[ "$version" == none ]] && { echo "install-deps: the archive serves no '$name' at all" >&2; exit 1; }
        sed -i "s|^$name=[^[:space:]#]*|$name=$version|" "$new_lock"
    done <<<"$newest"
    if diff -u --label "a/tools/apt-packages.lock" --label "b/tools/apt-packages.lock" "$lock" "$new_lock"; then
        echo "install-deps: the lock already names the newest served versions"
    else
        mv "$new_lock" "$lock"
    fi
    rm -f "$new_lock"
    trap - EXIT
}

install_apt() {
    local wanted=() pin name locked have resolved verb version
    while read -r pin; do
        name=${pin%%=*}
        locked=${pin#*=}
        have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
        [[ "$have" == "install ok installed $locked" ]] && continue
        have=${have#install ok installed }
        # Already installed at a later Debian revision of the same upstream (a security update): nothing to do.
        if [[ "$have" != *" "* && -n "$have" ]] && dpkg --compare-versions "$have" gt "$locked" &&
            [[ "${have%-*}" == "${locked%-*}" ]]; then
            echo "install-deps: $name $have is installed (the lock says $locked: same upstream, later revision)"
            continue
        fi
        wanted+=("$pin")
    done < <(lock_pins)
    ((${#wanted[@]} == 0)) && return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-deps: these packages are missing and installing them needs root: ${wanted[*]}" >&2
        exit 1
    fi
    resolved=$(resolve_pins "${wanted[@]}")
    if grep -q '^refuse ' <<<"$resolved"; then
        update_lists  # the lists may predate the archive's current versions (or be absent)
        resolved=$(resolve_pins "${wanted[@]}")
    fi
    report_refusals "$resolved" || exit 1
    report_substitutions "$resolved"
    local targets=()
    while read -r verb name version _; do
        targets+=("$name=$version")
    done <<<"$resolved"
    echo "install-deps: installing ${targets[*]}"
    # Package scripts must not try to start services: Vigie runs its own processes under var/.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' RETURN
    if ! apt_get install -y -q --no-install-recommends "${targets[@]}"; then
        update_lists  # a mirror may have dropped a version since the lists were fetched
        apt_get install -y -q --no-install-recommends "${targets[@]}"
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
    # Tools built from the Go module proxy with the pinned Go (tools/go.sh), cached per machine in ~/.cache/vigie.
    "$root/tools/go.sh" path >/dev/null
    "$root/platform/slo/generate.py" --install >/dev/null
    # The log store (OpenSearch, Maven) and the trace store (Jaeger, Go), both cached per machine.
    "$root/tools/opensearch.sh" install
    "$root/tools/jaeger.sh" install
}

case "$mode" in
    check) check_apt; exit 0 ;;
    refresh) shift; refresh_lock "$@"; exit 0 ;;
esac
((do_apt)) && install_apt
((do_python)) && install_python
((do_apt && do_python)) && install_tools
exit 0
