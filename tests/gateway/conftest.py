"""System tests of the gateway: a private PostgreSQL, two replicas each of the user and order services, and the
gateway in front of them, all built from source (VIGIE_BUILD_DIR, default build/release), real HTTP on loopback.

Run with the project venv: .cache/venv/bin/pytest tests/gateway. VIGIE_SYSTEST_KEEP=1 keeps the temporary directory
(logs of every process, database) for a post-mortem. test_zero_downtime.py starts its own stack; VIGIE_FULL=1 runs
its long version.
"""

from __future__ import annotations

import pytest

from gateway_client import FIGURES, Account, Api, sign_up
from gateway_stack import ADMIN_EMAIL, GatewayStack


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("vigie gateway figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def gw():
    """The shared stack. Replicas fail readiness 700 ms before they stop listening (SHUTDOWN_DELAY), more than the
    gateway's probe interval (250 ms), so a SIGTERMed replica gets no new request once it closes."""
    stack = GatewayStack(replica_env={"SHUTDOWN_DELAY": "700ms", "FAULTS_ENABLED": "true"})
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def api(gw) -> Api:
    return Api(gw.gateway_url)


@pytest.fixture
def account(api) -> Account:
    return sign_up(api)


@pytest.fixture(scope="session")
def admin_token(gw, api) -> str:
    login = api.with_token(None).post("/api/v1/auth/login", {"email": ADMIN_EMAIL, "password": gw.admin_password})
    assert login.status_code == 200, login.text
    return login.json()["access_token"]
