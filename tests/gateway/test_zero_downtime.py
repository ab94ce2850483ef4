"""Zero-downtime restarts: two replicas each of the user and order services behind the gateway, a steady load of
reads and writes through the gateway, and every replica restarted in turn (SIGTERM, wait for its exit, start it
again, wait until the gateway routes to it). Not one request may fail, and every order acknowledged must be stored
exactly once.

The replicas fail readiness SHUTDOWN_DELAY (2 s) before they stop listening; the gateway probes readiness every
second, so it has stopped sending them new requests by then. Requests already in flight are drained.

Short by default (every replica restarted once, at least 20 s of load). VIGIE_FULL=1 runs the full version (three
rounds of restarts, at least 120 s of load); VIGIE_ZDT_ROUNDS and VIGIE_ZDT_SECONDS set either directly.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from gateway_client import FIGURES, Api, place_order, replica_requests, sign_up
from gateway_stack import GatewayStack, restart

FULL = os.environ.get("VIGIE_FULL") == "1"
ROUNDS = int(os.environ.get("VIGIE_ZDT_ROUNDS", "3" if FULL else "1"))
MIN_SECONDS = float(os.environ.get("VIGIE_ZDT_SECONDS", "120" if FULL else "20"))
THREADS = 4
RATE_PER_THREAD = 40  # requests per second per thread, at most: ~160 req/s in all, loopback only


@pytest.fixture(scope="module")
def zdt():
    stack = GatewayStack(
        replica_env={"SHUTDOWN_DELAY": "2s", "SHUTDOWN_TIMEOUT": "10s", "LOG_LEVEL": "warn"},
        gateway_env={"HEALTH_CHECK_INTERVAL": "1s", "HEALTH_CHECK_TIMEOUT": "500ms", "LOG_LEVEL": "warn"},
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


@dataclass
class Load:
    """Closed-loop workers, each on its own keep-alive session; no client-side retry: a failure is a failure."""

    base_url: str
    accounts: list
    sent: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # Idempotency-Key -> order id
    latencies: list[float] = field(default_factory=list)
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worker(self, index: int) -> None:
        account = self.accounts[index % len(self.accounts)]
        api = Api(self.base_url, account.token)
        period = 1.0 / RATE_PER_THREAD
        n = 0
        while not self.stop_event.is_set():
            started = time.monotonic()
            n += 1
            kind, key = ("read-user", None)
            try:
                if n % 4 == 0:
                    kind, key = "create-order", str(uuid.uuid4())
                    body = {"items": [{"sku": f"ZDT-{n % 7}", "quantity": 1 + n % 3, "unit_price_cents": 199}]}
                    reply = api.post("/api/v1/orders", body, headers={"Idempotency-Key": key})
                    expected = 201
                elif n % 4 == 1:
                    reply = api.get(f"/api/v1/users/{account.id}")
                    expected = 200
                elif n % 4 == 2:
                    kind = "list-orders"
                    reply = api.get("/api/v1/orders?limit=10")
                    expected = 200
                else:
                    kind = "summary"
                    reply = api.get(f"/api/v1/users/{account.id}/summary")
                    expected = 200
                    if reply.status_code == 200 and reply.json().get("partial"):
                        expected = -1  # a summary without its orders is a degraded answer: count it as failed
                failure = None if reply.status_code == expected else f"{kind}: {reply.status_code} {reply.text[:300]}"
                if failure is None and key is not None:
                    order_id = reply.json()["id"]
            except requests.RequestException as e:
                failure = f"{kind}: no answer: {e}"
            elapsed = time.monotonic() - started
            with self.lock:
                self.sent[kind] += 1
                self.latencies.append(elapsed)
                if failure:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {failure}")
                elif key is not None:
                    self.created[key] = order_id
            time.sleep(max(0.0, period - elapsed))

    def run(self):
        threads = [threading.Thread(target=self.worker, args=(i,), daemon=True) for i in range(THREADS)]
        for t in threads:
            t.start()
        return threads


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


def test_restarting_every_replica_under_load_fails_no_request(zdt: GatewayStack):
    api = Api(zdt.gateway_url)
    accounts = [sign_up(api, f"ZDT {i}") for i in range(THREADS)]
    for account in accounts:
        place_order(account)
    orders_before = int(zdt.pg.psql("SELECT count(*) FROM orders", dbname="orders"))

    load = Load(zdt.gateway_url, accounts)
    started = time.monotonic()
    threads = load.run()
    restarts: list[str] = []
    try:
        time.sleep(2)
        for _ in range(ROUNDS):
            for service in [*zdt.users, *zdt.orders]:
                away = restart(zdt, service)
                restarts.append(f"{service.name}:{service.http_port} away {away:.1f}s")
                time.sleep(1)
        while time.monotonic() - started < MIN_SECONDS:
            time.sleep(0.2)
    finally:
        load.stop_event.set()
        for t in threads:
            t.join(timeout=30)
    duration = time.monotonic() - started

    total = sum(load.sent.values())
    label = "full" if FULL else "short"
    FIGURES[f"zero-downtime ({label})"] = (
        f"{total} requests sent, {len(load.failures)} failed, in {duration:.0f} s ({total / duration:.0f} req/s); "
        f"{len(restarts)} replica restarts; p50 {percentile(load.latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(load.latencies, 0.99) * 1000:.1f} ms, max {max(load.latencies) * 1000:.0f} ms; "
        f"mix {dict(load.sent)}"
    )
    print(f"\nzero-downtime ({label}): {FIGURES[f'zero-downtime ({label})']}")

    assert len(restarts) == ROUNDS * 4, restarts
    assert total > 500, load.sent
    assert load.failures == [], f"{len(load.failures)} of {total} requests failed:\n" + "\n".join(load.failures[:20])
    # Every acknowledged order is stored, once: its id is distinct, and the table grew by exactly that many rows.
    assert len(set(load.created.values())) == len(load.created)
    orders_after = int(zdt.pg.psql("SELECT count(*) FROM orders", dbname="orders"))
    assert orders_after - orders_before == len(load.created), (orders_before, orders_after, len(load.created))
    # The restarted replicas took traffic again.
    for service in [*zdt.users, *zdt.orders]:
        assert replica_requests(service) > 0, f"{service.name}:{service.http_port} served nothing after its restart"
