"""Tokens are checked at the gateway: nothing without a valid one reaches a replica, except sign-up and login."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from gateway_client import assert_problem, replica_requests, sign_up

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "system"))
from vigie_api import claims_for, make_token  # noqa: E402


def bad_tokens(gw, subject: str) -> dict[str, str]:
    now = int(time.time())
    return {
        "unsigned": make_token(None, claims_for(subject), {"alg": "none", "typ": "JWT"}),
        "foreign-key": make_token(gw.other_private_key, claims_for(subject)),
        "expired": make_token(gw.jwt_private_key, claims_for(subject, issued=now - 3600, ttl=600)),
        "wrong-issuer": make_token(gw.jwt_private_key, claims_for(subject, issuer="someone-else")),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize(
    "target", ["/api/v1/users", "/api/v1/users/{id}", "/api/v1/orders", "/api/v1/users/{id}/summary"]
)
def test_missing_token_is_401_and_goes_nowhere(gw, api, account, target):
    before = sum(replica_requests(s) for s in gw.users + gw.orders)
    reply = api.with_token(None).get(target.format(id=account.id))
    assert_problem(reply, 401)
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert sum(replica_requests(s) for s in gw.users + gw.orders) == before


def test_every_kind_of_bad_token_is_401(gw, api, account):
    before = sum(replica_requests(s) for s in gw.users + gw.orders)
    for name, token in bad_tokens(gw, account.id).items():
        reply = api.with_token(token).get(f"/api/v1/users/{account.id}")
        body = assert_problem(reply, 401)
        assert "invalid token" in body["detail"], (name, body)
    assert_problem(
        api.with_token(None).get(f"/api/v1/users/{account.id}", headers={"Authorization": "Basic eDp5"}), 401
    )
    assert sum(replica_requests(s) for s in gw.users + gw.orders) == before


def test_sign_up_and_login_need_no_token(api):
    account = sign_up(api)  # asserts 201 and 200
    assert account.api.get(f"/api/v1/users/{account.id}").status_code == 200
    wrong = api.with_token(None).post("/api/v1/auth/login", {"email": account.email, "password": "not the password"})
    assert_problem(wrong, 401)


def test_the_authorization_header_is_forwarded(account, admin_token, api):
    # The user service decides with the forwarded token: a user sees only themselves, an admin everyone.
    other = sign_up(api)
    assert_problem(account.api.get(f"/api/v1/users/{other.id}"), 404)
    assert api.with_token(admin_token).get(f"/api/v1/users/{other.id}").status_code == 200
