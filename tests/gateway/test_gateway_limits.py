"""Per-client rate limiting: a token bucket per token subject (or per address when there is no valid token)."""

from __future__ import annotations

import time
import urllib.request

import pytest

from gateway_client import Api, assert_conforms, assert_problem, sign_up


@pytest.fixture(scope="module")
def strict(gw):
    """A second gateway in front of the same replicas, allowing 1 request/s with bursts of 3 per client."""
    gateway = gw.start_gateway(RATE_LIMIT_RPS="1", RATE_LIMIT_BURST="3")
    try:
        yield gateway
    finally:
        gateway.stop()


def test_a_client_over_its_limit_gets_429_with_retry_after(gw, api, strict):
    alice = sign_up(api)
    bob = sign_up(api)
    alice_strict = Api(strict.base_url, alice.token)
    for _ in range(3):
        assert alice_strict.get(f"/api/v1/users/{alice.id}").status_code == 200
    limited = alice_strict.get(f"/api/v1/users/{alice.id}")
    body = assert_problem(limited, 429)
    assert_conforms(limited)
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 2, limited.headers
    assert "rate limit" in body["detail"]
    assert limited.headers["X-Request-Id"]

    # Another user is not affected; the limited one is served again once Retry-After has passed.
    assert Api(strict.base_url, bob.token).get(f"/api/v1/users/{bob.id}").status_code == 200
    time.sleep(retry_after)
    assert alice_strict.get(f"/api/v1/users/{alice.id}").status_code == 200


def test_anonymous_callers_are_limited_by_address(gw, api, strict):
    anonymous = Api(strict.base_url)
    statuses = [
        anonymous.post("/api/v1/auth/login", {"email": "nobody@example.com", "password": "whatever1"}).status_code
        for _ in range(6)
    ]
    assert 429 in statuses, statuses
    assert statuses[0] == 401, statuses  # a wrong password, answered by the user service
    # The shared gateway (generous limits) still serves the same address.
    assert (
        api.with_token(None)
        .post("/api/v1/auth/login", {"email": "nobody@example.com", "password": "whatever1"})
        .status_code
        == 401
    )


def test_rate_limit_metric_counts_refusals(strict):
    with urllib.request.urlopen(strict.admin_url + "/metrics", timeout=2) as response:
        text = response.read().decode()
    line = next(row for row in text.splitlines() if row.startswith("gateway_rate_limited_total{"))
    assert float(line.split()[-1]) >= 2, line
