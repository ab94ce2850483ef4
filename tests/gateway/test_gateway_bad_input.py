"""Hostile and broken requests at the gateway: each gets a 4xx problem (or the connection is closed), nothing is
forwarded that should not be, nothing is persisted, and every process survives."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from gateway_client import assert_problem, replica_requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "system"))
from vigie_api import raw_exchange, read_reply  # noqa: E402


def counts(gw) -> tuple[int, int]:
    out = gw.pg.psql("SELECT count(*) FROM users;\n\\connect orders\nSELECT count(*) FROM orders;\n", dbname="users")
    users, orders = out.split()
    return int(users), int(orders)


def forwarded(gw) -> int:
    return sum(replica_requests(s) for s in gw.users + gw.orders)


def raw(gw, payload: bytes):
    reply, _, closed = raw_exchange(gw.gateway_port, payload)
    return reply, closed


def order_request(
    token: str,
    extra: str = "",
    body: bytes = b'{"items":[{"sku":"S","quantity":1,"unit_price_cents":1}]}',
    length: int | None = None,
) -> bytes:
    head = (
        f"POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: smuggle-{time.monotonic_ns()}\r\n"
    )
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + extra + "\r\n").encode() + body


SMUGGLING = {
    # CL.TE / TE.CL: two framings for one body. A proxy must refuse rather than pick one.
    "cl-and-te": lambda t: order_request(t, "Transfer-Encoding: chunked\r\n", b"0\r\n\r\nGET /x HTTP/1.1\r\n\r\n", 5),
    "te-and-cl": lambda t: order_request(
        t, "Content-Length: 4\r\n", b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n"
    ).replace(b"Content-Type", b"Transfer-Encoding: chunked\r\nContent-Type"),
    "two-lengths": lambda t: order_request(t, "Content-Length: 7\r\n", b"{}", 2),
    "length-list": lambda t: order_request(t, "", b"{}", None).replace(
        b"\r\n\r\n", b"\r\nContent-Length: 2, 3\r\n\r\n"
    ),
    "te-not-chunked": lambda t: order_request(t, "Transfer-Encoding: gzip\r\n", b"{}"),
    "space-before-colon": lambda t: order_request(t, "Transfer-Encoding : chunked\r\n", b"{}", 2),
    "bad-chunk-size": lambda t: order_request(t, "Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n"),
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_request_smuggling_is_refused(gw, account, name):
    before_rows, before_forwarded = counts(gw), forwarded(gw)
    reply, closed = raw(gw, SMUGGLING[name](account.token))
    assert reply is not None, "the gateway must answer before closing"
    assert reply.status == 400, (reply.status, reply.body)
    assert closed
    assert forwarded(gw) == before_forwarded
    assert counts(gw) == before_rows


def test_a_chunked_body_is_forwarded_with_a_length(gw, account):
    body = b'{"items":[{"sku":"CHUNKED","quantity":1,"unit_price_cents":1}]}'
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    reply, _ = raw(gw, order_request(account.token, "Transfer-Encoding: chunked\r\n", chunked))
    assert reply is not None and reply.status == 201, reply


def test_absurd_header_counts_are_431(gw, account):
    before = forwarded(gw)
    headers = "".join(f"X-H{i}: v\r\n" for i in range(150))  # 1.3 KiB: under the size limit, over the count
    reply, _ = raw(
        gw, f"GET /api/v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account.token}\r\n{headers}\r\n".encode()
    )
    assert reply is not None and reply.status == 431, reply
    huge = f"GET /api/v1/orders HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 20000}\r\n\r\n".encode()
    reply, closed = raw(gw, huge)
    assert reply is not None and reply.status == 431 and closed, reply
    assert forwarded(gw) == before


@pytest.mark.parametrize(
    "request_line",
    [
        b"G\x01T /api/v1/orders HTTP/1.1",
        b"GET /api/v1/orders HTTP/1.1 extra",
        b"get /api/v1/orders HTTP/1.1",
        b"BREW /api/v1/orders HTTP/1.1",
        b"CONNECT 127.0.0.1:22 HTTP/1.1",
        b"GET http://evil.example/api/v1/orders HTTP/1.1",
        b"GET /api/v1/orders HTTP/2.0",
    ],
)
def test_invalid_methods_and_targets_are_refused(gw, account, request_line):
    before = forwarded(gw)
    reply, _ = raw(gw, request_line + f"\r\nHost: x\r\nAuthorization: Bearer {account.token}\r\n\r\n".encode())
    assert reply is None or 400 <= reply.status < 500, reply
    assert forwarded(gw) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users/../orders",
        "/api/v1/users/%2e%2e/orders",
        "/api/v1/./orders",
        "/api/v1//orders",
        "/api/v1/orders/%2E%2E",
        "/api/v1/users/.%2e/admin",
    ],
)
def test_path_traversal_is_refused(gw, account, path):
    before = forwarded(gw)
    # Raw bytes: HTTP client libraries resolve dot segments before sending, which would hide the attempt.
    reply, _ = raw(gw, f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account.token}\r\n\r\n".encode())
    assert reply is not None and reply.status in (400, 404), reply
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert forwarded(gw) == before


def test_an_encoded_slash_stays_inside_its_segment(gw, account):
    # Forwarded as one (invalid) id: the user service answers 404; no other resource is reached.
    assert_problem(account.api.get("/api/v1/users/..%2forders"), 404)


def test_bad_bodies_are_refused_and_persist_nothing(gw, account):
    before = counts(gw)
    for body in (
        b"{not json",
        b'{"items": "\xff\xfe"}',
        b"[" * 100 + b"]" * 100,
        b'{"items":[{"sku":"S","quantity":-1,"unit_price_cents":1}]}',
        b'{"items":[{"sku":"S","quantity":1,"unit_price_cents":99999999999999999999}]}',
    ):
        reply = account.api.request(
            "POST",
            "/api/v1/orders",
            data=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": "bad-body"},
        )
        assert_problem(reply, 400)
    too_big = account.api.request(
        "POST", "/api/v1/orders", data=b"x" * (70 * 1024), headers={"Content-Type": "application/json"}
    )
    assert_problem(too_big, 413)
    assert counts(gw) == before


def test_a_client_that_stops_sending_is_cut_off(gw):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.gateway_port), timeout=15) as sock:
        sock.sendall(b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        reply, elapsed, closed = read_reply(sock, started)
    assert elapsed < 5, elapsed  # HTTP_READ_TIMEOUT is 2 s
    assert closed
    assert reply is None, reply  # cut off without an answer: the deadline closes the socket


def test_everything_survived(gw):
    for service in [gw.gateway, *gw.users, *gw.orders]:
        assert service.alive(), service.name
