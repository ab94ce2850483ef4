"""What the HTTP layer answers whatever the route: unknown routes, wrong methods, oversized heads and bodies, malformed
HTTP, slow clients. Raw sockets where a normal client would not send such bytes."""

from __future__ import annotations

import json
import select
import socket
import time
import uuid

import pytest

from vigie_api import raw_exchange, read_reply

READ_TIMEOUT_SECONDS = 2  # HTTP_READ_TIMEOUT the stack runs with (vigie_stack.Stack.service_env)


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/api",
        "/api/v1",
        "/api/v2/users",
        "/api/v1/nope",
        "/api/v1/users/x/y",
        "/API/V1/USERS",
        "/metrics",
        "/healthz",
        "/admin/faults",
        "/api/v1/users%2Fx",
    ],
)
def test_unknown_routes_are_404(stack, spec, target):
    for service in (stack.user, stack.order):
        reply, _, _ = raw_exchange(service.http_port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert reply is not None and reply.status == 404, (service.name, reply)
        spec.check("GET", target, reply)


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/users/../users",
        "/api/v1/users/%2e%2e/users",
        "/api/v1/./users",
        "//api/v1/users",
        "/api/v1//users",
        "/api/v1/orders/%2E%2E/users",
    ],
)
def test_dot_and_empty_segments_never_reach_a_route(stack, spec, target):
    # Raw bytes: HTTP client libraries normalise "//" and dot segments away before sending. Refused (400) or not
    # found (404), never normalised into another route.
    for service in (stack.user, stack.order):
        reply, _, _ = raw_exchange(service.http_port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert reply is not None and reply.status in (400, 404), (service.name, reply)
        spec.check("GET", target, reply)


@pytest.mark.parametrize(
    "service,method,target,allow",
    [
        ("user", "PUT", "/api/v1/users", "POST, GET"),
        ("user", "DELETE", "/api/v1/users", "POST, GET"),
        ("user", "POST", "/api/v1/users/00000000-0000-0000-0000-000000000000", "GET, PATCH, DELETE"),
        ("user", "GET", "/api/v1/auth/login", "POST"),
        ("order", "DELETE", "/api/v1/orders", "POST, GET"),
        ("order", "PATCH", "/api/v1/orders/00000000-0000-0000-0000-000000000000", "GET"),
        ("order", "GET", "/api/v1/orders/00000000-0000-0000-0000-000000000000/status", "POST"),
    ],
)
def test_wrong_methods_are_405_with_allow(users_api, orders_api, service, method, target, allow):
    client = users_api if service == "user" else orders_api
    reply = client.request(method, target, token=None)
    assert reply.status == 405, reply
    assert reply.header("Allow") == allow


def test_methods_outside_http_are_refused(stack, spec):
    reply, _, _ = raw_exchange(stack.user.http_port, b"BREW /api/v1/users HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply is not None and 400 <= reply.status < 500, reply
    spec.check("BREW", "/api/v1/users", reply)


def request_bytes(method: str, target: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
    if body or method in ("POST", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def check_refusal(spec, reply) -> None:
    """A refusal sent before the request was read whole: a problem document (it carries no X-Request-Id)."""
    assert reply is not None, "the server must answer before closing"
    spec.check_refusal(reply)


@pytest.mark.parametrize("service", ["user", "order"])
def test_oversized_headers_are_431(stack, spec, service, db):
    port = stack.user.http_port if service == "user" else stack.order.http_port
    before = db.counts()
    payload = request_bytes(
        "POST",
        "/api/v1/users",
        {"X-Padding": "p" * 9000, "Content-Type": "application/json"},
        b'{"email":"big@example.com","password":"long enough","name":"Big"}',
    )
    reply, _, closed = raw_exchange(port, payload)
    assert reply is not None and reply.status == 431, reply
    check_refusal(spec, reply)
    assert closed
    # Many small headers add up the same way.
    many = {f"X-H{i}": "v" * 40 for i in range(300)}
    reply, _, _ = raw_exchange(port, request_bytes("GET", "/api/v1/users", many))
    assert reply is not None and reply.status == 431, reply
    assert db.counts() == before


def test_a_long_target_is_431(stack, spec):
    reply, _, _ = raw_exchange(stack.user.http_port, request_bytes("GET", "/api/v1/users?" + "a" * 10000, {}))
    assert reply is not None and reply.status == 431, reply
    check_refusal(spec, reply)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_413_before_it_is_read(stack, spec, db, chunked):
    before = db.counts()
    body = json.dumps({"email": "huge@example.com", "password": "long enough", "name": "x" * 100_000}).encode()
    if chunked:
        payload = (
            b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        )
    else:
        payload = request_bytes("POST", "/api/v1/users", {"Content-Type": "application/json"}, body)
    reply, _, closed = raw_exchange(stack.user.http_port, payload)
    assert reply is not None and reply.status == 413, reply
    check_refusal(spec, reply)
    assert closed
    assert db.counts() == before


def test_a_declared_length_over_the_limit_is_refused_at_once(stack, spec):
    # Only the head is sent: the server must not wait for 10 MB that will never come.
    head = request_bytes(
        "POST", "/api/v1/users", {"Content-Type": "application/json", "Content-Length": str(10 * 1024 * 1024)}
    )
    head = head.replace(b"Content-Length: 0\r\n", b"")
    reply, elapsed, _ = raw_exchange(stack.user.http_port, head)
    assert reply is not None and reply.status == 413, reply
    assert elapsed < READ_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    "payload",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /api/v1/users HTTP/9.9\r\nHost: x\r\n\r\n",
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/v1/users HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /api/v1/users HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
    ],
    ids=["garbage", "bad-version", "bad-length", "two-lengths", "bad-chunk", "bad-header", "nul-in-header"],
)
def test_malformed_http_is_400_and_closed(stack, spec, payload):
    reply, _, closed = raw_exchange(stack.user.http_port, payload)
    assert reply is not None and reply.status == 400, reply
    check_refusal(spec, reply)
    assert closed
    assert stack.user.alive()


def test_an_absolute_form_target_is_refused(stack, spec):
    payload = b"GET http://evil.example/api/v1/users HTTP/1.1\r\nHost: x\r\n\r\n"
    reply, _, _ = raw_exchange(stack.user.http_port, payload)
    assert reply is not None and reply.status == 400, reply
    check_refusal(spec, reply)


def test_a_client_that_stops_sending_is_cut_off_after_the_read_deadline(stack):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", stack.user.http_port), timeout=15) as sock:
        sock.sendall(b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        reply, elapsed, closed = read_reply(sock, started)
    assert READ_TIMEOUT_SECONDS - 0.2 <= elapsed <= READ_TIMEOUT_SECONDS + 3, elapsed
    assert closed
    assert reply is None, reply  # the deadline closes the socket: nothing more is written to a stalled client


def test_a_client_that_trickles_its_request_is_cut_off_after_the_read_deadline(stack, db):
    before = db.counts()
    body = json.dumps(
        {"email": f"slow-{uuid.uuid4().hex[:6]}@example.com", "password": "long enough", "name": "Slowloris"}
    ).encode()
    payload = request_bytes("POST", "/api/v1/users", {"Content-Type": "application/json"}, body)
    started = time.monotonic()
    cut = False
    with socket.create_connection(("127.0.0.1", stack.user.http_port), timeout=15) as sock:
        # One byte every 100 ms would take ~20 s in all; the server must not wait for it.
        for byte in payload:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:  # the connection closed
                cut = True
                break
            if time.monotonic() - started > READ_TIMEOUT_SECONDS + 3:
                break
    elapsed = time.monotonic() - started
    assert cut, "the server kept waiting for a trickling client"
    assert elapsed <= READ_TIMEOUT_SECONDS + 1.5, elapsed
    assert db.counts() == before


def test_an_idle_keep_alive_connection_is_served_again(users_api):
    # The read deadline starts with a request, not with the connection: a pause between requests is fine.
    assert users_api.get("/api/v1/users", token=None).status == 401
    time.sleep(READ_TIMEOUT_SECONDS + 0.5)
    assert users_api.get("/api/v1/users", token=None).status == 401


def test_pipelined_requests_are_answered_in_order(stack):
    payload = b"".join(request_bytes("GET", f"/api/v1/nope{i}", {"X-Request-Id": f"pipe-{i}"}) for i in range(5))
    with socket.create_connection(("127.0.0.1", stack.user.http_port), timeout=10) as sock:
        sock.sendall(payload)
        received = b""
        while received.count(b"HTTP/1.1 404") < 5:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    ids = [line.split(b": ")[1] for line in received.split(b"\r\n") if line.lower().startswith(b"x-request-id")]
    assert ids == [f"pipe-{i}".encode() for i in range(5)]


def test_the_services_survived_all_of_it(stack):
    for service in (stack.user, stack.order):
        assert service.alive(), f"{service.name} died"
        assert service.ready()


def test_an_answer_to_head_has_no_body(stack):
    # A client reads no body after a HEAD answer: bytes sent anyway are taken for the start of the next response.
    payload = request_bytes("HEAD", "/api/v1/users", {}) + request_bytes("GET", "/api/v1/nope", {})
    with socket.create_connection(("127.0.0.1", stack.user.http_port), timeout=5) as sock:
        sock.sendall(payload)
        received = b""
        while received.count(b"\r\n\r\n") < 2 or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    head_answer, rest = received.split(b"\r\n\r\n", 1)
    assert head_answer.startswith(b"HTTP/1.1 405"), head_answer
    assert rest.startswith(b"HTTP/1.1 404"), f"bytes after the HEAD answer's head: {rest[:120]!r}"
