# Vigie — the two commands are `make up` (run the platform) and `make test` (prove it). See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTEST := .cache/venv/bin/pytest
CXX_SOURCES = $(shell git ls-files 'services/*.cpp' 'services/*.hpp')
SHELL_SCRIPTS = $(shell git ls-files '*.sh' 'deploy/local/vigie-local' '.ci/run')

.PHONY: help deps check-deps build build-asan build-fuzz up down status test lint format test-unit test-asan \
        fuzz-smoke test-python test-drills clean load incident drill bench test-containers test-quick test-fresh

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

deps: ## install the pinned packages and tools (idempotent, cached; ~40 min the first time on a machine)
	tools/install-deps.sh

check-deps: ## can every Debian pin still be installed from what the archive serves now? (seconds)
	tools/install-deps.sh --check

build: deps ## build the services (release)
	cmake --preset release >/dev/null
	cmake --build --preset release -j2

build-asan: deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j2

build-fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j2

up: build ## run the whole platform locally (state in var/)
	deploy/local/vigie-local up

down: ## stop everything `make up` started
	deploy/local/vigie-local down

status: ## show what runs and the health of Prometheus targets
	deploy/local/vigie-local status

load: ## extra mixed traffic on the running stack (RATE=req/s, default 10; DURATION=s, default 60)
	ops/loadgen/loadgen.py --rate $(or $(RATE),10) --duration $(or $(DURATION),60) --report-every 10

incident: ## inject one incident into the running stack and time its alert (NAME=slow-api, 5xx-burst, ...)
	ops/incidents/incident.py $(NAME)

drill: ## every incident in turn on the running stack; writes the table into docs/operations-report.md
	ops/incidents/drill.py

bench: build ## performance table: gateway vs nginx, user vs pgbench, observability cost, footprint (~5 min; BENCH_ARGS=--quick)
	ops/bench/bench.py $(BENCH_ARGS)

format: ## rewrite C++ sources with clang-format and Python sources with ruff
	clang-format-14 -i $(CXX_SOURCES)
	.cache/venv/bin/ruff format --quiet .

lint: deps build ## clang-format, clang-tidy (cached per file content), shellcheck and ruff, all enforced
	clang-format-14 --dry-run -Werror $(CXX_SOURCES)
	tools/clang-tidy.py build/release
	shellcheck $(SHELL_SCRIPTS)
	.cache/venv/bin/ruff check --quiet .
	.cache/venv/bin/ruff format --check --quiet .

test-unit: build ## C++ unit tests (release)
	ctest --preset release -j2

test-asan: build-asan ## C++ unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --preset asan -j2

fuzz-smoke: build-fuzz ## run every libFuzzer target briefly (FUZZ_SECONDS per target, default 20)
	tools/fuzz-smoke.sh build/fuzz

test-python: build ## platform, system, gateway, dashboards and local-platform tests (pytest)
	$(PYTEST) tests --ignore=tests/drills --ignore=tests/containers

test-drills: build ## end-to-end incident drills on an isolated stack (about 8 minutes)
	$(PYTEST) tests/drills

# Last in `test`. Needs root (tools/docker.sh starts dockerd when none answers; where dockerd cannot run, the tests
# that need it are reported skipped with its error). Cold (no base image, no layer cache) 7.6 min on an idle 2-core
# machine, mostly the C++ build in the image; warm about 1.5 min (a new commit rebuilds one kit component, ~40 s).
# Builds the images with the offline base images, runs them against PostgreSQL in a container, smoke test through
# the gateway (services call each other by name), SIGTERM drain with a request in flight; hadolint, Trivy, compose.
test-containers: deps ## container images: build offline, run, smoke, drain; hadolint, Trivy, compose profiles
	VIGIE_CONTAINER_TESTS=1 $(PYTEST) -s tests/containers

# The developer's loop (a few minutes warm); `make test` stays the full suite CI runs.
test-quick: build ## C++ unit tests, lint of the files changed since main, the stack-free pytest suites (minutes)
	ctest --preset release -j2
	tools/lint-changed.sh
	$(PYTEST) -q tests/tools tests/platform
	$(PYTEST) -q tests/logging/test_production_configs.py  # its own run: each test directory has its own conftest

test-fresh: ## the README's commands on a throwaway fresh Debian 12 container: cold times (~45 min, on demand)
	tools/fresh-machine.sh $(if $(TEST_MINUTES),--test-minutes $(TEST_MINUTES))

test: check-deps lint test-unit test-asan fuzz-smoke test-python test-drills test-containers ## every test: lint, unit, sanitizers, fuzz, system, drills, containers

clean: ## remove build outputs (not var/)
	rm -rf build
