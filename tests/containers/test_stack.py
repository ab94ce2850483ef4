"""Our images running together: a smoke test through the gateway, each service's /metrics and /readyz, the image
metadata, then `docker stop` (SIGTERM): each service drains and exits 0. Tests run in file order: stop is last."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
from conftest import ADMIN_PORTS, SERVICES, VERSION, Stack, docker, inspect

MAX_IMAGE_BYTES = 40 * 1000 * 1000


def test_image_metadata_and_sizes(images):
    sizes = {}
    for service in SERVICES:
        image = inspect(f"vigie/{service}:{VERSION}")
        config = image["Config"]
        sizes[service] = image["Size"]
        assert config["User"] == "65532:65532", f"{service}: runs as {config['User']!r}, expected the nonroot uid"
        assert config["StopSignal"] == "SIGTERM"
        assert config["Healthcheck"]["Test"] == ["CMD", "/usr/local/bin/healthcheck", "/readyz"]
        assert "BIND_ADDRESS=0.0.0.0" in config["Env"]
        labels = config["Labels"]
        assert labels["org.opencontainers.image.version"] == VERSION
        revision = labels["org.opencontainers.image.revision"]
        assert len(revision) == 40 or revision == "unknown", revision
        assert "org.opencontainers.image.source" in labels
    print("\nimage sizes: " + ", ".join(f"vigie/{s} {b / 1e6:.1f} MB" for s, b in sizes.items()))
    for service, size in sizes.items():
        assert size < MAX_IMAGE_BYTES, f"vigie/{service} is {size / 1e6:.1f} MB, expected < 40 MB"


def test_containers_are_hardened(stack):
    for service in SERVICES:
        host = inspect(stack.name(service))["HostConfig"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]


def test_smoke_through_the_gateway(stack, http):
    gw = stack.url("gateway", 8080)
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    r = http.post(f"{gw}/api/v1/users", json={"email": email, "password": "correct horse", "name": "Ada"}, timeout=10)
    assert r.status_code == 201, r.text
    user_id = r.json()["id"]
    r = http.post(f"{gw}/api/v1/auth/login", json={"email": email, "password": "correct horse"}, timeout=10)
    assert r.status_code == 200, r.text
    auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = http.post(
        f"{gw}/api/v1/orders",
        headers={**auth, "Idempotency-Key": "first"},
        timeout=10,
        json={"items": [{"sku": "BOOK-42", "quantity": 2, "unit_price_cents": 1250}]},
    )
    assert r.status_code == 201, r.text
    order_id = r.json()["id"]
    r = http.get(f"{gw}/api/v1/users/{user_id}/summary", headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    summary = r.json()
    assert order_id in json.dumps(summary), summary


def test_metrics_and_readiness(stack, http):
    for service in SERVICES:
        admin = stack.url(service, ADMIN_PORTS[service])
        r = http.get(f"{admin}/readyz", timeout=5)
        assert r.status_code == 200, f"{service} /readyz: {r.status_code} {r.text}"
        r = http.get(f"{admin}/metrics", timeout=5)
        assert r.status_code == 200
        assert "build_info" in r.text and "http_server_requests_total" in r.text, r.text[:500]
    # the API port has no operations endpoints
    assert http.get(f"{stack.url('gateway', 8080)}/metrics", timeout=5).status_code == 404


def order_sender(stack: Stack, http, key: str) -> Callable[[], requests.Response]:
    """Signs a new user up and logs in; returns a call that places one order through the gateway."""
    gw = stack.url("gateway", 8080)
    email = f"drain-{uuid.uuid4().hex[:8]}@example.com"
    http.post(f"{gw}/api/v1/users", json={"email": email, "password": "correct horse", "name": "D"}, timeout=10)
    token = http.post(f"{gw}/api/v1/auth/login", json={"email": email, "password": "correct horse"}, timeout=10).json()[
        "access_token"
    ]
    return lambda: requests.post(
        f"{gw}/api/v1/orders",
        timeout=30,
        json={"items": [{"sku": "B-1", "quantity": 1, "unit_price_cents": 100}]},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
    )


def test_sigterm_drains_and_exits_zero(stack, http):
    """`docker stop` (SIGTERM) on the gateway and the order service while an order is in flight in both: the order
    is still answered 201, then every service logs its drain and exits 0. Stops are in caller order, as a rolling
    stop would be; the order service is held 3 s by its latency switch so the request is in flight for sure."""
    send = order_sender(stack, http, key=f"drain-{uuid.uuid4().hex[:8]}")
    r = http.post(f"{stack.url('order', ADMIN_PORTS['order'])}/admin/faults", json={"latency_ms": 3000}, timeout=5)
    assert r.status_code == 200, r.text
    with ThreadPoolExecutor(max_workers=3) as pool:
        in_flight = pool.submit(send)
        time.sleep(1)  # the request is now waiting in the order service, behind the gateway
        assert not in_flight.done(), "the order was answered before the stop: the latency switch did not hold it"
        stops = [pool.submit(docker, "stop", "-t", "15", stack.name(s), timeout=30) for s in ("gateway", "order")]
        response = in_flight.result(timeout=30)
        for stop in stops:
            stop.result(timeout=30)
    assert response.status_code == 201, f"in-flight order during the stop: {response.status_code} {response.text}"
    docker("stop", "-t", "15", stack.name("user"), timeout=30)
    for service in ("gateway", "order", "user"):
        name = stack.name(service)
        state = inspect(name)["State"]
        logs = docker("logs", name).stdout.splitlines()
        events = [json.loads(line) for line in logs if line.startswith("{")]
        messages = [e.get("message") for e in events]
        assert state["ExitCode"] == 0, f"{service} exited {state['ExitCode']} (OOMKilled={state['OOMKilled']})"
        assert "signal received, draining" in messages, messages[-5:]
        stopped = [e for e in events if e.get("message") == "stopped"]
        assert stopped and stopped[-1].get("requests.unfinished") == 0, stopped
