#!/usr/bin/env bash
# tools/docker.sh: the Docker engine and base images for Vigie's containers on a machine without a container
# registry (see docs/containers.md). Starts dockerd when nothing answers on the socket, creates the base images the
# Dockerfiles name from Debian packages (mmdebstrap + docker import) when they are missing, and builds our images.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: tools/docker.sh COMMAND [OPTIONS]

Commands:
  start            start dockerd in the background when no engine answers (log: ~/.cache/vigie/docker/dockerd.log)
  stop             stop the dockerd that `start` started (and only that one)
  base [--force]   start, then create the offline base images when missing (--force: re-create them):
                     debian:bookworm-slim                  build stage (mmdebstrap --variant=minbase)
                     gcr.io/distroless/cc-debian12:nonroot runtime stage (glibc, libstdc++, libssl3, tzdata,
                                                           the nonroot user 65532), as the real image holds
  build [--version V] [--revision R]
                   base, then build vigie/{gateway,user,order}:V (default V: the CMake project version, R: git HEAD)
                   and vigie/postgres-test:15 (PostgreSQL 15 from Debian packages, for the container tests)
  -h, --help       show this help

With internet, nothing here is needed: `docker build` pulls the official base images (docs/containers.md).
Environment: VIGIE_CACHE (default ~/.cache/vigie), DOCKER (client binary, default: docker on PATH).
USAGE
}

die() {
    printf 'docker.sh: error: %s\n' "$*" >&2
    exit 1
}

usage_error() {
    printf 'docker.sh: %s\n\n' "$*" >&2
    usage >&2
    exit 2
}

