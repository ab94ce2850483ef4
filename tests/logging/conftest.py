"""Centralised logs: a real OpenSearch 2.19 for the session, the index template, the retention job.

Run with the project venv: .cache/venv/bin/pytest tests/logging. Needs JDK 17 and Maven (tools/install-deps.sh);
the first run resolves OpenSearch from Maven Central into ~/.cache/vigie/opensearch (about 40 s), later runs start
from the cache. One OpenSearch serves the whole session (about 20 s to green on 2 busy cores); it is stopped with
SIGTERM at the end and must close its node cleanly. VIGIE_LOGGING_KEEP=1 keeps its directory for a post-mortem.

Fixtures for any test module here: `opensearch` (the running server: url, request(), index helpers) and
`logs_template` (opensearch with the vigie-logs index template installed by opensearch_admin.py setup).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "system"))
from vigie_stack import free_opensearch_port  # noqa: E402 - the system tests' helpers, shared

OPENSEARCH_SH = REPO / "tools" / "opensearch.sh"
ADMIN = REPO / "platform" / "logging" / "opensearch_admin.py"
TEMPLATE = REPO / "platform" / "logging" / "opensearch" / "vigie-logs-template.json"

# Figures measured while the session's OpenSearch starts and stops, printed in the terminal summary.
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("vigie logging figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


def run(cmd: list[str], timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def admin(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs platform/logging/opensearch_admin.py with this interpreter (it is stdlib only)."""
    return run([sys.executable, str(ADMIN), *args], timeout=timeout)


def json_lines(text: str) -> list[dict]:
    """stdout of opensearch_admin.py: every line must be a JSON object."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line on stdout: {line!r}")
    return lines


@pytest.fixture(scope="module")
def opensearch_http_port() -> int:
    """A free HTTP port the OpenSearch runner accepts, its transport port (+100) free too."""
    return free_opensearch_port()


@pytest.fixture
def figures() -> dict[str, str]:
    """Where a test records a measured figure for the terminal summary."""
    return FIGURES


def closed_port() -> int:
    """A port where nothing listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class OpenSearch:
    home: Path
    http_port: int
    transport_port: int
    log: Path
    proc: subprocess.Popen | None = None
    start_seconds: float = 0.0
    _log_file: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(self, method: str, path: str, body: object | None = None, timeout: float = 30) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        return status, json.loads(text) if text else None

    def ok(self, method: str, path: str, body: object | None = None) -> object:
        status, reply = self.request(method, path, body)
        assert status == 200, f"{method} {path}: expected 200, got {status}: {reply}"
        return reply

    def indices(self, pattern: str = "*") -> set[str]:
        status, reply = self.request("GET", f"/_cat/indices/{pattern}?format=json&h=index&expand_wildcards=all")
        assert status == 200, reply
        return {row["index"] for row in reply}

    def create_index(self, name: str) -> None:
        status, reply = self.request("PUT", f"/{name}")
        assert status == 200, f"PUT /{name}: {status} {reply}"

    def delete_indices(self, names) -> None:
        for name in names:
            status, reply = self.request("DELETE", f"/{name}")
            assert status in (200, 404), f"DELETE /{name}: {status} {reply}"

    def health(self, timeout: float = 2) -> str | None:
        try:
            status, reply = self.request("GET", "/_cluster/health", timeout=timeout)
        except (OSError, ValueError):
            return None
        return reply.get("status") if status == 200 else None

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def start(self, timeout: float = 180) -> None:
        self._log_file = open(self.log, "ab")
        started = time.monotonic()
        # tools/opensearch.sh execs java: this pid is the JVM's, and SIGTERM goes straight to it.
        self.proc = subprocess.Popen(
            [
                str(OPENSEARCH_SH),
                "run",
                "--home",
                str(self.home),
                "--http-port",
                str(self.http_port),
                "--transport-port",
                str(self.transport_port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = started + timeout
        while self.health() != "green":
            if self.proc.poll() is not None:
                pytest.fail(
                    f"OpenSearch exited with status {self.proc.returncode} before it was green:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"OpenSearch was not green after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.25)
        self.start_seconds = time.monotonic() - started

    def stop(self, timeout: float = 60) -> list[str]:
        """SIGTERM, then what went wrong: not exiting in time, or not closing the node cleanly."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is not None:
            problems.append(f"OpenSearch had already exited with status {self.proc.returncode}")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout)
                # The JVM exits with 128 + SIGTERM once its shutdown hooks (the runner's node close) are done.
                if status != 128 + signal.SIGTERM:
                    problems.append(f"OpenSearch exited with status {status} after SIGTERM, expected 143")
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append(f"OpenSearch did not exit within {timeout} s of SIGTERM (killed)")
        self._log_file.close()
        if "Closed all nodes." not in self.log_tail(20000):
            problems.append(f"OpenSearch did not log that it closed its node:\n{self.log_tail()}")
        return problems


@pytest.fixture(scope="session")
def opensearch():
    """A real single-node OpenSearch 2.19 on free ports in a temporary directory, green, for the session."""
    installed = run([str(OPENSEARCH_SH), "install"], timeout=900)
    assert installed.returncode == 0, f"tools/opensearch.sh install failed:\n{installed.stderr}"
    home = Path(tempfile.mkdtemp(prefix="vigie-opensearch-"))
    port = free_opensearch_port()
    server = OpenSearch(home=home / "home", http_port=port, transport_port=port + 100, log=home / "opensearch.log")
    try:
        server.start()
        FIGURES["OpenSearch start to green"] = f"{server.start_seconds:.1f} s"
        FIGURES["OpenSearch RSS when green"] = f"{server.rss_kib() / 1024:.0f} MiB"
        yield server
        FIGURES["OpenSearch RSS at the end"] = f"{server.rss_kib() / 1024:.0f} MiB"
    finally:
        problems = server.stop()
        if os.environ.get("VIGIE_LOGGING_KEEP") == "1":
            print(f"\nOpenSearch directory kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def logs_template(opensearch) -> OpenSearch:
    """The session's OpenSearch with the vigie-logs index template installed by `opensearch_admin.py setup`."""
    result = admin("setup", "--url", opensearch.url, "--wait", "30")
    assert result.returncode == 0, (
        f"setup exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return opensearch
