#!/usr/bin/env bash
# The linters of `make lint`, on the files changed since BASE only (committed since BASE, staged, unstaged or new):
# the developer's quick check (`make test-quick`). `make lint` stays the full, enforced run.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/lint-changed.sh [BASE]
Lints the files changed since BASE (default: where HEAD left origin/main, else main, else HEAD~1):
clang-format and clang-tidy (build/release) for C++, shellcheck for shell, ruff for Python.
USAGE
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
esac
(($# <= 1)) || { usage >&2; exit 2; }
cd "$(dirname "$0")/.."
base=${1:-}
if [[ -z "$base" ]]; then
    for candidate in origin/main main HEAD~1; do
        base=$(git merge-base HEAD "$candidate" 2>/dev/null) && break
    done
fi
git rev-parse --verify -q "$base^{commit}" >/dev/null || { echo "lint-changed: '$base' is not a commit" >&2; exit 2; }

mapfile -t changed < <(
    { git diff --name-only --diff-filter=ACMR "$base"; git ls-files --others --exclude-standard; } | sort -u |
        while read -r f; do [[ -f "$f" ]] && echo "$f"; done
)
cxx=() tidy=() shell=() python=()
for f in "${changed[@]}"; do
    case "$f" in
        services/*.cpp | services/*.hpp)
            cxx+=("$f")
            [[ "$f" == *.cpp && ! "$f" =~ _(fuzz|test|bench)\.cpp$ ]] && tidy+=("$f")
            ;;
        *.sh | deploy/local/vigie-local | .ci/run) shell+=("$f") ;;
        *.py) python+=("$f") ;;
    esac
done
echo "lint-changed: since $(git rev-parse --short "$base"): ${#cxx[@]} C++, ${#shell[@]} shell, ${#python[@]} Python files"
((${#cxx[@]} == 0)) || clang-format-14 --dry-run -Werror "${cxx[@]}"
((${#tidy[@]} == 0)) || tools/clang-tidy.py build/release "${tidy[@]}"
((${#shell[@]} == 0)) || shellcheck "${shell[@]}"
if ((${#python[@]} > 0)); then
    .cache/venv/bin/ruff check --quiet "${python[@]}"
    .cache/venv/bin/ruff format --check --quiet "${python[@]}"
fi
echo "lint-changed: clean"
