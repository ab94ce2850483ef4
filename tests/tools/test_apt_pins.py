"""The Debian pin policy (tools/apt-pins.sh): install the locked version when Debian serves it, else the newest
served revision of the same upstream version with a notice, else refuse. Fed with fake `apt-cache madison` output,
so no apt and no network are involved; the real installer feeds it the live output the same way."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APT_PINS = ROOT / "tools" / "apt-pins.sh"
INSTALL_DEPS = ROOT / "tools" / "install-deps.sh"
GO = ROOT / "tools" / "go.sh"

# What the archives served on 2026-12-06, plus the cases each rule needs.
MADISON = """\
     nginx | 1.22.1-9+deb12u12 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     nginx | 1.22.1-9+deb12u9 | http://deb.debian.org/debian bookworm/main amd64 Packages
     nginx | 1.22.1-9+deb12u11 | http://deb.debian.org/debian bookworm/main Sources
linux-perf | 6.1.192-3 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-perf | 6.1.176-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
     clang | 1:14.0-55.7~deb12u1 | http://deb.debian.org/debian bookworm/main amd64 Packages
postgresql-15 | 15.20-0+deb12u1 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
postgresql-15 | 15.18-0+deb12u1 | http://deb.debian.org/debian bookworm/main amd64 Packages
   libfoo1 | 2.0-1 | http://deb.debian.org/debian bookworm/main amd64 Packages
  docker.io | 20.10.24+dfsg1-1+deb12u1+b7 | http://deb.debian.org/debian bookworm/main amd64 Packages
"""


def resolve(*pins: str, madison: str = MADISON) -> list[str]:
    result = subprocess.run(
        [str(APT_PINS), "resolve", "-", *pins], input=madison, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.splitlines()


def test_the_locked_version_is_installed_when_it_is_served() -> None:
    assert resolve("clang=1:14.0-55.7~deb12u1", "postgresql-15=15.18-0+deb12u1") == [
        "exact clang 1:14.0-55.7~deb12u1",
        "exact postgresql-15 15.18-0+deb12u1",  # a newer upstream (15.20) being served changes nothing
    ]


def test_a_dropped_revision_is_replaced_by_the_newest_served_revision_of_the_same_upstream() -> None:
    # The two pins that stopped every fresh machine on 2026-12-06, and a binNMU (+b6 -> +b7).
    assert resolve("nginx=1.22.1-9+deb12u11", "linux-perf=6.1.192-2", "docker.io=20.10.24+dfsg1-1+deb12u1+b6") == [
        "substitute nginx 1.22.1-9+deb12u12 1.22.1-9+deb12u11",  # u9 is older and a source line does not count
        "substitute linux-perf 6.1.192-3 6.1.192-2",  # 6.1.176 is another upstream version
        "substitute docker.io 20.10.24+dfsg1-1+deb12u1+b7 20.10.24+dfsg1-1+deb12u1+b6",
    ]


def test_only_another_upstream_version_served_is_refused() -> None:
    assert resolve("libfoo1=1.9-3", "postgresql-15=15.19-0+deb12u1", "gone=1.0-1") == [
        "refuse libfoo1 1.9-3 2.0-1",
        "refuse postgresql-15 15.19-0+deb12u1 15.18-0+deb12u1,15.20-0+deb12u1",
        "refuse gone 1.0-1 none",
    ]


def test_the_epoch_is_part_of_the_upstream_version() -> None:
    madison = "     clang | 2:14.0-55.7~deb12u2 | http://deb.debian.org/debian bookworm/main amd64 Packages\n"
    assert resolve("clang=1:14.0-55.7~deb12u1", madison=madison) == [
        "refuse clang 1:14.0-55.7~deb12u1 2:14.0-55.7~deb12u2"
    ]


def test_newest_names_the_newest_served_version_of_any_upstream() -> None:
    result = subprocess.run(
        [str(APT_PINS), "newest", "-", "postgresql-15", "nginx", "gone"],
        input=MADISON,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert result.stdout.splitlines() == ["postgresql-15 15.20-0+deb12u1", "nginx 1.22.1-9+deb12u12", "gone none"]


def test_bad_arguments_are_refused_with_a_message() -> None:
    for command in (
        [str(APT_PINS), "resolve", "-", "no-version"],
        [str(APT_PINS), "resolve"],
        [str(APT_PINS), "frobnicate"],
        [str(INSTALL_DEPS), "--bogus"],
        [str(INSTALL_DEPS), "--check", "extra"],
        [str(GO), "build", "label"],
        [str(GO), "frobnicate"],
    ):
        result = subprocess.run(command, input="", capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, command
        assert result.stderr.strip(), command