say() {
    printf 'docker.sh: %s\n' "$*" >&2
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="${VIGIE_CACHE:-$HOME/.cache/vigie}/docker"
docker_bin="${DOCKER:-docker}"
readonly build_base="debian:bookworm-slim"
readonly runtime_base="gcr.io/distroless/cc-debian12:nonroot"
readonly suite="bookworm"

engine_up() {
    "$docker_bin" version --format '{{.Server.Version}}' >/dev/null 2>&1
}

cmd_start() {
    engine_up && return 0
    command -v dockerd >/dev/null || die "dockerd not found: run tools/install-deps.sh (Debian package docker.io)"
    [[ $(id -u) -eq 0 ]] || die "starting dockerd needs root"
    mkdir -p "$cache"
    say "starting dockerd (log: $cache/dockerd.log)"
    # No systemd here: dockerd runs detached from this shell, in its own session, until `stop`.
    setsid dockerd >>"$cache/dockerd.log" 2>&1 </dev/null &
    echo $! >"$cache/dockerd.pid"
    local i
    for ((i = 0; i < 60; i++)); do
        engine_up && return 0
        kill -0 "$(cat "$cache/dockerd.pid")" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 20 "$cache/dockerd.log" >&2
    die "dockerd did not answer within 30 s (log above)"
}

cmd_stop() {
    local pid
    [[ -f "$cache/dockerd.pid" ]] || { say "no dockerd started by this script"; return 0; }
    pid=$(cat "$cache/dockerd.pid")
    if kill -0 "$pid" 2>/dev/null && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]; then
        kill -TERM "$pid"
        local i
        for ((i = 0; i < 40; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
    fi
    rm -f "$cache/dockerd.pid"
}

have_image() {
    "$docker_bin" image inspect "$1" >/dev/null 2>&1
}

# import_rootfs NAME TARBALL: docker import with a label that marks the image as built here, not pulled.
import_rootfs() {
    "$docker_bin" import --change 'CMD ["/bin/sh"]' \
        --change "LABEL org.opencontainers.image.description=\"offline stand-in built by tools/docker.sh from Debian $suite packages\"" \
        "$2" "$1" >/dev/null
}

make_build_base() {
    say "creating $build_base from Debian packages (mmdebstrap --variant=minbase, about 2 min)"
    local tar="$cache/build-base.tar" partial="$cache/build-base.partial.tar"
    # shellcheck disable=SC2016 # $1 is expanded by mmdebstrap's hook shell, not here
    mmdebstrap --quiet --variant=minbase \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/etc/apt/sources.list' \
        --customize-hook='printf "%s\n" "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm bookworm-updates" \
            "Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" "" "Types: deb" \
            "URIs: http://deb.debian.org/debian-security" "Suites: bookworm-security" "Components: main" \
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" >"$1"/etc/apt/sources.list.d/debian.sources' \
        "$suite" "$partial" >&2  # the .tar suffix tells mmdebstrap to write a tarball
    mv -f "$partial" "$tar"
    import_rootfs "$build_base" "$tar"
    rm -f "$tar"
}

# What gcr.io/distroless/cc-debian12 holds (glibc, libgcc, libstdc++, libssl3, tzdata, netbase, passwd/group with
# root, nobody and nonroot 65532, /tmp 1777), unpacked without dpkg or a shell; the :nonroot tag runs as 65532.
make_runtime_base() {
    say "creating $runtime_base from Debian packages (mmdebstrap --variant=extract, about 15 s)"
    local tar="$cache/runtime-base.tar" partial="$cache/runtime-base.partial.tar"
    # shellcheck disable=SC2016 # $1 is expanded by mmdebstrap's hook shell, not here
    mmdebstrap --quiet --variant=extract \
        --include=libc6,libgcc-s1,libstdc++6,libssl3,tzdata,netbase \
        --customize-hook='rm -rf "$1"/usr/share/doc "$1"/usr/share/man "$1"/usr/share/info "$1"/usr/share/locale \
            "$1"/usr/share/lintian "$1"/var/cache/* "$1"/var/lib/apt "$1"/var/lib/dpkg "$1"/etc/apt "$1"/usr/bin/* \
            "$1"/usr/sbin/* "$1"/bin "$1"/sbin "$1"/usr/share/debconf "$1"/usr/share/perl5 "$1"/etc/debconf.conf' \
        --customize-hook='printf "%s\n" "root:x:0:0:root:/root:/sbin/nologin" \
            "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin" \
            "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin" >"$1"/etc/passwd' \
        --customize-hook='printf "%s\n" "root:x:0:" "nobody:x:65534:" "nonroot:x:65532:" >"$1"/etc/group' \
        --customize-hook='mkdir -p "$1"/tmp "$1"/home/nonroot "$1"/root && chmod 1777 "$1"/tmp &&
            chown 65532:65532 "$1"/home/nonroot && chmod 700 "$1"/root' \
        "$suite" "$partial" >&2  # the .tar suffix tells mmdebstrap to write a tarball
    mv -f "$partial" "$tar"
    "$docker_bin" import --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
        --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change "LABEL org.opencontainers.image.description=\"offline stand-in built by tools/docker.sh from Debian $suite packages\"" \
        "$tar" "$runtime_base" >/dev/null
    rm -f "$tar"
}

cmd_base() {
    local force=0
    while (($#)); do
        case "$1" in
            --force) force=1 ;;
            *) usage_error "base: unknown option '$1'" ;;
        esac
        shift
    done
    cmd_start
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found: run tools/install-deps.sh"
    mkdir -p "$cache"
    if ((force)) || ! have_image "$build_base"; then make_build_base; fi
    if ((force)) || ! have_image "$runtime_base"; then make_runtime_base; fi
}

cmd_build() {
    local version revision source
    version=$(sed -n 's/^project(vigie VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
    revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
    source=$(git -C "$root" config --get remote.origin.url 2>/dev/null || echo unknown)
    while (($#)); do
        case "$1" in
            --version) [[ $# -ge 2 && -n "$2" ]] || usage_error "build: --version needs a value"; version=$2; shift ;;
            --revision) [[ $# -ge 2 && -n "$2" ]] || usage_error "build: --revision needs a value"; revision=$2; shift ;;
            *) usage_error "build: unknown option '$1'" ;;
        esac
        shift
    done
    [[ "$version" =~ ^[A-Za-z0-9_.-]+$ ]] || usage_error "build: '$version' is not a valid image tag"
    cmd_base
    local service
    # BuildKit is not used: the Debian CLI would need buildx and the legacy builder caches the shared build stage
    # just as well (the kit is compiled once for the three targets).
    for service in gateway user order; do
        say "building vigie/$service:$version"
        DOCKER_BUILDKIT=0 "$docker_bin" build -q -f "$root/deploy/docker/Dockerfile" --target "$service" \
            --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source" \
            -t "vigie/$service:$version" "$root" >/dev/null
    done
    say "building vigie/postgres-test:15"
    DOCKER_BUILDKIT=0 "$docker_bin" build -q -t vigie/postgres-test:15 "$root/tests/containers/postgres" >/dev/null
    remove_superseded "$revision"
}

# Each build of changed sources leaves the previous build stage (about 1 GB, its unique layers ~150 MB) and the
# previous service images untagged; repeated test runs would fill the disk. Removes the untagged images of ours
# only (labels io.vigie.stage=build and org.opencontainers.image.title=vigie), except this build's stage, which is
# the next build's cache. An image still used by a container stays (rmi refuses it).
remove_superseded() {
    local current id
    current=$(DOCKER_BUILDKIT=0 "$docker_bin" build -q -f "$root/deploy/docker/Dockerfile" --target build \
        --build-arg "REVISION=$1" "$root")
    current=${current#sha256:}
    for id in $("$docker_bin" images -q --no-trunc -f dangling=true -f label=io.vigie.stage=build) \
        $("$docker_bin" images -q --no-trunc -f dangling=true -f label=org.opencontainers.image.title=vigie); do
        [[ ${id#sha256:} == "$current" ]] && continue
        "$docker_bin" rmi "$id" >/dev/null 2>&1 || true
    done
}

case "${1:-}" in
    start) shift; (($# == 0)) || usage_error "start takes no options"; cmd_start ;;
    stop) shift; (($# == 0)) || usage_error "stop takes no options"; cmd_stop ;;
    base) shift; cmd_base "$@" ;;
    build) shift; cmd_build "$@" ;;
    -h | --help) usage ;;
    "") usage_error "a command is required" ;;
    *) usage_error "unknown command '$1'" ;;
esac
