"""Shared helpers for the supervision platform's tests (platform/prometheus, alertmanager, slo, notify).

Run with the project venv: .cache/venv/bin/pytest tests/platform. The tools under test (promtool, amtool,
Alertmanager, the exporters, PostgreSQL, /usr/bin/python3 with aiosmtpd) come from tools/install-deps.sh; a missing
tool fails the test that needs it, it never skips.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PLATFORM = REPO / "platform"
RULES_DIR = PLATFORM / "prometheus" / "rules"
RULE_TESTS_DIR = PLATFORM / "prometheus" / "tests"
RUNBOOKS_DIR = REPO / "docs" / "runbooks"
RENDER = PLATFORM / "prometheus" / "render.py"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# The sinks need Debian's aiosmtpd, which only Debian's interpreter has.
SYSTEM_PYTHON = "/usr/bin/python3"


def tool(name: str) -> str:
    """Absolute path of a required executable; fails the test (never skips) when it is missing."""
    path = name if os.path.isabs(name) else shutil.which(name)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"required tool {name!r} is missing: run tools/install-deps.sh")
    return path


def run(cmd: list[str], timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def clean_env(**overrides: str) -> dict[str, str]:
    """The current environment without any VIGIE_* variable (so defaults apply), plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIE_")}
    env.update(overrides)
    return env


def render(out_dir: Path, **ports: str) -> Path:
    assert_ok(run([SYSTEM_PYTHON, str(RENDER), "--out-dir", str(out_dir)], env=clean_env(**ports)))
    return out_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@dataclass(frozen=True)
class Alert:
    name: str
    file: str
    expr: str
    for_: str
    labels: dict
    annotations: dict


def alerting_rules() -> list[Alert]:
    alerts = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    alerts.append(
                        Alert(
                            name=rule["alert"],
                            file=path.name,
                            expr=rule["expr"],
                            for_=rule.get("for", "0s"),
                            labels=rule.get("labels", {}),
                            annotations=rule.get("annotations", {}),
                        )
                    )
    assert alerts, f"no alerting rules found in {RULES_DIR}"
    return alerts


class ListeningProcess:
    """A process that prints `listening on HOST:PORT` as its first stdout line (the notification sinks)."""

    def __init__(self, cmd: list[str], startup_timeout: float = 10.0) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], startup_timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            pytest.fail(f"{' '.join(cmd)} did not start (first line {line!r}):\n{err}")
        self.host, port = line.removeprefix("listening on ").strip().rsplit(":", 1)
        self.port = int(port)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit status (the sinks must exit 0, promptly)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


@pytest.fixture
def smtp_sink(tmp_path):
    maildir = tmp_path / "mail"
    sink = ListeningProcess(
        [
            tool(SYSTEM_PYTHON),
            str(PLATFORM / "notify" / "smtp_sink.py"),
            "--listen",
            "127.0.0.1:0",
            "--maildir",
            str(maildir),
        ]
    )
    sink.maildir = maildir
    yield sink
    sink.terminate()


@pytest.fixture
def slack_sink(tmp_path):
    out = tmp_path / "notifications" / "slack.jsonl"
    sink = ListeningProcess(
        [tool(SYSTEM_PYTHON), str(PLATFORM / "notify" / "slack_sink.py"), "--listen", "127.0.0.1:0", "--out", str(out)]
    )
    sink.out = out
    yield sink
    sink.terminate()


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Path:
    """prometheus.yml and alertmanager.yml rendered with the default ports."""
    return render(tmp_path_factory.mktemp("rendered"))


def as_cluster_owner(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; the Debian package's `postgres` account runs it then.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture
def cluster():
    """A throw-away PostgreSQL 15 cluster on a free loopback port (trust authentication), stopped afterwards."""
    base = Path(tempfile.mkdtemp(prefix="vigie-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    data, port = base / "data", free_port()
    pg_ctl = tool(str(PG_BIN / "pg_ctl"))
    assert_ok(
        run(
            as_cluster_owner(
                [
                    tool(str(PG_BIN / "initdb")),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "--no-instructions",
                ]
            ),
            timeout=60,
        )
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    assert_ok(
        run(
            as_cluster_owner([pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"]),
            timeout=60,
        )
    )
    try:
        yield {"port": port, "pg_ctl": pg_ctl, "data": data}
    finally:
        run(as_cluster_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), timeout=30)
        shutil.rmtree(base, ignore_errors=True)
