"""System tests of the user and order services: a private PostgreSQL, both services built from source, real HTTP.

Run with the project venv: .cache/venv/bin/pytest tests/system (build first: cmake --preset release && cmake --build
--preset release -j2; VIGIE_BUILD_DIR picks another build). VIGIE_SYSTEST_KEEP=1 keeps the temporary directory
(logs, database) for a post-mortem. Every response a test receives is checked against docs/api/openapi.yaml.
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from dataclasses import dataclass

import pytest
from vigie_stack import ADMIN_EMAIL, PsqlSession, Stack

from vigie_api import ApiClient, Spec, order_body

# Figures measured while the session's stack starts, printed in the terminal summary.
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("vigie service figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def spec() -> Spec:
    return Spec()


@pytest.fixture(scope="session")
def stack():
    stack = Stack()
    try:
        stack.start()
        for service in (stack.user, stack.order):
            FIGURES[f"{service.name} start to ready"] = f"{service.startup_seconds * 1000:.0f} ms"
            FIGURES[f"{service.name} idle RSS"] = f"{service.idle_rss_kib / 1024:.1f} MiB"
        yield stack
    finally:
        problems = stack.close()
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def users_api(stack, spec) -> ApiClient:
    return ApiClient(stack.user.base_url, spec)


@pytest.fixture(scope="session")
def orders_api(stack, spec) -> ApiClient:
    return ApiClient(stack.order.base_url, spec)


@pytest.fixture(scope="session")
def admin_token(stack, users_api) -> str:
    reply = users_api.post("/api/v1/auth/login", {"email": ADMIN_EMAIL, "password": stack.admin_password})
    assert reply.status == 200, reply
    return reply.json()["access_token"]


@pytest.fixture(scope="session")
def admin(users_api, orders_api, admin_token) -> Account:
    me = users_api.with_token(admin_token)
    return Account(
        id=_subject(admin_token),
        email=ADMIN_EMAIL,
        password="",
        name="Administrator",
        token=admin_token,
        users=me,
        orders=orders_api.with_token(admin_token),
    )


class Db:
    """Direct reads of the services' databases (as the superuser), to check what was and was not persisted."""

    def __init__(self, stack: Stack):
        self.sessions = {name: PsqlSession(stack.pg, name) for name in ("users", "orders")}

    def value(self, dbname: str, sql: str) -> str:
        return self.sessions[dbname].query(sql)

    def count(self, dbname: str, table: str) -> int:
        return int(self.value(dbname, f"SELECT count(*) FROM {table}"))

    def counts(self) -> tuple[int, int]:
        """(users, orders) row counts."""
        return self.count("users", "users"), self.count("orders", "orders")

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


@pytest.fixture(scope="session")
def db(stack):
    db = Db(stack)
    yield db
    db.close()


@dataclass
class Account:
    id: str
    email: str
    password: str
    name: str
    token: str
    users: ApiClient  # the user service, with this account's token
    orders: ApiClient  # the order service, with this account's token


_serial = itertools.count()


def _subject(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


@pytest.fixture(scope="session")
def make_account(users_api, orders_api):
    """Signs a new user up and logs them in; returns an Account."""

    def make(name: str = "Test User") -> Account:
        email = f"user{next(_serial)}-{uuid.uuid4().hex[:8]}@example.com"
        password = "correct horse battery"
        created = users_api.post("/api/v1/users", {"email": email, "password": password, "name": name})
        assert created.status == 201, created
        login = users_api.post("/api/v1/auth/login", {"email": email, "password": password})
        assert login.status == 200, login
        token = login.json()["access_token"]
        return Account(
            id=created.json()["id"],
            email=email,
            password=password,
            name=name,
            token=token,
            users=users_api.with_token(token),
            orders=orders_api.with_token(token),
        )

    return make


@pytest.fixture
def account(make_account) -> Account:
    return make_account()


@pytest.fixture(scope="session")
def place_order():
    """Places an order for an account with a fresh Idempotency-Key; returns the order."""

    def place(who: Account, *items: tuple[str, int, int]) -> dict:
        body = order_body(*(items or (("SKU-1", 2, 150),)))
        reply = who.orders.post("/api/v1/orders", body, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert reply.status == 201, reply
        return reply.json()

    return place
