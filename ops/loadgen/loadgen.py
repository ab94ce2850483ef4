#!/usr/bin/python3
"""Vigie's load generator: realistic mixed traffic against the local platform, so dashboards, SLOs and alerts see
what a small shop's API sees.

The mix (weights in OPERATIONS below): sign-ups, logins, profile reads and updates, orders placed with an
Idempotency-Key (and a few replays of the same key), status changes along the state machine, order reads and
lists, user summaries through the gateway's aggregation route, and a few client errors: malformed JSON, unknown
orders (404), a missing token (401), a wrong password (401) and a forbidden status move (409). None of them is a
server error: under steady load the services must answer no 5xx at all.

Traffic goes through the gateway when it accepts connections (checked every few seconds), else straight to the user
and order services. The rate is open-loop (requests start on a fixed schedule whatever the latency, as real clients
do) and bounded: at most --concurrency requests in flight; a tick that finds every worker busy is skipped and
counted, never queued without limit. Targets must be loopback addresses. SIGTERM or SIGINT stops it: in-flight
requests finish (each has a deadline), the summary is printed (and written to --summary-file), exit status 0.

    loadgen.py                              # 10 req/s until stopped, ports from the environment (VIGIE_*_PORT)
    loadgen.py --rate 20 --duration 60      # one minute at 20 req/s, then the summary
    loadgen.py --only order --route direct  # only the order service's routes, straight to it (incident drills)

Stdlib only: it runs with /usr/bin/python3 under supervisord (deploy/local/vigie-local) as well as from the drills.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import ipaddress
import json
import os
import queue
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

DEFAULT_PORTS = {"VIGIE_GATEWAY_PORT": 8080, "VIGIE_USER_PORT": 8081, "VIGIE_ORDER_PORT": 8082}
# Tokens live 15 minutes (JWT_TTL); log in again well before they expire.
TOKEN_REFRESH_SECONDS = 10 * 60
# Accounts and orders remembered for later requests; older ones are forgotten (the database keeps them).
MAX_ACCOUNTS = 200
MAX_ORDERS = 1000
# Latency samples kept per operation for the percentiles of the summary.
MAX_SAMPLES = 2000
GATEWAY_CHECK_SECONDS = 5.0
SKUS = ["TEA-1", "TEA-2", "COFFEE-1", "MUG-1", "KETTLE-1", "FILTER-9", "CUP-3"]
FIRST_NAMES = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Radia", "Donald"]


class UsageError(Exception):
    """A bad option value; main() prints it and exits 2."""


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def parse_endpoint(value: str) -> Endpoint:
    """http://HOST:PORT on a loopback address (the generator never sends traffic off the machine)."""
    split = urllib.parse.urlsplit(value)
    if split.scheme != "http" or not split.hostname or split.path not in ("", "/") or split.query:
        raise UsageError(f"expected http://HOST:PORT, got {value!r}")
    try:
        port = split.port or 80
    except ValueError:
        raise UsageError(f"bad port in {value!r}") from None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(split.hostname, port, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as e:
        raise UsageError(f"cannot resolve {split.hostname!r}: {e}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise UsageError(
            f"{value} is not a loopback address ({', '.join(sorted(addresses))}): "
            "the load generator only targets this machine"
        )
    return Endpoint(split.hostname, port)


@dataclasses.dataclass(frozen=True)
class Config:
    gateway: Endpoint
    user: Endpoint
    order: Endpoint
    route: str = "auto"  # auto | gateway | direct
    rate: float = 10.0
    duration: float = 0.0  # seconds; 0 = until stopped
    concurrency: int = 16
    only: str | None = None  # user | order: only that service's routes (logins excepted)
    timeout: float = 10.0
    seed: int | None = None
    report_every: float = 60.0
    summary_file: Path | None = None
    quiet: bool = False


def default_url(name: str, environ: dict[str, str]) -> str:
    return f"http://127.0.0.1:{environ.get(name, DEFAULT_PORTS[name])}"


def parse_args(argv: list[str], environ: dict[str, str] | None = None) -> Config:
    environ = dict(os.environ) if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="loadgen.py",
        description="Realistic mixed traffic against Vigie's local platform (loopback only).",
        epilog="Default URLs come from VIGIE_GATEWAY_PORT, VIGIE_USER_PORT and VIGIE_ORDER_PORT "
        "(deploy/local/ports.env).",
    )
    parser.add_argument("--gateway", default=default_url("VIGIE_GATEWAY_PORT", environ), help="gateway URL")
    parser.add_argument("--user", default=default_url("VIGIE_USER_PORT", environ), help="user service URL")
    parser.add_argument("--order", default=default_url("VIGIE_ORDER_PORT", environ), help="order service URL")
    parser.add_argument(
        "--route",
        choices=["auto", "gateway", "direct"],
        default="auto",
        help="through the gateway, straight to the services, or the gateway when it is up (default)",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second (default 10, at most 500)")
    parser.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds (0: run until SIGTERM/SIGINT, the default)",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most (default 16)")
    parser.add_argument(
        "--only", choices=["user", "order"], help="only this service's routes (and the logins they need)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each request in seconds")
    parser.add_argument("--seed", type=int, help="random seed, for a reproducible mix")
    parser.add_argument(
        "--report-every",
        type=float,
        default=60.0,
        help="print a one-line progress report every this many seconds (0: never)",
    )
    parser.add_argument(
        "--summary-file", type=Path, help="also write the summary there as JSON (on every report and at the end)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    args = parser.parse_args(argv)
    try:
        if not 0 < args.rate <= 500:
            raise UsageError(f"--rate must be in (0, 500], got {args.rate}")
        if args.duration < 0:
            raise UsageError(f"--duration must be >= 0, got {args.duration}")
        if not 1 <= args.concurrency <= 256:
            raise UsageError(f"--concurrency must be 1-256, got {args.concurrency}")
        if not 0 < args.timeout <= 120:
            raise UsageError(f"--timeout must be in (0, 120], got {args.timeout}")
        if args.report_every < 0:
            raise UsageError(f"--report-every must be >= 0, got {args.report_every}")
        return Config(
            gateway=parse_endpoint(args.gateway),
            user=parse_endpoint(args.user),
            order=parse_endpoint(args.order),
            route=args.route,
            rate=args.rate,
            duration=args.duration,
            concurrency=args.concurrency,
            only=args.only,
            timeout=args.timeout,
            seed=args.seed,
            report_every=args.report_every,
            summary_file=args.summary_file,
            quiet=args.quiet,
        )
    except UsageError as e:
        parser.error(str(e))  # exits 2 with the usage line
        raise  # unreachable; keeps type checkers quiet


# ---------------------------------------------------------------------------------------------------------------
# HTTP: one keep-alive connection per worker and endpoint
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    status: int  # 0: no HTTP answer (connection refused, reset, deadline)
    body: bytes
    headers: dict[str, str]
    seconds: float
    error: str = ""

    def json(self) -> dict:
        try:
            value = json.loads(self.body)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class Connections:
    """A worker's keep-alive connections, one per endpoint; a failed one is dropped and reopened next time."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._open: dict[Endpoint, http.client.HTTPConnection] = {}

    def request(
        self,
        endpoint: Endpoint,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        all_headers = {"Accept": "application/json", "X-Request-Id": f"loadgen-{uuid.uuid4().hex[:16]}"}
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        started = time.monotonic()
        # A keep-alive connection the server closed while idle fails on first use: retry once on a new one, but
        # only when nothing can have been processed (the request could not even be sent).
        for attempt in (1, 2):
            connection = self._open.get(endpoint)
            fresh = connection is None
            if connection is None:
                connection = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=self._timeout)
                self._open[endpoint] = connection
            try:
                connection.request(method, path, body=body, headers=all_headers)
            except OSError as e:
                self._drop(endpoint)
                if fresh or attempt == 2:
                    return Reply(0, b"", {}, time.monotonic() - started, f"{type(e).__name__}: {e}")
                continue
            try:
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                self._drop(endpoint)
                if (
                    attempt == 1
                    and not fresh
                    and isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                ):
                    continue
                return Reply(0, b"", {}, time.monotonic() - started, f"{type(e).__name__}: {e}")
            if response.will_close:
                self._drop(endpoint)
            return Reply(
                response.status, data, {k.lower(): v for k, v in response.getheaders()}, time.monotonic() - started
            )
        return Reply(0, b"", {}, time.monotonic() - started, "unreachable")

    def _drop(self, endpoint: Endpoint) -> None:
        connection = self._open.pop(endpoint, None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for endpoint in list(self._open):
            self._drop(endpoint)


# ---------------------------------------------------------------------------------------------------------------
# What the generator remembers: accounts and orders it created
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Account:
    email: str
    password: str
    user_id: str
    token: str = ""
    token_at: float = 0.0

    def token_fresh(self, now: float) -> bool:
        return bool(self.token) and now - self.token_at < TOKEN_REFRESH_SECONDS


@dataclasses.dataclass
class Order:
    order_id: str
    account: Account
    status: str
    idempotency_key: str
    body: bytes


class World:
    """Accounts and orders shared by the workers (bounded, thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: deque[Account] = deque(maxlen=MAX_ACCOUNTS)
        self._orders: deque[Order] = deque(maxlen=MAX_ORDERS)

    def add_account(self, account: Account) -> None:
        with self._lock:
            self._accounts.append(account)

    def account(self, rng: random.Random) -> Account | None:
        with self._lock:
            return rng.choice(self._accounts) if self._accounts else None

    def add_order(self, order: Order) -> None:
        with self._lock:
            self._orders.append(order)

    def order(self, rng: random.Random, status: str | None = None) -> Order | None:
        with self._lock:
            candidates = [o for o in self._orders if status is None or o.status == status]
            return rng.choice(candidates) if candidates else None

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._accounts), len(self._orders)


# ---------------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------------


def status_class(status: int) -> str:
    return "error" if status == 0 else f"{status // 100}xx"


class Stats:
    """Per operation: answers by status class and a bounded window of latencies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}
        self._samples: dict[str, deque[float]] = {}
        self._last_error = ""
        self.started = time.monotonic()
        self.skipped = 0

    def record(self, operation: str, reply: Reply) -> None:
        with self._lock:
            counts = self._counts.setdefault(operation, {})
            key = status_class(reply.status)
            counts[key] = counts.get(key, 0) + 1
            self._samples.setdefault(operation, deque(maxlen=MAX_SAMPLES)).append(reply.seconds)
            if reply.error:
                self._last_error = reply.error

    def skip(self) -> None:
        with self._lock:
            self.skipped += 1

    def snapshot(self) -> dict:
        with self._lock:
            operations = {}
            totals: dict[str, int] = {}
            for name in sorted(self._counts):
                samples = sorted(self._samples.get(name, ()))
                operations[name] = {
                    "requests": sum(self._counts[name].values()),
                    "by_class": dict(sorted(self._counts[name].items())),
                    "p50_ms": round(percentile(samples, 0.50) * 1000, 1),
                    "p95_ms": round(percentile(samples, 0.95) * 1000, 1),
                }
                for key, value in self._counts[name].items():
                    totals[key] = totals.get(key, 0) + value
            elapsed = time.monotonic() - self.started
            requests = sum(totals.values())
            return {
                "elapsed_seconds": round(elapsed, 1),
                "requests": requests,
                "rate": round(requests / elapsed, 2) if elapsed > 0 else 0.0,
                "by_class": dict(sorted(totals.items())),
                "skipped_ticks": self.skipped,
                "last_transport_error": self._last_error,
                "operations": operations,
            }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def format_summary(summary: dict) -> str:
    lines = [
        f"loadgen: {summary['requests']} requests in {summary['elapsed_seconds']} s "
        f"({summary['rate']} req/s), by class {summary['by_class']}, skipped ticks {summary['skipped_ticks']}"
    ]
    lines.append(f"  {'operation':<22} {'requests':>8}  {'p50 ms':>8} {'p95 ms':>8}  classes")
    for name, op in summary["operations"].items():
        lines.append(f"  {name:<22} {op['requests']:>8}  {op['p50_ms']:>8} {op['p95_ms']:>8}  {op['by_class']}")
    if summary["last_transport_error"]:
        lines.append(f"  last transport error: {summary['last_transport_error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Operation:
    name: str
    service: str  # whose routes it exercises: user | order
    weight: float
    run: Callable[[Worker], None]
    gateway_only: bool = False


class Worker:
    """One thread's view: its connections, its random stream, and the shared world and statistics."""

    def __init__(self, generator: LoadGenerator, rng: random.Random) -> None:
        self.generator = generator
        self.config = generator.config
        self.world = generator.world
        self.stats = generator.stats
        self.rng = rng
        self.connections = Connections(self.config.timeout)

    # -- plumbing ------------------------------------------------------------------------------------------------

    def endpoint(self, service: str) -> Endpoint:
        if self.generator.via_gateway():
            return self.config.gateway
        return self.config.user if service == "user" else self.config.order

    def call(
        self,
        operation: str,
        service: str,
        method: str,
        path: str,
        *,
        payload: object = None,
        raw: bytes | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        body = raw if raw is not None else (None if payload is None else json.dumps(payload).encode())
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        reply = self.connections.request(self.endpoint(service), method, path, body=body, headers=all_headers)
        self.stats.record(operation, reply)
        return reply

    def authenticated(self) -> Account | None:
        """An account with a valid token: logs in (or signs up the first one) when needed."""
        account = self.world.account(self.rng)
        if account is None:
            # One first sign-up at a time: every worker signing up at once would only fill the user service's
            # password-hashing queue (503) at start-up, which no real client population does.
            if not self.generator.bootstrap.acquire(blocking=False):
                return None
            try:
                account = self.world.account(self.rng) or self.signup()
                if account is None:
                    # Not serving yet (a gateway that has not seen its upstreams healthy answers 503 for its first
                    # second): back off as a client would, while the other workers' ticks pass.
                    self.generator.stop.wait(1.0)
                return account
            finally:
                self.generator.bootstrap.release()
        if not account.token_fresh(time.monotonic()):
            self.login(account)
        return account if account.token else None

    # -- user routes ---------------------------------------------------------------------------------------------

    def signup(self) -> Account | None:
        email = f"lg-{uuid.uuid4().hex[:16]}@loadgen.example.com"
        password = uuid.uuid4().hex
        name = f"{self.rng.choice(FIRST_NAMES)} {uuid.uuid4().hex[:6]}"
        reply = self.call(
            "signup", "user", "POST", "/api/v1/users", payload={"email": email, "password": password, "name": name}
        )
        user_id = reply.json().get("id") if reply.status == 201 else None
        if not isinstance(user_id, str):
            return None
        account = Account(email, password, user_id)
        self.world.add_account(account)
        self.login(account)
        return account

    def login(self, account: Account) -> None:
        reply = self.call(
            "login",
            "user",
            "POST",
            "/api/v1/auth/login",
            payload={"email": account.email, "password": account.password},
        )
        token = reply.json().get("access_token") if reply.status == 200 else None
        if isinstance(token, str):
            account.token, account.token_at = token, time.monotonic()

    def op_signup(self) -> None:
        self.signup()

    def op_login(self) -> None:
        account = self.world.account(self.rng)
        if account is None:
            self.signup()
        else:
            self.login(account)

    def op_wrong_password(self) -> None:
        account = self.world.account(self.rng)
        email = account.email if account else "nobody@loadgen.example.com"
        self.call(
            "login_wrong_password",
            "user",
            "POST",
            "/api/v1/auth/login",
            payload={"email": email, "password": "not-the-password"},
        )

    def op_get_self(self) -> None:
        account = self.authenticated()
        if account:
            reply = self.call("get_user", "user", "GET", f"/api/v1/users/{account.user_id}", token=account.token)
            self.after_auth_failure(account, reply)

    def op_update_name(self) -> None:
        account = self.authenticated()
        if account:
            name = f"{self.rng.choice(FIRST_NAMES)} {uuid.uuid4().hex[:6]}"
            reply = self.call(
                "update_user",
                "user",
                "PATCH",
                f"/api/v1/users/{account.user_id}",
                payload={"name": name},
                token=account.token,
            )
            self.after_auth_failure(account, reply)

    def op_summary(self) -> None:
        account = self.authenticated()
        if account:
            reply = self.call(
                "user_summary", "user", "GET", f"/api/v1/users/{account.user_id}/summary", token=account.token
            )
            self.after_auth_failure(account, reply)

    def op_bad_json(self) -> None:
        self.call("bad_json", "user", "POST", "/api/v1/users", raw=b'{"email": "half@example.com", "pass')

    # -- order routes --------------------------------------------------------------------------------------------

    def op_create_order(self) -> None:
        account = self.authenticated()
        if not account:
            return
        items = [
            {
                "sku": sku,
                "quantity": self.rng.randint(1, 4),
                "unit_price_cents": self.rng.choice([150, 350, 990, 1250, 4500]),
            }
            for sku in self.rng.sample(SKUS, self.rng.randint(1, 3))
        ]
        body = json.dumps({"items": items}).encode()
        key = str(uuid.uuid4())
        reply = self.call(
            "create_order",
            "order",
            "POST",
            "/api/v1/orders",
            raw=body,
            token=account.token,
            headers={"Idempotency-Key": key},
        )
        order_id = reply.json().get("id") if reply.status == 201 else None
        if isinstance(order_id, str):
            self.world.add_order(Order(order_id, account, "pending", key, body))
        self.after_auth_failure(account, reply)

    def op_replay_order(self) -> None:
        order = self.world.order(self.rng)
        if order and order.account.token_fresh(time.monotonic()):
            self.call(
                "replay_order",
                "order",
                "POST",
                "/api/v1/orders",
                raw=order.body,
                token=order.account.token,
                headers={"Idempotency-Key": order.idempotency_key},
            )
        else:
            self.op_create_order()

    def op_get_order(self) -> None:
        order = self.world.order(self.rng)
        if order and order.account.token_fresh(time.monotonic()):
            self.call("get_order", "order", "GET", f"/api/v1/orders/{order.order_id}", token=order.account.token)
        else:
            self.op_list_orders()

    def op_list_orders(self) -> None:
        account = self.authenticated()
        if account:
            reply = self.call(
                "list_orders",
                "order",
                "GET",
                f"/api/v1/orders?limit={self.rng.choice([5, 10, 20])}",
                token=account.token,
            )
            self.after_auth_failure(account, reply)

    def op_change_status(self) -> None:
        order = self.world.order(self.rng, "pending") if self.rng.random() < 0.6 else None
        order = order or self.world.order(self.rng, "paid")
        if not order or not order.account.token_fresh(time.monotonic()):
            self.op_create_order()
            return
        if order.status == "pending":
            target = "cancelled" if self.rng.random() < 0.15 else "paid"
        else:
            target = "cancelled" if self.rng.random() < 0.1 else "shipped"
        reply = self.call(
            "change_status",
            "order",
            "POST",
            f"/api/v1/orders/{order.order_id}/status",
            payload={"status": target},
            token=order.account.token,
        )
        if reply.status == 200:
            order.status = target
        elif reply.status == 409:
            order.status = str(reply.json().get("status", "unknown"))  # another worker moved it first

    def op_forbidden_move(self) -> None:
        order = self.world.order(self.rng, "shipped") or self.world.order(self.rng, "cancelled")
        if order and order.account.token_fresh(time.monotonic()):
            self.call(
                "forbidden_status_move",
                "order",
                "POST",
                f"/api/v1/orders/{order.order_id}/status",
                payload={"status": "pending"},
                token=order.account.token,
            )
        else:
            self.op_change_status()

    def op_unknown_order(self) -> None:
        account = self.authenticated()
        if account:
            self.call("unknown_order", "order", "GET", f"/api/v1/orders/{uuid.uuid4()}", token=account.token)

    def op_missing_token(self) -> None:
        self.call("missing_token", "order", "GET", "/api/v1/orders")

    def after_auth_failure(self, account: Account, reply: Reply) -> None:
        if reply.status == 401:
            account.token = ""  # expired or the keys changed: log in again next time

    def close(self) -> None:
        self.connections.close()


# Weights per 100 requests, roughly what a small shop sees: reads dominate, writes follow, a few client errors.
# Sign-ups and logins are rare, as with real clients that keep their token for its 15 minutes; they are also the
# expensive requests (argon2id, memory-hard by design), and at a few per cent of the user service's traffic they
# would on their own set its p95 and its latency SLO.
OPERATIONS = [
    Operation("signup", "user", 0.25, Worker.op_signup),
    Operation("login", "user", 0.25, Worker.op_login),
    Operation("login_wrong_password", "user", 0.25, Worker.op_wrong_password),
    Operation("get_user", "user", 14, Worker.op_get_self),
    Operation("update_user", "user", 3, Worker.op_update_name),
    Operation("user_summary", "user", 8, Worker.op_summary, gateway_only=True),
    Operation("bad_json", "user", 1, Worker.op_bad_json),
    Operation("create_order", "order", 14, Worker.op_create_order),
    Operation("replay_order", "order", 2, Worker.op_replay_order),
    Operation("get_order", "order", 18, Worker.op_get_order),
    Operation("list_orders", "order", 16, Worker.op_list_orders),
    Operation("change_status", "order", 12, Worker.op_change_status),
    Operation("forbidden_status_move", "order", 1, Worker.op_forbidden_move),
    Operation("unknown_order", "order", 1, Worker.op_unknown_order),
    Operation("missing_token", "order", 1, Worker.op_missing_token),
]


# ---------------------------------------------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------------------------------------------


class LoadGenerator:
    """Runs the mix at `config.rate` until `stop` is set or `config.duration` has passed."""

    def __init__(
        self, config: Config, stop: threading.Event | None = None, log: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.world = World()
        self.stats = Stats()
        self._log = log or (lambda line: print(line, flush=True))
        self._rng = random.Random(config.seed)
        self.bootstrap = threading.Lock()
        self._gateway_up = config.route == "gateway"
        self._gateway_checked = -1e9
        self._gateway_lock = threading.Lock()

    def via_gateway(self) -> bool:
        if self.config.route != "auto":
            return self.config.route == "gateway"
        with self._gateway_lock:
            now = time.monotonic()
            if now - self._gateway_checked >= GATEWAY_CHECK_SECONDS:
                self._gateway_checked = now
                was_up = self._gateway_up
                self._gateway_up = accepts_connections(self.config.gateway)
                if was_up != self._gateway_up and not self.config.quiet:
                    where = "through the gateway" if self._gateway_up else "straight to the services"
                    self._log(
                        f"loadgen: sending traffic {where} ({self.config.gateway.url} "
                        f"{'up' if self._gateway_up else 'not accepting connections'})"
                    )
            return self._gateway_up

    def operations(self) -> tuple[list[Operation], list[float]]:
        gateway = self.config.route == "gateway" or (self.config.route == "auto" and self.via_gateway())
        chosen = [
            op
            for op in OPERATIONS
            if (self.config.only is None or op.service == self.config.only) and (gateway or not op.gateway_only)
        ]
        return chosen, [op.weight for op in chosen]

    def run(self) -> dict:
        config = self.config
        tickets: queue.Queue[Operation | None] = queue.Queue(maxsize=config.concurrency)
        idle = threading.Semaphore(config.concurrency)
        workers = [
            threading.Thread(
                target=self._work,
                args=(tickets, idle, random.Random(self._rng.random())),
                name=f"loadgen-{i}",
                daemon=True,
            )
            for i in range(config.concurrency)
        ]
        for thread in workers:
            thread.start()
        if not config.quiet:
            self._log(
                f"loadgen: {config.rate} req/s, at most {config.concurrency} in flight, "
                f"{'for ' + str(config.duration) + ' s' if config.duration else 'until stopped'}, route "
                f"{config.route}{', only ' + config.only if config.only else ''}"
            )
        interval = 1.0 / config.rate
        start = time.monotonic()
        deadline = start + config.duration if config.duration else float("inf")
        next_report = start + config.report_every if config.report_every else float("inf")
        next_tick = start
        operations, weights = self.operations()
        operations_at = start
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_report:
                self._report()
                next_report += config.report_every
            if now - operations_at >= GATEWAY_CHECK_SECONDS:
                operations, weights = self.operations()
                operations_at = now
            if now < next_tick:
                self.stop.wait(min(next_tick, deadline, next_report) - now)
                continue
            next_tick += interval
            if next_tick < now - 1.0:
                next_tick = now  # we were suspended: do not burst to catch up
            if idle.acquire(blocking=False):
                tickets.put(self._rng.choices(operations, weights)[0])
            else:
                self.stats.skip()  # every worker busy (the services are slow): skip, never queue without bound
        for _ in workers:
            tickets.put(None)
        for thread in workers:
            thread.join(timeout=config.timeout + 5)
        summary = self.stats.snapshot()
        self._write_summary(summary)
        return summary

    def _work(self, tickets: queue.Queue[Operation | None], idle: threading.Semaphore, rng: random.Random) -> None:
        worker = Worker(self, rng)
        try:
            while True:
                operation = tickets.get()
                if operation is None:
                    return
                try:
                    operation.run(worker)
                except Exception as e:  # noqa: BLE001 - a bug in one operation must not stop the traffic
                    self._log(f"loadgen: {operation.name} failed: {type(e).__name__}: {e}")
                finally:
                    idle.release()
        finally:
            worker.close()

    def _report(self) -> None:
        summary = self.stats.snapshot()
        self._write_summary(summary)
        if not self.config.quiet:
            accounts, orders = self.world.counts()
            self._log(
                f"loadgen: {summary['requests']} requests ({summary['rate']} req/s) {summary['by_class']}, "
                f"skipped {summary['skipped_ticks']}, {accounts} accounts, {orders} orders remembered"
            )

    def _write_summary(self, summary: dict) -> None:
        path = self.config.summary_file
        if path is None:
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def accepts_connections(endpoint: Endpoint) -> bool:
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=1.0):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    generator = LoadGenerator(config, stop)
    summary = generator.run()
    print(format_summary(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
