"""The order service's API: idempotent creation, reading, listing, the status machine, isolation between users."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from vigie_stack import free_port

from vigie_api import ApiClient, order_body

STATUS_MOVES = {
    # from → {to: allowed}
    "pending": {"pending": False, "paid": True, "shipped": False, "cancelled": True},
    "paid": {"pending": False, "paid": False, "shipped": True, "cancelled": True},
    "shipped": {"pending": False, "paid": False, "shipped": False, "cancelled": False},
    "cancelled": {"pending": False, "paid": False, "shipped": False, "cancelled": False},
}
# How to bring a fresh (pending) order to each status.
PATH_TO = {"pending": [], "paid": ["paid"], "shipped": ["paid", "shipped"], "cancelled": ["cancelled"]}


def test_create_an_order(account, db):
    key = str(uuid.uuid4())
    reply = account.orders.post(
        "/api/v1/orders", order_body(("BOOK-1", 2, 1250), ("PEN.blue", 3, 99)), headers={"Idempotency-Key": key}
    )
    assert reply.status == 201, reply
    order = reply.json()
    assert order["user_id"] == account.id and order["status"] == "pending"
    assert order["total_cents"] == 2 * 1250 + 3 * 99
    assert order["items"] == order_body(("BOOK-1", 2, 1250), ("PEN.blue", 3, 99))["items"]
    assert reply.header("Location") == f"/api/v1/orders/{order['id']}"
    assert reply.header("Idempotent-Replayed") is None
    assert db.value("orders", f"SELECT idempotency_key FROM orders WHERE id = '{order['id']}'") == key


def test_the_same_key_replays_the_same_order(account, db):
    key = str(uuid.uuid4())
    body = order_body(("A", 1, 100))
    first = account.orders.post("/api/v1/orders", body, headers={"Idempotency-Key": key})
    again = account.orders.post("/api/v1/orders", body, headers={"Idempotency-Key": key})
    assert first.status == again.status == 201
    assert again.json() == first.json()
    assert again.header("Idempotent-Replayed") == "true"
    assert db.value("orders", f"SELECT count(*) FROM orders WHERE idempotency_key = '{key}'") == "1"


def test_the_same_key_with_another_body_is_refused(account, db):
    key = str(uuid.uuid4())
    assert (
        account.orders.post("/api/v1/orders", order_body(("A", 1, 100)), headers={"Idempotency-Key": key}).status == 201
    )
    before = db.count("orders", "orders")
    reply = account.orders.post("/api/v1/orders", order_body(("A", 2, 100)), headers={"Idempotency-Key": key})
    assert reply.status == 422, reply
    assert db.count("orders", "orders") == before


def test_concurrent_requests_with_one_key_create_one_order(account, db):
    key = str(uuid.uuid4())
    body = order_body(("RACE", 1, 1))

    def place(_):
        client = account.orders.with_token(account.token)  # one connection per thread
        return client.post("/api/v1/orders", body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(place, range(8)))
    assert all(r.status == 201 for r in replies), replies
    assert len({r.json()["id"] for r in replies}) == 1
    assert sum(r.header("Idempotent-Replayed") is None for r in replies) == 1
    assert db.value("orders", f"SELECT count(*) FROM orders WHERE idempotency_key = '{key}'") == "1"


def test_keys_are_scoped_to_the_user(make_account):
    alice, bob = make_account(), make_account()
    key = str(uuid.uuid4())
    a = alice.orders.post("/api/v1/orders", order_body(("A", 1, 1)), headers={"Idempotency-Key": key})
    b = bob.orders.post("/api/v1/orders", order_body(("A", 1, 1)), headers={"Idempotency-Key": key})
    assert a.status == b.status == 201
    assert a.json()["id"] != b.json()["id"] and b.json()["user_id"] == bob.id


def test_get_an_order(account, place_order):
    order = place_order(account)
    reply = account.orders.get(f"/api/v1/orders/{order['id']}")
    assert reply.status == 200 and reply.json() == order


def test_unknown_and_malformed_order_ids_are_not_found(account):
    assert account.orders.get(f"/api/v1/orders/{uuid.uuid4()}").status == 404
    assert account.orders.get("/api/v1/orders/not-a-uuid").status == 404
    assert account.orders.post(f"/api/v1/orders/{uuid.uuid4()}/status", {"status": "paid"}).status == 404


def test_list_own_orders_newest_first_page_by_page(account, place_order):
    placed = [place_order(account, (f"SKU-{i}", 1, i))["id"] for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        target = "/api/v1/orders?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = account.orders.get(target)
        assert page.status == 200, page
        body = page.json()
        assert len(body["items"]) <= 2
        assert all(o["user_id"] == account.id for o in body["items"])
        seen += [o["id"] for o in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(placed))
    assert account.orders.get(f"/api/v1/orders?user_id={account.id}&limit=100").json()["items"][0]["id"] == placed[-1]


def test_a_user_cannot_reach_another_users_orders(make_account, place_order):
    alice, bob = make_account(), make_account()
    order = place_order(bob)
    assert alice.orders.get(f"/api/v1/orders/{order['id']}").status == 404
    assert alice.orders.post(f"/api/v1/orders/{order['id']}/status", {"status": "cancelled"}).status == 404
    assert alice.orders.get(f"/api/v1/orders?user_id={bob.id}").status == 403
    assert order["id"] not in [o["id"] for o in alice.orders.get("/api/v1/orders?limit=100").json()["items"]]
    assert bob.orders.get(f"/api/v1/orders/{order['id']}").json()["status"] == "pending", "nothing changed"


def test_admin_reaches_every_order(admin, make_account, place_order):
    alice, bob = make_account(), make_account()
    mine, theirs = place_order(alice), place_order(bob)
    assert admin.orders.get(f"/api/v1/orders/{theirs['id']}").json() == theirs
    only_alice = admin.orders.get(f"/api/v1/orders?user_id={alice.id}").json()["items"]
    assert [o["id"] for o in only_alice] == [mine["id"]]
    everyone = admin.orders.get("/api/v1/orders?limit=100").json()["items"]
    assert {mine["id"], theirs["id"]} <= {o["id"] for o in everyone}
    assert admin.orders.post(f"/api/v1/orders/{theirs['id']}/status", {"status": "paid"}).status == 200
    assert bob.orders.get(f"/api/v1/orders/{theirs['id']}").json()["status"] == "paid"


@pytest.mark.parametrize("start", list(STATUS_MOVES))
def test_the_status_machine(account, place_order, start):
    for target, allowed in STATUS_MOVES[start].items():
        order = place_order(account)
        path = f"/api/v1/orders/{order['id']}/status"
        for step in PATH_TO[start]:
            assert account.orders.post(path, {"status": step}).status == 200
        reply = account.orders.post(path, {"status": target})
        expected = 200 if allowed else 409
        assert reply.status == expected, f"{start} -> {target}: {reply}"
        current = account.orders.get(f"/api/v1/orders/{order['id']}").json()
        assert current["status"] == (target if allowed else start)
        if allowed:
            assert reply.json() == current
            assert current["updated_at"] >= order["updated_at"]


def test_a_deleted_user_cannot_order(account):
    assert account.users.delete(f"/api/v1/users/{account.id}").status == 204
    reply = account.orders.post("/api/v1/orders", order_body(("A", 1, 1)), headers={"Idempotency-Key": "k-1"})
    assert reply.status == 422, reply


def test_order_creation_checks_the_user_through_the_user_service(stack, account, spec):
    # An order service pointing at a user service that is not there answers 503 (Retry-After), never 5xx crashes.
    lonely = stack.start_service(
        "order", USER_SERVICE_URL=f"http://127.0.0.1:{free_port()}", USER_SERVICE_TIMEOUT="200ms"
    )
    try:
        client = ApiClient(lonely.base_url, spec, token=account.token)
        reply = client.post("/api/v1/orders", order_body(("A", 1, 1)), headers={"Idempotency-Key": "lonely"})
        assert reply.status == 503, reply
        assert reply.header("Retry-After") == "1"
        assert client.get("/api/v1/orders").status == 200, "reads do not need the user service"
    finally:
        assert lonely.stop() == 0


def test_sql_metacharacters_in_the_idempotency_key_are_data(account, db):
    key = "';DROP/**/TABLE/**/orders;--\"$1%_\\"
    first = account.orders.post("/api/v1/orders", order_body(("A", 1, 1)), headers={"Idempotency-Key": key})
    again = account.orders.post("/api/v1/orders", order_body(("A", 1, 1)), headers={"Idempotency-Key": key})
    assert first.status == again.status == 201, (first, again)
    assert again.json()["id"] == first.json()["id"]
    assert db.value("orders", f"SELECT idempotency_key FROM orders WHERE id = '{first.json()['id']}'") == key


def test_pagination_with_equal_timestamps_sees_every_order_once(account, place_order, db):
    # Orders created in the same microsecond are ordered by id; the cursor must neither repeat nor skip them.
    placed = {place_order(account, (f"TIE-{i}", 1, 1))["id"] for i in range(7)}
    ids = ",".join(f"'{i}'" for i in placed)
    db.value("orders", f"UPDATE orders SET created_at = '2026-01-02 03:04:05.678901+00' WHERE id IN ({ids})")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = account.orders.get("/api/v1/orders?limit=3" + (f"&cursor={cursor}" if cursor else "")).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(placed) and len(seen) == len(placed), seen
    assert seen == sorted(placed, reverse=True), "newest first, then by id descending"
