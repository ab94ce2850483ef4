#!/usr/bin/env bash
# Resolves the Debian pins of tools/apt-packages.lock against what the archive serves now.
#
# The lock records the exact version each package was tested at. Debian's archives keep only the newest
# revision of a package (a security update replaces 1.22.1-9+deb12u11 by 1.22.1-9+deb12u12 and the old one is
# gone), so an exact pin alone breaks every new machine sooner or later. The rule (docs/development.md):
#   - the locked version is served                       -> install it
#   - another revision of the same upstream is served    -> install the newest such revision, with a notice
#   - only another upstream version (or nothing) served  -> refuse: that is a real change someone must review
# This file holds only that decision, fed with `apt-cache madison` output, so it can be tested without apt.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/apt-pins.sh resolve MADISON_FILE NAME=VERSION...
       tools/apt-pins.sh newest MADISON_FILE NAME...
  resolve  one line per pin:  exact NAME VERSION
                              substitute NAME VERSION LOCKED_VERSION
                              refuse NAME LOCKED_VERSION SERVED_VERSIONS (comma-separated, or "none")
  newest   one line per name: NAME NEWEST_SERVED_VERSION (or NAME none)
MADISON_FILE is the output of `apt-cache madison NAME...` ("-" reads standard input). Only binary package
lines ("... Packages") count; source lines are ignored.
USAGE
}

# The upstream part of a Debian version: epoch and upstream, without the last "-revision" (policy 5.6.12).
upstream_of() {
    local version=$1
    [[ "$version" == *-* ]] && version=${version%-*}
    printf '%s\n' "$version"
}

# Prints the served binary versions of package $1, one per line, from the madison text in $madison.
served_versions() {
    awk -F'|' -v name="$1" '
        { for (i = 1; i <= 3; i++) gsub(/^[ \t]+|[ \t]+$/, "", $i) }
        $1 == name && $3 ~ /Packages$/ { print $2 }' <<<"$madison" | sort -u
}

# Prints the newest of the versions given as arguments (dpkg ordering); nothing when there are none.
newest_of() {
    local best="" version
    for version in "$@"; do
        if [[ -z "$best" ]] || dpkg --compare-versions "$version" gt "$best"; then
            best=$version
        fi
    done
    [[ -n "$best" ]] && printf '%s\n' "$best"
    return 0
}

resolve_pin() {
    local name=${1%%=*} locked=${1#*=} version same=() served=()
    [[ "$1" == *=* && -n "$name" && -n "$locked" ]] || { echo "apt-pins.sh: '$1' is not NAME=VERSION" >&2; exit 2; }
    mapfile -t served < <(served_versions "$name")
    for version in "${served[@]}"; do
        if [[ "$version" == "$locked" ]]; then
            echo "exact $name $locked"
            return 0
        fi
        [[ $(upstream_of "$version") == "$(upstream_of "$locked")" ]] && same+=("$version")
    done
    if ((${#same[@]} > 0)); then
        echo "substitute $name $(newest_of "${same[@]}") $locked"
    else
        local list
        list=$(IFS=,; echo "${served[*]}")
        echo "refuse $name $locked ${list:-none}"
    fi
}

command=${1:-}
case "$command" in
    resolve | newest)
        (($# >= 3)) || { usage >&2; exit 2; }
        if [[ "$2" == - ]]; then madison=$(cat); else madison=$(<"$2"); fi
        shift 2
        for arg in "$@"; do
            if [[ "$command" == resolve ]]; then
                resolve_pin "$arg"
            else
                mapfile -t versions < <(served_versions "$arg")
                echo "$arg $(newest_of "${versions[@]}" | grep . || echo none)"
            fi
        done
        ;;
    -h | --help) usage ;;
    *) echo "apt-pins.sh: unknown command '$command'" >&2; usage >&2; exit 2 ;;
esac
