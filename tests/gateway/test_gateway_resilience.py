"""Replicas failing under the gateway: retries, per-attempt timeouts, circuit breakers, a whole upstream down."""

from __future__ import annotations

import signal
import threading
import time
import urllib.error
import urllib.request
import uuid

import requests

from gateway_client import Api, assert_problem, place_order, replica_requests, set_faults
from gateway_stack import restart


def gateway_ready(gw) -> int:
    try:
        with urllib.request.urlopen(gw.gateway.admin_url + "/readyz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


class Load:
    """Threads reading (and, with `writes`, placing orders with an Idempotency-Key) through the gateway."""

    def __init__(self, account, threads: int = 3, writes: bool = False):
        self.account = account
        self.writes = writes
        self.sent = 0
        self.failures: list[str] = []
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        api = Api(self.account.api.base_url, self.account.token)
        n = 0
        while not self.stop_event.is_set():
            n += 1
            try:
                if self.writes and n % 3 == 0:
                    body = {"items": [{"sku": "SKU-L", "quantity": 1, "unit_price_cents": 100}]}
                    reply = api.post("/api/v1/orders", body, headers={"Idempotency-Key": str(uuid.uuid4())})
                    ok = reply.status_code == 201
                elif n % 3 == 1:
                    reply = api.get(f"/api/v1/users/{self.account.id}")
                    ok = reply.status_code == 200
                else:
                    reply = api.get("/api/v1/orders?limit=5")
                    ok = reply.status_code == 200
                outcome = (
                    None
                    if ok
                    else f"{reply.request.method} {reply.request.path_url}: {reply.status_code} {reply.text[:200]}"
                )
            except requests.RequestException as e:
                outcome = f"no answer: {e}"
            with self.lock:
                self.sent += 1
                if outcome:
                    self.failures.append(outcome)
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=15)


def test_killed_replicas_cost_no_request(gw, account):
    """SIGKILL (no drain, keep-alive connections cut) on a user and then an order replica under load: reads are
    retried on the other replica, order creations too thanks to their Idempotency-Key."""
    with Load(account, writes=True) as load:
        time.sleep(0.5)
        for service in (gw.users[0], gw.orders[1]):
            service.stop(signal.SIGKILL)
            time.sleep(1.0)  # the gateway notices (refused connection, failed probe) and routes around
            service.start()
            gw.wait_healthy_at_gateway(service)
        time.sleep(0.5)
    assert load.sent > 50, load.sent
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}"


def test_a_slow_replica_is_abandoned_after_the_attempt_timeout(gw, account):
    set_faults(gw.users[0], latency_ms=3000)
    try:
        for _ in range(6):
            started = time.monotonic()
            reply = account.api.get(f"/api/v1/users/{account.id}")
            assert reply.status_code == 200, reply.text
            assert time.monotonic() - started < 1.8  # one 1 s attempt at most, then the other replica
    finally:
        set_faults(gw.users[0])


def test_breakers_open_on_failing_replicas_then_recover(gw, account):
    for service in gw.orders:
        set_faults(service, error_ratio=1.0)
    try:
        statuses = [account.api.get("/api/v1/orders").status_code for _ in range(12)]
        assert statuses[0] == 500, statuses  # the replicas' own failures, passed on
        assert statuses[-1] == 503, statuses  # both circuits open: refused at the gateway
        before = sum(replica_requests(s) for s in gw.orders)
        started = time.monotonic()
        refused = account.api.get("/api/v1/orders")
        assert time.monotonic() - started < 0.2
        assert_problem(refused, 503)
        assert refused.headers["Retry-After"] == "1"
        assert sum(replica_requests(s) for s in gw.orders) == before, "an open circuit must not reach the replica"
    finally:
        for service in gw.orders:
            set_faults(service)
    # Half-open probes after BREAKER_OPEN_DURATION (2 s) close the circuits again.
    deadline = time.monotonic() + 8
    while account.api.get("/api/v1/orders").status_code != 200:
        assert time.monotonic() < deadline, "the circuits did not close after the replicas recovered"
        time.sleep(0.2)
    place_order(account)


def test_a_whole_upstream_down_is_503_fast_and_recovers(gw, account):
    for service in gw.orders:
        service.stop(signal.SIGTERM)
    try:
        started = time.monotonic()
        refused = account.api.get("/api/v1/orders")
        assert time.monotonic() - started < 0.5
        assert_problem(refused, 503)
        assert refused.headers["Retry-After"] == "1"
        # The rest of the API is unaffected; the gateway says it is not ready.
        assert account.api.get(f"/api/v1/users/{account.id}").status_code == 200
        deadline = time.monotonic() + 3
        while gateway_ready(gw) != 503:
            assert time.monotonic() < deadline, "the gateway stayed ready without any order replica"
            time.sleep(0.05)
    finally:
        for service in gw.orders:
            service.start()
            gw.wait_healthy_at_gateway(service)
    assert account.api.get("/api/v1/orders").status_code == 200
    assert gateway_ready(gw) == 200


def test_sigterm_restarts_under_load_cost_no_request(gw, account):
    with Load(account, writes=True) as load:
        time.sleep(0.3)
        for service in (gw.users[1], gw.orders[0]):
            restart(gw, service)
        time.sleep(0.3)
    assert load.failures == [], f"{len(load.failures)} of {load.sent} failed: {load.failures[:5]}"
