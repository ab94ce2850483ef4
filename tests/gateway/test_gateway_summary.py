"""GET /api/v1/users/{id}/summary: the user and their latest orders, fetched concurrently by the gateway."""

from __future__ import annotations

import uuid

import pytest

from gateway_client import assert_conforms, assert_problem, log_lines, place_order, set_faults, sign_up, wait_for_log


def test_summary_has_the_user_and_their_latest_orders(account):
    placed = [place_order(account, (f"SKU-{i}", 1, 100 * (i + 1))) for i in range(4)]
    reply = account.api.get(f"/api/v1/users/{account.id}/summary?limit=3")
    assert reply.status_code == 200, reply.text
    assert_conforms(reply)
    body = reply.json()
    assert body["user"]["id"] == account.id
    assert body["user"]["email"] == account.email
    assert body["partial"] is False
    assert [o["id"] for o in body["orders"]] == [o["id"] for o in reversed(placed)][:3]  # newest first
    default = account.api.get(f"/api/v1/users/{account.id}/summary").json()
    assert len(default["orders"]) == 4  # SUMMARY_ORDERS defaults to 5


def test_summary_of_someone_else_is_404(api, account):
    other = sign_up(api)
    someone_else = account.api.get(f"/api/v1/users/{other.id}/summary")
    assert_problem(someone_else, 404)
    assert_conforms(someone_else)
    assert_problem(account.api.get(f"/api/v1/users/{uuid.uuid4()}/summary"), 404)
    assert_problem(account.api.get("/api/v1/users/not-an-id/summary"), 404)
    assert_problem(account.api.get(f"/api/v1/users/{account.id}/summary?limit=1000"), 400)
    assert_problem(account.api.get(f"/api/v1/users/{account.id}/summary?other=1"), 400)


def test_summary_is_one_trace_fanning_out_to_both_services(gw, account):
    place_order(account)
    trace_id = uuid.uuid4().hex
    request_id = f"fanout-{uuid.uuid4().hex}"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "X-Request-Id": request_id}
    assert account.api.get(f"/api/v1/users/{account.id}/summary", headers=headers).status_code == 200

    def served(line: dict) -> bool:
        return line.get("http.request.id") == request_id and line.get("message") == "request"

    user_lines = wait_for_log(gw.users, served)
    order_lines = wait_for_log(gw.orders, served)
    assert len(user_lines) == 1 and len(order_lines) == 1, (user_lines, order_lines)
    assert user_lines[0]["trace.id"] == order_lines[0]["trace.id"] == trace_id
    assert user_lines[0]["http.route"] == "/api/v1/users/{id}"
    assert order_lines[0]["http.route"] == "/api/v1/orders"
    gateway_line = list(log_lines(gw.gateway, served))
    assert gateway_line and gateway_line[0]["http.route"] == "/api/v1/users/{id}/summary"


def test_summary_without_the_order_service_is_partial(gw, account):
    for service in gw.orders:
        set_faults(service, error_ratio=1.0)
    try:
        reply = account.api.get(f"/api/v1/users/{account.id}/summary")
        assert reply.status_code == 200, reply.text
        assert_conforms(reply)
        body = reply.json()
        assert body["user"]["id"] == account.id
        assert body["orders"] == []
        assert body["partial"] is True
    finally:
        for service in gw.orders:
            set_faults(service)


@pytest.mark.parametrize("limit", [1, 2])
def test_summary_limit(account, limit):
    for _ in range(3):
        place_order(account)
    body = account.api.get(f"/api/v1/users/{account.id}/summary?limit={limit}").json()
    assert len(body["orders"]) == limit
