"""System test of the local platform: deploy/local/vigie-local up / status / down against the real binaries.

The stack under test has its own state directory and its own free ports, so it never touches a developer's running
`make up` stack (var/, default ports). The tests run in file order on one stack: up, checks, a second up that must
change nothing, down, and up again with the data kept; the state directory is purged at the end whatever happens.
Needs the service binaries (VIGIE_BUILD_DIR, default build/release): `make up` or the release build makes them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "system"))
from vigie_stack import local_platform_ports  # noqa: E402 - the system tests' helpers, shared

SCRIPT = REPO / "deploy" / "local" / "vigie-local"
BUILD_DIR = Path(os.environ.get("VIGIE_BUILD_DIR", REPO / "build" / "release"))
PSQL = "/usr/lib/postgresql/15/bin/psql"
COMMAND_TIMEOUT = 240  # seconds; `up` itself gives up after VIGIE_UP_TIMEOUT (90 s by default)


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def process_alive(pid: int) -> bool:
    """True for a live process; a zombie (dead, not yet reaped by init) counts as gone."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


class Stack:
    def __init__(self, state: Path, ports: dict[str, int]) -> None:
        self.state = state
        self.ports = ports
        self.env = {**os.environ, "VIGIE_STATE_DIR": str(state), "VIGIE_BUILD_DIR": str(BUILD_DIR)}
        self.env.update({name: str(port) for name, port in ports.items()})
        self.env["VIGIE_LOADGEN_RATE"] = "2"  # enough to see it run, little CPU
        # The log and trace pipelines (a JVM among them) are tested on their own stack in tests/logging.
        self.env.update({"VIGIE_LOGGING": "off", "VIGIE_TRACING": "off"})
        # Settings from a developer's shell must not reach the stack under test.
        for name in ("DATABASE_URL", "DATABASE_URL_FILE"):
            self.env.pop(name, None)
        self.first_up: subprocess.CompletedProcess[str] | None = None
        self.user_email = f"local-{uuid.uuid4().hex[:12]}@example.com"
        self.user_password = "correct horse battery staple"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"vigie-local {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def supervisor_pids(self) -> dict[str, str]:
        out = subprocess.run(
            ["supervisorctl", "-c", str(self.state / "supervisor" / "supervisord.conf"), "status"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return {m.group(1): m.group(2) for m in re.finditer(r"^(\S+)\s+RUNNING\s+pid (\d+),", out, re.M)}

    def login(self) -> requests.Response:
        return requests.post(
            self.url("VIGIE_USER_PORT", "/api/v1/auth/login"),
            json={"email": self.user_email, "password": self.user_password},
            timeout=10,
        )


@pytest.fixture(scope="module")
def stack():
    for binary in (BUILD_DIR / "services/user/user", BUILD_DIR / "services/order/order"):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is not built (build the release preset or set VIGIE_BUILD_DIR)")
    # Under /tmp rather than pytest's tmp_path: PostgreSQL runs as the postgres user and must traverse the path,
    # and /tmp/pytest-of-root is private to root.
    state = Path(tempfile.mkdtemp(prefix="vigie-local-test-", dir="/tmp"))
    state.chmod(0o755)  # vigie-local adopts an empty directory and marks it as its own
    stack = Stack(state, local_platform_ports())
    try:
        stack.first_up = stack.run("up")
        yield stack
    finally:
        subprocess.run(
            [str(SCRIPT), "down", "--purge", "--yes"],
            env=stack.env,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        shutil.rmtree(state, ignore_errors=True)


def test_bad_arguments_exit_2_with_usage():
    for args in ([], ["sideways"], ["up", "--now"], ["down", "--yes"], ["status", "extra"]):
        result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Usage: deploy/local/vigie-local" in result.stderr, args
    help_text = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=30)
    assert help_text.returncode == 0 and "Usage:" in help_text.stdout


def test_up_reports_every_component_ready(stack: Stack):
    table = stack.first_up.stdout
    for component in (
        "postgres",
        "user",
        "order",
        "prometheus",
        "alertmanager",
        "node-exporter",
        "postgres-exporter",
        "blackbox-exporter",
        "smtp-sink",
        "slack-sink",
        "loadgen",
    ):
        assert re.search(rf"^{re.escape(component)}\s+ready\s", table, re.M), f"{component} not ready in:\n{table}"
    assert f"127.0.0.1:{stack.ports['VIGIE_USER_PORT']}" in table  # the overridden ports, not the defaults
    assert str(stack.state / "secrets" / "admin.password") in table
    assert re.search(r"^Ready in \d+ s\.$", table, re.M)


def test_state_and_secrets_are_private(stack: Stack):
    secrets = stack.state / "secrets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    for name in ("admin.password", "jwt-private.pem", "users_app.url", "orders_owner.password"):
        assert (secrets / name).stat().st_mode & 0o777 == 0o600, name
    assert (stack.state / "postgres" / "PG_VERSION").read_text().strip() == "15"


def test_services_answer_through_their_api(stack: Stack):
    created = requests.post(
        stack.url("VIGIE_USER_PORT", "/api/v1/users"),
        json={"email": stack.user_email, "password": stack.user_password, "name": "Local Test"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    login = stack.login()
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    me = requests.get(
        stack.url("VIGIE_USER_PORT", f"/api/v1/users/{created.json()['id']}"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert me.status_code == 200 and me.json()["email"] == stack.user_email
    order = requests.post(
        stack.url("VIGIE_ORDER_PORT", "/api/v1/orders"),
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
        json={"items": [{"sku": "TEA-1", "quantity": 2, "unit_price_cents": 350}]},
        timeout=10,
    )
    assert order.status_code == 201, order.text
    assert order.json()["total_cents"] == 700
    # The admin account is bootstrapped from the generated secret.
    admin_password = (stack.state / "secrets" / "admin.password").read_text().strip()
    admin = requests.post(
        stack.url("VIGIE_USER_PORT", "/api/v1/auth/login"),
        json={"email": "admin@vigie.local", "password": admin_password},
        timeout=10,
    )
    assert admin.status_code == 200, admin.text


def test_gateway_routes_to_the_services_when_built(stack: Stack):
    if not os.access(BUILD_DIR / "services/gateway/gateway", os.X_OK):
        pytest.skip("the gateway is not built")
    assert re.search(r"^gateway\s+ready\s", stack.first_up.stdout, re.M), stack.first_up.stdout
    login = requests.post(
        stack.url("VIGIE_GATEWAY_PORT", "/api/v1/auth/login"),
        json={"email": stack.user_email, "password": stack.user_password},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    orders = requests.get(
        stack.url("VIGIE_GATEWAY_PORT", "/api/v1/orders"), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert orders.status_code == 200, orders.text


def test_database_roles_have_least_privilege(stack: Stack):
    secrets = stack.state / "secrets"
    port = stack.ports["VIGIE_POSTGRES_PORT"]

    def psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PSQL, url, "-XAtc", sql],
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "5"},
        )

    users_app = (secrets / "users_app.url").read_text().strip()
    assert psql(users_app, "SELECT count(*) >= 0 FROM users").stdout.strip() == "t"
    denied = psql(users_app, "CREATE TABLE intruder (id int)")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    orders_password = (secrets / "orders_app.password").read_text().strip()
    cross = psql(f"postgresql://orders_app:{orders_password}@127.0.0.1:{port}/users", "SELECT 1")
    assert cross.returncode != 0 and "CONNECT privilege" in cross.stderr
    wrong = psql(f"postgresql://users_app:not-the-password@127.0.0.1:{port}/users", "SELECT 1")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_second_up_changes_nothing(stack: Stack):
    conf = stack.state / "supervisor" / "supervisord.conf"
    before_pids = stack.supervisor_pids()
    before_files = {p: p.stat().st_mtime_ns for p in [conf, *(stack.state / "secrets").iterdir()]}
    second = stack.run("up")
    assert stack.supervisor_pids() == before_pids
    assert {p: p.stat().st_mtime_ns for p in before_files} == before_files
    assert sorted((stack.state / "secrets").iterdir()) == sorted(before_files.keys() - {conf})
    assert "starting" not in second.stderr, second.stderr
    assert stack.login().status_code == 200


def test_status_shows_processes_and_prometheus_targets(stack: Stack):
    def seen_up(job: str) -> bool:
        return re.search(rf"^\s+{job}\s+up\s", status.stdout, re.M) is not None

    deadline = time.monotonic() + 60
    while True:
        status = stack.run("status")
        # Prometheus scrapes every few seconds and each target on its own schedule: wait until it has seen both.
        if (seen_up("user") and seen_up("postgres")) or time.monotonic() > deadline:
            break
        time.sleep(2)
    for program in ("postgres", "user", "order", "prometheus", "alertmanager"):
        assert re.search(rf"^{program}\s+RUNNING\s", status.stdout, re.M), status.stdout
    assert "Prometheus targets:" in status.stdout
    assert seen_up("user"), status.stdout
    assert seen_up("postgres"), status.stdout


def test_status_fails_when_a_process_is_stopped(stack: Stack):
    ctl = ["supervisorctl", "-c", str(stack.state / "supervisor" / "supervisord.conf")]
    subprocess.run([*ctl, "stop", "slack-sink"], capture_output=True, timeout=60, check=True)
    try:
        status = stack.run("status", check=False)
        assert status.returncode != 0
        assert re.search(r"^slack-sink\s+STOPPED", status.stdout, re.M), status.stdout
    finally:
        # `up` repairs it: it starts whatever should run and does not.
        stack.run("up")
    assert stack.run("status").returncode == 0


def test_up_recovers_when_supervisord_was_killed(stack: Stack):
    # supervisord dies without stopping its programs: they keep their ports. `up` must stop those orphans (and
    # PostgreSQL) and bring a supervised stack back, with the data.
    pid = int((stack.state / "supervisor" / "supervisord.pid").read_text())
    orphans = set(stack.supervisor_pids().values())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.run("status", check=False).returncode == 3
    recovered = stack.run("up")
    assert "left running without supervisord" in recovered.stderr, recovered.stderr
    assert not orphans & set(stack.supervisor_pids().values())
    assert not [p for p in orphans if process_alive(int(p))]
    assert stack.login().status_code == 200


def test_down_stops_everything_and_up_keeps_the_data(stack: Stack):
    down = stack.run("down")
    assert "stopped" in down.stderr
    still_listening = [name for name, port in stack.ports.items() if listening(port)]
    assert still_listening == []
    assert stack.run("status", check=False).returncode == 3
    assert "nothing running" in stack.run("down").stderr  # down on a stopped stack is fine

    stack.run("up")
    assert stack.login().status_code == 200  # the user created before `down` is still there
