"""Routing through the gateway: paths unchanged, balanced over replicas, request ids and trace context carried."""

from __future__ import annotations

import re
import uuid

from gateway_client import assert_problem, place_order, replica_requests, wait_for_log

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_every_api_reaches_its_service_unchanged(gw, account):
    me = account.api.get(f"/api/v1/users/{account.id}")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == account.email
    order = place_order(account, ("SKU-R", 2, 250))
    assert order["total_cents"] == 500
    listed = account.api.get(f"/api/v1/orders?user_id={account.id}&limit=1")
    assert listed.status_code == 200, listed.text
    assert [o["id"] for o in listed.json()["items"]] == [order["id"]]
    fetched = account.api.get(f"/api/v1/orders/{order['id']}")
    assert fetched.status_code == 200 and fetched.json()["id"] == order["id"]
    paid = account.api.post(f"/api/v1/orders/{order['id']}/status", {"status": "paid"})
    assert paid.status_code == 200 and paid.json()["status"] == "paid", paid.text
    # Upstream refusals pass through as they are.
    assert_problem(account.api.get(f"/api/v1/orders/{uuid.uuid4()}"), 404)
    assert_problem(account.api.post("/api/v1/orders", {"items": []}, headers={"Idempotency-Key": "k-empty"}), 400)


def test_requests_are_spread_over_the_replicas(gw, account):
    before = [replica_requests(s) for s in gw.users]
    for _ in range(40):
        assert account.api.get(f"/api/v1/users/{account.id}").status_code == 200
    served = [replica_requests(s) - b for s, b in zip(gw.users, before, strict=True)]
    assert sum(served) >= 40, served
    assert min(served) >= 10, f"one replica took almost everything: {served}"


def test_unknown_routes_and_methods_are_answered_at_the_edge(gw, account):
    before = sum(replica_requests(s) for s in gw.users + gw.orders)
    assert_problem(account.api.get("/api/v1/nothing"), 404)
    assert_problem(account.api.get(f"/api/v1/users/{account.id}/secrets"), 404)
    assert_problem(account.api.get("/metrics"), 404)  # operations endpoints are never public
    wrong = account.api.request("PUT", "/api/v1/orders")
    assert_problem(wrong, 405)
    assert wrong.headers["Allow"] == "POST, GET"
    assert sum(replica_requests(s) for s in gw.users + gw.orders) == before


def test_request_id_is_generated_kept_and_forwarded(gw, account):
    generated = account.api.get(f"/api/v1/users/{account.id}")
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-Id"])
    chosen = f"test-{uuid.uuid4().hex}"
    kept = account.api.get(f"/api/v1/users/{account.id}", headers={"X-Request-Id": chosen})
    assert kept.headers["X-Request-Id"] == chosen
    # The replica that served it logged the same id.
    lines = wait_for_log(
        gw.users, lambda line: line.get("http.request.id") == chosen and line.get("message") == "request"
    )
    assert len(lines) == 1, lines
    assert lines[0]["url.path"] == f"/api/v1/users/{account.id}"


def test_trace_context_is_propagated(gw, account):
    parent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    chosen = f"trace-{uuid.uuid4().hex}"
    reply = account.api.get(f"/api/v1/users/{account.id}", headers={"traceparent": parent, "X-Request-Id": chosen})
    assert reply.status_code == 200
    gateway_line = wait_for_log([gw.gateway], lambda line: line.get("http.request.id") == chosen)
    upstream_line = wait_for_log(gw.users, lambda line: line.get("http.request.id") == chosen)
    assert gateway_line and upstream_line
    assert gateway_line[0]["trace.id"] == TRACE_ID
    assert upstream_line[0]["trace.id"] == TRACE_ID
    # Each hop has its own span: the replica's server span is a child of the gateway's client span, not of the
    # caller's span.
    assert upstream_line[0]["span.id"] != gateway_line[0]["span.id"] != "00f067aa0ba902b7"


def test_hop_by_hop_headers_stay_on_their_hop(gw, account):
    reply = account.api.get(
        f"/api/v1/users/{account.id}", headers={"Connection": "keep-alive, X-Hop", "X-Hop": "1", "Upgrade": "websocket"}
    )
    assert reply.status_code == 200
    assert "Upgrade" not in reply.headers
    assert reply.headers.get("Connection", "keep-alive").lower() == "keep-alive"
