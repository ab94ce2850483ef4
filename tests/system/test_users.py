"""The user service's API as a client uses it: sign-up, login, tokens, own record, administration."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from vigie_api import claims_for, make_token


def test_sign_up_returns_the_user_and_its_location(users_api, db):
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    reply = users_api.post("/api/v1/users", {"email": email, "password": "analytical engine", "name": "Ada"})
    assert reply.status == 201, reply
    user = reply.json()
    assert user["email"] == email and user["name"] == "Ada" and user["role"] == "user"
    assert reply.header("Location") == f"/api/v1/users/{user['id']}"
    assert "password" not in reply.body.decode() and "argon" not in reply.body.decode()
    stored = db.value("users", f"SELECT password_hash FROM users WHERE id = '{user['id']}'")
    assert stored.startswith("$argon2id$"), "passwords are stored as argon2id hashes"


def test_sign_up_refuses_a_taken_email_whatever_its_case(users_api, account, db):
    before = db.count("users", "users")
    reply = users_api.post(
        "/api/v1/users", {"email": account.email.upper(), "password": "another secret", "name": "Impostor"}
    )
    assert reply.status == 409, reply
    assert db.count("users", "users") == before


def test_login_issues_a_bearer_token_that_identifies_the_user(users_api, account):
    reply = users_api.post("/api/v1/auth/login", {"email": account.email, "password": account.password})
    assert reply.status == 200, reply
    token = reply.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 900
    me = users_api.get(f"/api/v1/users/{account.id}", token=token["access_token"])
    assert me.status == 200 and me.json()["email"] == account.email


def test_login_refuses_wrong_passwords_and_unknown_emails_alike(users_api, account):
    wrong = users_api.post("/api/v1/auth/login", {"email": account.email, "password": "not the password"})
    unknown = users_api.post("/api/v1/auth/login", {"email": "nobody-" + account.email, "password": "whatever1"})
    assert wrong.status == unknown.status == 401
    assert wrong.json()["detail"] == unknown.json()["detail"], "the answer must not reveal which accounts exist"
    assert wrong.header("WWW-Authenticate").startswith("Bearer")


def test_login_accepts_the_email_in_another_case(users_api, account):
    reply = users_api.post("/api/v1/auth/login", {"email": account.email.upper(), "password": account.password})
    assert reply.status == 200, reply


def test_every_user_route_but_sign_up_and_login_needs_a_token(users_api, account):
    for method, target in (
        ("GET", "/api/v1/users"),
        ("GET", f"/api/v1/users/{account.id}"),
        ("PATCH", f"/api/v1/users/{account.id}"),
        ("DELETE", f"/api/v1/users/{account.id}"),
    ):
        body = {"name": "x"} if method == "PATCH" else None
        reply = users_api.request(method, target, json_body=body, token=None)
        assert reply.status == 401, reply
    assert account.users.get(f"/api/v1/users/{account.id}").status == 200, "still there"


def test_get_patch_and_delete_ones_own_record(account, users_api):
    path = f"/api/v1/users/{account.id}"
    me = account.users.get(path)
    assert me.status == 200 and me.json()["name"] == account.name

    changed = account.users.patch(path, {"name": "Grace Hopper"})
    assert changed.status == 200, changed
    assert changed.json()["name"] == "Grace Hopper" and changed.json()["email"] == account.email
    assert changed.json()["updated_at"] >= me.json()["updated_at"]
    assert account.users.get(path).json()["name"] == "Grace Hopper"

    new_email = "renamed-" + account.email
    assert account.users.patch(path, {"email": new_email, "password": "a new password"}).status == 200
    assert users_api.post("/api/v1/auth/login", {"email": new_email, "password": account.password}).status == 401
    assert users_api.post("/api/v1/auth/login", {"email": new_email, "password": "a new password"}).status == 200

    assert account.users.delete(path).status == 204
    assert account.users.get(path).status == 404
    assert account.users.delete(path).status == 404
    assert users_api.post("/api/v1/auth/login", {"email": new_email, "password": "a new password"}).status == 401


def test_patch_to_a_taken_email_is_a_conflict_and_changes_nothing(make_account):
    first, second = make_account(), make_account()
    reply = second.users.patch(f"/api/v1/users/{second.id}", {"email": first.email, "name": "Changed"})
    assert reply.status == 409, reply
    assert second.users.get(f"/api/v1/users/{second.id}").json()["name"] == second.name


def test_a_user_cannot_reach_another_users_record(make_account):
    alice, bob = make_account("Alice"), make_account("Bob")
    target = f"/api/v1/users/{bob.id}"
    assert alice.users.get(target).status == 404
    assert alice.users.patch(target, {"name": "Pwned"}).status == 404
    assert alice.users.delete(target).status == 404
    assert bob.users.get(target).json()["name"] == "Bob", "nothing changed"


def test_a_user_cannot_list_users(account):
    reply = account.users.get("/api/v1/users")
    assert reply.status == 403, reply


def test_a_forged_admin_role_is_refused(stack, account):
    # The role comes from the signed token only: a token signed by another key claiming admin is worthless.
    forged = make_token(stack.other_private_key, claims_for(account.id, "admin"))
    assert account.users.get("/api/v1/users", token=forged).status == 401


def test_admin_reaches_every_record(admin, account):
    target = f"/api/v1/users/{account.id}"
    assert admin.users.get(target).json()["email"] == account.email
    assert admin.users.patch(target, {"name": "Renamed by admin"}).status == 200
    assert account.users.get(target).json()["name"] == "Renamed by admin"
    assert admin.users.delete(target).status == 204
    assert admin.users.get(target).status == 404


def test_admin_lists_users_page_by_page(admin, make_account):
    created = {make_account().id for _ in range(3)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        target = "/api/v1/users?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = admin.users.get(target)
        assert page.status == 200, page
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [user["id"] for user in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert cursor == body["items"][-1]["id"]
        assert pages < 1000
    assert created <= set(seen)
    assert len(seen) == len(set(seen)), "no user twice"
    assert seen == sorted(seen), "keyset order by id"
    everything = admin.users.get("/api/v1/users?limit=100").json()
    if everything["next_cursor"] is None:
        assert [user["id"] for user in everything["items"]] == seen


def test_admin_list_default_and_maximum_page_sizes(admin, make_account):
    for _ in range(2):
        make_account()
    default = admin.users.get("/api/v1/users").json()
    assert 0 < len(default["items"]) <= 20
    assert admin.users.get("/api/v1/users?limit=101").status == 400
    assert admin.users.get("/api/v1/users?limit=0").status == 400


def test_a_deleted_users_token_no_longer_reaches_anything(account):
    assert account.users.delete(f"/api/v1/users/{account.id}").status == 204
    # The token is still cryptographically valid until it expires, but there is nothing left to read.
    assert account.users.get(f"/api/v1/users/{account.id}").status == 404


def test_request_ids_are_echoed_or_generated(users_api):
    echoed = users_api.request("GET", "/api/v1/users", headers={"X-Request-Id": "trace-me.1"}, token=None)
    assert echoed.header("X-Request-Id") == "trace-me.1"
    fresh = users_api.request("GET", "/api/v1/users", headers={"X-Request-Id": "bad id!"}, token=None)
    assert fresh.header("X-Request-Id") != "bad id!" and len(fresh.header("X-Request-Id")) == 32


def test_token_expiry_is_enforced_after_the_clock_skew(stack, account):
    now = int(time.time())
    # Within the 30 s of tolerated skew: still accepted.
    fresh_enough = make_token(stack.jwt_private_key, claims_for(account.id, issued=now - 910, ttl=900))
    assert account.users.get(f"/api/v1/users/{account.id}", token=fresh_enough).status == 200
    expired = make_token(stack.jwt_private_key, claims_for(account.id, issued=now - 1000, ttl=900))
    assert account.users.get(f"/api/v1/users/{account.id}", token=expired).status == 401


def test_concurrent_sign_ups_with_one_email_create_one_account(users_api, db):
    email = f"twin-{uuid.uuid4().hex[:8]}@example.com"

    def sign_up(i: int):
        client = users_api.with_token(None)  # one connection per thread
        return client.post(
            "/api/v1/users",
            {"email": email if i % 2 else email.upper(), "password": "long enough", "name": f"Twin {i}"},
        )

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(reply.status for reply in pool.map(sign_up, range(6)))
    assert statuses == [201, 409, 409, 409, 409, 409], statuses
    assert db.value("users", f"SELECT count(*) FROM users WHERE lower(email) = lower('{email}')") == "1"
