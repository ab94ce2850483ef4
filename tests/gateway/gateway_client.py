"""HTTP helpers of the gateway system tests: a keep-alive client, accounts made through the gateway, problem checks."""

from __future__ import annotations

import base64
import functools
import itertools
import json
import re
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from werkzeug.datastructures import Headers

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "system"))
from vigie_api import Reply, Spec  # noqa: E402 - the system tests' OpenAPI checker, shared

PROBLEM_JSON = "application/problem+json"

# Figures measured by the tests (zero-downtime counts), printed in the terminal summary by conftest.py.
FIGURES: dict[str, str] = {}


class Api:
    """A keep-alive HTTP client for one base URL, with an optional bearer token."""

    def __init__(self, base_url: str, token: str | None = None, session: requests.Session | None = None):
        self.base_url = base_url
        self.token = token
        self.session = session or requests.Session()

    def with_token(self, token: str | None) -> Api:
        return Api(self.base_url, token, self.session)

    def request(
        self,
        method: str,
        target: str,
        *,
        json_body=None,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
        **kw,
    ) -> requests.Response:
        headers = dict(headers or {})
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.session.request(
            method, self.base_url + target, json=json_body, headers=headers, timeout=timeout, **kw
        )

    def get(self, target: str, **kw) -> requests.Response:
        return self.request("GET", target, **kw)

    def post(self, target: str, body=None, **kw) -> requests.Response:
        return self.request("POST", target, json_body=body, **kw)


@functools.cache
def spec() -> Spec:
    return Spec()


def assert_conforms(reply: requests.Response) -> None:
    """The reply is one docs/api/openapi.yaml describes for its method and path (status, headers, body schema)."""
    split = urlsplit(reply.request.url)
    target = split.path + (f"?{split.query}" if split.query else "")
    spec().check(
        reply.request.method,
        target,
        Reply(reply.status_code, Headers(list(reply.headers.items())), reply.content, reply.request.method, target),
    )


def assert_problem(reply: requests.Response, status: int) -> dict:
    """The reply is an RFC 7807 problem document with this status (in the status line and the body)."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers.get("Content-Type", "").startswith(PROBLEM_JSON), reply.headers
    body = reply.json()
    assert body["status"] == status, body
    assert body.get("title") and body.get("detail"), body
    return body


@dataclass
class Account:
    id: str
    email: str
    password: str
    token: str
    api: Api  # the gateway, with this account's token


_serial = itertools.count()


def subject_of(token: str) -> str:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


def sign_up(api: Api, name: str = "Gateway User") -> Account:
    """Signs a new user up and logs them in, through the gateway."""
    email = f"gw{next(_serial)}-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery"
    created = api.with_token(None).post("/api/v1/users", {"email": email, "password": password, "name": name})
    assert created.status_code == 201, created.text
    login = api.with_token(None).post("/api/v1/auth/login", {"email": email, "password": password})
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    return Account(created.json()["id"], email, password, token, Api(api.base_url, token))


def place_order(who: Account, *items: tuple[str, int, int], key: str | None = None) -> dict:
    body = {"items": [{"sku": s, "quantity": q, "unit_price_cents": p} for s, q, p in (items or (("SKU-1", 1, 100),))]}
    reply = who.api.post("/api/v1/orders", body, headers={"Idempotency-Key": key or str(uuid.uuid4())})
    assert reply.status_code == 201, reply.text
    return reply.json()


def replica_requests(service) -> int:
    """Requests a replica served on its API (its own http_server_requests_total, every route and status)."""
    with urllib.request.urlopen(service.admin_url + "/metrics", timeout=2) as response:
        text = response.read().decode()
    return int(sum(float(v) for v in re.findall(r"^http_server_requests_total\{.*\} (\S+)$", text, re.MULTILINE)))


def log_lines(service, predicate) -> list[dict]:
    """JSON log lines of a replica (its whole log file, restarts included) that satisfy `predicate`."""
    lines = []
    for raw in service.log_path.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if predicate(line):
            lines.append(line)
    return lines


def wait_for_log(services, predicate, timeout: float = 3) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for s in services for line in log_lines(s, predicate)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def set_faults(service, **faults) -> None:
    """POST /admin/faults on a replica's admin listener; no argument clears every fault."""
    if faults:
        data = requests.post(service.admin_url + "/admin/faults", json=faults, timeout=5)
    else:
        data = requests.delete(service.admin_url + "/admin/faults", timeout=5)
    assert data.status_code == 200, data.text
