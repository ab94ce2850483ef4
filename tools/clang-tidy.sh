#!/usr/bin/env bash
# Runs clang-tidy (checks in .clang-tidy) on every C++ source file of services/, two at a time; fails on any finding.
set -euo pipefail

usage() { echo "usage: tools/clang-tidy.sh BUILD_DIR   (a build directory with compile_commands.json)"; }
if [[ $# -ne 1 || "$1" == -h || "$1" == --help ]]; then
    usage
    [[ $# -eq 1 ]] && exit 0
    exit 2
fi
build_dir=$1
if [[ ! -f "$build_dir/compile_commands.json" ]]; then
    echo "clang-tidy: $build_dir/compile_commands.json not found; configure that build first" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
# Production sources only (tests, benchmarks and fuzz targets are compiled with -Werror but not tidied, to keep
# CI short); headers are checked through the sources that include them (HeaderFilterRegex).
mapfile -t sources < <(git ls-files 'services/*.cpp' | grep -v -E '_(fuzz|test|bench)\.cpp$')
# GCC's precompiled-header flags mean nothing to clang: strip them from a private copy of the database.
tidy_db=$(mktemp -d)
trap 'rm -rf "$tidy_db"' EXIT
sed -E 's# -Winvalid-pch -include [^ ]*cmake_pch\.hxx##; s# -include utility##' \
    "$build_dir/compile_commands.json" >"$tidy_db/compile_commands.json"
printf '%s\n' "${sources[@]}" |
    xargs -P 2 -n 4 clang-tidy-14 --quiet -p "$tidy_db" --extra-arg=-include --extra-arg=utility \
        --extra-arg=-DBOOST_ASIO_HAS_CO_AWAIT=1
echo "clang-tidy: ${#sources[@]} files clean"
