#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for a short time from its seed corpus
# (services/kit/<component>/fuzz_corpus/<target>/, plus <target>.dict beside it when present). Fails when a target
# crashes, leaks, times out or runs out of memory, and keeps the input that did it.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: tools/fuzz-smoke.sh [--seconds N] [--target NAME]... [BUILD_DIR]

Runs each libFuzzer target found in BUILD_DIR (default: build/fuzz, made by
`cmake --preset fuzz && cmake --build --preset fuzz`) for N seconds (default 20, or FUZZ_SECONDS), starting from
a copy of its seed corpus so that the repository's corpus is left as it is.

  --seconds N     time per target (whole seconds)
  --target NAME   run only this target (repeatable)
  -h, --help      this text

Exit status: 0 when every target ran clean, 1 when one failed (its input is kept under
BUILD_DIR/fuzz-artifacts/<target>/ with the command that reproduces it), 2 for a usage error.
EOF
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${FUZZ_SECONDS:-20}
build_dir=$root/build/fuzz
only=()
while (($# > 0)); do
    case $1 in
        -h | --help)
            usage
            exit 0
            ;;
        --seconds)
            [[ $# -ge 2 ]] || { usage >&2; exit 2; }
            seconds=$2
            shift 2
            ;;
        --target)
            [[ $# -ge 2 ]] || { usage >&2; exit 2; }
            only+=("$2")
            shift 2
            ;;
        -*)
            echo "fuzz-smoke: unknown option $1" >&2
            usage >&2
            exit 2
            ;;
        *)
            build_dir=$1
            shift
            ;;
    esac
done
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz-smoke: --seconds must be a positive whole number (got '$seconds')" >&2
    exit 2
fi
if [[ ! -d $build_dir ]]; then
    echo "fuzz-smoke: no build directory $build_dir (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
    exit 2
fi
build_dir=$(cd "$build_dir" && pwd)

mapfile -t targets < <(find "$build_dir" -type f -name '*_fuzz' -perm -u+x -not -path '*/CMakeFiles/*' | sort)
if ((${#only[@]} > 0)); then
    selected=()
    for name in "${only[@]}"; do
        match=$(printf '%s\n' "${targets[@]}" | grep -E "/${name}\$" || true)
        if [[ -z $match ]]; then
            echo "fuzz-smoke: no target $name in $build_dir" >&2
            exit 2
        fi
        selected+=("$match")
    done
    targets=("${selected[@]}")
fi
if ((${#targets[@]} == 0)); then
    echo "fuzz-smoke: no *_fuzz targets in $build_dir (cmake --build --preset fuzz)" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
    name=$(basename "$target")
    corpus=$work/$name
    mkdir -p "$corpus"
    seeds=$(find "$root/services" -type d -path "*/fuzz_corpus/$name" -not -path "$root/build/*" | head -n 1)
    seed_count=0
    options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    if [[ -n $seeds ]]; then
        cp "$seeds"/* "$corpus"/
        seed_count=$(find "$seeds" -type f | wc -l)
        if [[ -f $seeds.dict ]]; then
            options+=(-dict="$seeds.dict")
        fi
    fi
    artifacts=$build_dir/fuzz-artifacts/$name
    mkdir -p "$artifacts"
    options+=(-artifact_prefix="$artifacts/")
    echo "fuzz-smoke: $name: ${seconds}s from $seed_count seeds${seeds:+ ($seeds)}"
    log=$work/$name.log
    if "$target" "${options[@]}" "$corpus" >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
        peak=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
        units=$(find "$corpus" -type f | wc -l)
        echo "fuzz-smoke: $name: ok, ${execs:-?} executions (${rate:-?}/s), corpus $seed_count -> $units," \
            "peak RSS ${peak:-?} MB"
    else
        status=$?
        tail -n 60 "$log"
        echo "fuzz-smoke: $name FAILED (exit $status); inputs kept in $artifacts/:" >&2
        ls -1 "$artifacts" >&2 || true
        echo "fuzz-smoke: reproduce with: $target $artifacts/<file>" >&2
        failed+=("$name")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzz-smoke: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets ran clean for ${seconds}s each"
