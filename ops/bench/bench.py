#!/usr/bin/python3
"""Vigie's benchmark: four comparisons measured in one run on an isolated stack, printed as one table.

1. gateway vs nginx: GET /api/v1/users/{id} with a valid token through our gateway and through nginx (same user
   service instance behind both, same wrk settings); the user service without a proxy is the baseline row.
2. user read path vs the database alone: the same GET straight to the user service vs pgbench running the service's
   primary-key SELECT on the same row. CPU profiles (perf) of the user service, the gateway and the user service with
   observability on go to build/bench/profile-*.txt.
3. observability cost: a user service with metrics, access log and trace export to a local OTLP sink vs one with all
   of them off; the exported and dropped span counts come from the service's own /metrics.
4. footprint: resident memory of each service idle and at its peak under load; time from exec to /readyz 200.

Everything runs on free loopback ports under a temporary directory: the private PostgreSQL, roles, secrets and
services come from the system-test helpers (tests/system/vigie_stack.py, tests/gateway/gateway_stack.py). The
machine is shared and noisy, so the compared variants alternate within each round (A B A B ...) and the table shows
the median of the rounds; ratios are medians of the per-round ratios of back-to-back runs. A missed target is
printed as MISS; the exit status is 0 when everything was measured, 1 when something could not be (or more than 1 %
of the requests failed, which makes the figures meaningless), 2 on bad arguments.

    bench.py                  # the full run (about 5 1/2 minutes), table on stdout, build/bench/results.json
    bench.py --quick          # a smoke run: short runs, one round
    bench.py --duration 20 --connections 64

Stdlib only (runs with /usr/bin/python3); needs wrk, nginx, pgbench (postgresql-15) and, for the profiles, perf.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.server
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "gateway"))
sys.path.insert(0, str(REPO / "tests" / "system"))

from vigie_stack import PG_BINDIR, Service, StackError, free_port, tail  # noqa: E402

from gateway_stack import GatewayStack  # noqa: E402

OUT_DIR = REPO / "build" / "bench"
WRK = Path("/usr/bin/wrk")
NGINX = Path("/usr/sbin/nginx")
PERF = Path("/usr/bin/perf")
PGBENCH = PG_BINDIR / "pgbench"

# wrk and pgbench threads: one per core of the 2-core reference machine (the services are single-threaded).
LOAD_THREADS = 2
# PostgreSQL's max_connections is 100 in the test cluster; the services' pools hold up to 4 x 8 of them, pgbench
# opens --connections more.
MAX_CONNECTIONS = 64
# Per replica, as many idle upstream connections as the gateway keeps (its UPSTREAM_MAX_IDLE default).
UPSTREAM_KEEPALIVE = 128
WARMUP_SECONDS = 2
RSS_SAMPLE_SECONDS = 0.02
READY_POLL_SECONDS = 0.002

TARGET_GATEWAY_RPS_RATIO = 0.8  # gateway req/s at least this share of nginx's
TARGET_GATEWAY_P99_RATIO = 1.5  # gateway p99 at most this multiple of nginx's
TARGET_OBSERVABILITY_LOSS = 5.0  # % of throughput
TARGET_IDLE_RSS_MIB = 20.0
TARGET_READY_MS = 200.0

# The replicas' settings: the production pool size (deploy/local), no fault switches, a token that outlives the run.
REPLICA_ENV = {"DB_POOL_SIZE": "8", "FAULTS_ENABLED": "false", "JWT_TTL": "1h"}
# The gateway's per-client rate limit would cap one load generator on 127.0.0.1; nginx has none either.
GATEWAY_ENV = {"RATE_LIMIT_RPS": "0"}
OBSERVABILITY_OFF = {"METRICS_ENABLED": "false", "ACCESS_LOG": "false", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""}
OBSERVABILITY_ON = {
    "METRICS_ENABLED": "true",
    "ACCESS_LOG": "true",
    "OTEL_TRACES_SAMPLER_ARG": "1.0",
    "LOG_LEVEL": "info",
}  # plus the sink's endpoint

# The statement UserStore::find_by_id runs (services/user/src/user_store.cpp), word for word; the service sends the id
# as a text parameter of the extended protocol (libpq's PQsendQueryParams), as pgbench -M extended binds :id.
USER_BY_ID_SQL = (
    "SELECT id::text, email, name, role, password_hash, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
    "FROM users WHERE id = $1::uuid"
)


def pgbench_script(sql: str) -> str:
    """The statement as a pgbench script: $1 becomes the variable :id. pgbench takes every ':name' for a variable,
    even inside a string literal, so colons in literals are written as Unicode escapes (U&'..\\003A..'): the server
    reads the very same constant."""

    def escape_colons(literal: re.Match) -> str:
        text = literal.group(1)
        return "U&'" + text.replace(":", "\\003A") + "'" if ":" in text else literal.group(0)

    return re.sub(r"'([^']*)'", escape_colons, sql).replace("$1", ":id") + ";\n"


class BenchError(RuntimeError):
    """Something could not be measured; the message says what."""


# -- settings ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    duration: int  # seconds of one measured run
    connections: int
    rounds: int
    starts: int  # process starts timed per service

    @property
    def total_runs_seconds(self) -> int:
        # 4 variants in comparisons 1-2 and 2 in comparison 3, each warmed up once; the order load; 3 profiles.
        return self.duration * (6 * self.rounds + 4) + 6 * WARMUP_SECONDS


def bounded_int(low: int, high: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        description="Benchmark Vigie on an isolated stack: gateway vs nginx, user service vs pgbench, the cost of "
        "observability, memory and start-up time. Prints one table; writes build/bench/results.json "
        "and build/bench/profile-*.txt."
    )
    parser.add_argument(
        "--duration",
        type=bounded_int(1, 600),
        metavar="SECONDS",
        help="length of each measured load run (default 5, --quick 3)",
    )
    parser.add_argument(
        "--connections",
        type=bounded_int(LOAD_THREADS, MAX_CONNECTIONS),
        metavar="N",
        help=f"concurrent connections of wrk and clients of pgbench (default 32, at most {MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--rounds",
        type=bounded_int(1, 15),
        metavar="N",
        help="rounds of alternating runs; the table shows their median (default 6, --quick 1)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s runs, one round, 3 timed starts")
    args = parser.parse_args(argv)
    quick = args.quick
    # Many short rounds rather than a few long ones: the background load of a shared machine changes within
    # seconds, and back-to-back pairs of short runs see the same background.
    return Settings(
        duration=args.duration or (3 if quick else 5),
        connections=args.connections or 32,
        rounds=args.rounds or (1 if quick else 6),
        starts=3 if quick else 5,
    )


# -- load tools --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class LoadResult:
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    errors: int  # non-2xx answers and socket errors (wrk), failed transactions (pgbench)
    error_detail: str = ""  # what kind of errors, as the tool printed them
    # CPU time (user + system) each watched process spent per answered request: less noisy than req/s on a busy
    # machine, since it does not depend on how much of the CPU the process was given.
    cpu_us_per_request: dict[str, float] = dataclasses.field(default_factory=dict)


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk_duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    def grab(pattern: str) -> str | None:
        match = re.search(pattern, output, re.MULTILINE)
        return match.group(1) if match else None

    rps, requests = grab(r"^Requests/sec:\s+([\d.]+)"), grab(r"^\s*(\d+) requests in")
    p50, p99 = grab(r"^\s+50%\s+(\S+)"), grab(r"^\s+99%\s+(\S+)")
    if None in (rps, requests, p50, p99):
        raise BenchError(f"unreadable wrk output:\n{output}")
    non_2xx = int(grab(r"Non-2xx or 3xx responses:\s+(\d+)") or 0)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = non_2xx + (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0)
    detail = ", ".join(
        part
        for part in (f"non-2xx {non_2xx}" if non_2xx else "", socket_errors.group(0) if socket_errors else "")
        if part
    )
    return LoadResult(float(rps), wrk_duration_ms(p50), wrk_duration_ms(p99), int(requests), errors, detail)


def run_wrk(url: str, token: str, settings: Settings, duration: int) -> LoadResult:
    cmd = [
        str(WRK),
        f"-t{LOAD_THREADS}",
        f"-c{settings.connections}",
        f"-d{duration}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    if result.returncode != 0:
        raise BenchError(f"wrk exited {result.returncode}: {result.stderr.strip()}")
    return parse_wrk(result.stdout)


def parse_pgbench(output: str) -> LoadResult:
    tps = re.search(r"^tps = ([\d.]+)", output, re.MULTILINE)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    latency = re.search(r"^latency average = ([\d.]+) ms", output, re.MULTILINE)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    if not (tps and processed):
        raise BenchError(f"unreadable pgbench output:\n{output}")
    # pgbench prints no percentiles without per-transaction logs; its average latency stands in the p50 column.
    return LoadResult(
        float(tps.group(1)),
        float(latency.group(1)) if latency else None,
        None,
        int(processed.group(1)),
        int(failed.group(1)) if failed else 0,
    )


@dataclasses.dataclass
class PgbenchTarget:
    """pgbench against the user database as the service connects: unix socket, users_app role, scram password."""

    socket_dir: Path
    port: int
    password: str
    script: Path
    user_id: str

    def run(self, settings: Settings, duration: int) -> LoadResult:
        cmd = [
            str(PGBENCH),
            "-n",
            "-M",
            "extended",
            "-c",
            str(settings.connections),
            "-j",
            str(LOAD_THREADS),
            "-T",
            str(duration),
            "-f",
            str(self.script),
            "-D",
            f"id={self.user_id}",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "users_app",
            "users",
        ]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": self.password}
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60, check=False)
        if result.returncode != 0:
            raise BenchError(f"pgbench exited {result.returncode}:\n{result.stderr.strip()}")
        return parse_pgbench(result.stdout)


# -- processes of our own ----------------------------------------------------------------------------------------------


class Nginx:
    """nginx in the foreground (daemon off) with a generated config: a keep-alive reverse proxy to one upstream."""

    def __init__(self, root: Path, upstream_port: int, workers: int):
        self.root = root / "nginx"
        self.port = free_port()
        self.workers = workers
        self.upstream_port = upstream_port
        self.process: subprocess.Popen | None = None
        self.log_file = None

    def config(self) -> str:
        temp = {kind: self.root / "tmp" / kind for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        return f"""# Generated by ops/bench/bench.py: a plain reverse proxy to the user service the gateway uses.
daemon off;
worker_processes {self.workers};
pid {self.root}/nginx.pid;
error_log {self.root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {self.root}/access.log;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    upstream user_service {{
        server 127.0.0.1:{self.upstream_port};
        keepalive {UPSTREAM_KEEPALIVE};
    }}
    server {{
        listen 127.0.0.1:{self.port};
        location / {{
            proxy_pass http://user_service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        (self.root / "tmp").mkdir(parents=True)
        conf = self.root / "nginx.conf"
        conf.write_text(self.config())
        self.log_file = open(self.root / "stderr.log", "ab")
        self.process = subprocess.Popen(
            [str(NGINX), "-p", str(self.root), "-c", str(conf), "-e", str(self.root / "error.log")],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"nginx did not start:\n{tail(self.root / 'error.log')}")
            time.sleep(0.02)

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class OtlpSink:
    """A stand-in OTLP/HTTP collector on a thread: 200 to every POST, counting requests, bytes and spans.

    Spans are counted by their "spanId" keys (bytes.count, no JSON parsing), so the sink costs the machine little
    more than reading the bodies.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = self.bytes = self.spans = 0
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the exporter's client expects
            # The head and the body go out as two writes: with Nagle, the body would wait for the exporter's
            # delayed ACK (40 ms per export), and the sink, not the service, would set the export rate.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink.lock:
                    sink.requests += 1
                    sink.bytes += len(body)
                    sink.spans += body.count(b'"spanId"')
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server API)
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "bytes": self.bytes, "spans": self.spans}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class PeakRss:
    """While a load runs, samples VmRSS of some processes every 20 ms on a thread and keeps each one's highest."""

    def __init__(self, pids: dict[str, int], peaks: dict[str, int]):
        self.pids = pids
        self.peaks = peaks  # name -> KiB, shared across runs
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while not self.stopping.is_set():
            for name, pid in self.pids.items():
                rss = vm_rss_kib(pid)
                if rss is not None:
                    self.peaks[name] = max(self.peaks.get(name, 0), rss)
            self.stopping.wait(RSS_SAMPLE_SECONDS)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)


def vm_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class CpuTime:
    """CPU seconds (user + system, all threads) each group of processes spends inside the `with` block."""

    def __init__(self, groups: dict[str, list[int]]):
        self.groups = groups
        self.spent: dict[str, float] = {}

    def total(self, pids: list[int]) -> float:
        return sum(cpu_seconds(pid) for pid in pids)

    def __enter__(self) -> CpuTime:
        self.start = {name: self.total(pids) for name, pids in self.groups.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.spent = {name: self.total(pids) - self.start[name] for name, pids in self.groups.items()}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime, fields 14 and 15 of proc(5), counted from the state (field 3) here.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_of(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[1]) == parent:
                children.append(int(entry.name))
    return children


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def readyz_ok(port: int) -> bool:
    """GET /readyz on a raw socket: cheaper than urllib, so a 2 ms poll measures the service, not the poller."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
            conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return conn.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# -- the stack and its data --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Bench:
    """Everything running for the benchmark, and the account whose record the load reads."""

    stack: GatewayStack
    sink: OtlpSink
    nginx: Nginx | None = None
    observability_off: Service | None = None
    observability_on: Service | None = None
    tracing_off: Service | None = None  # metrics and access log on, no span export: isolates tracing's cost
    pgbench: PgbenchTarget | None = None
    token: str = ""
    user_id: str = ""
    peaks: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def user(self) -> Service:
        return self.stack.user

    def user_url(self, base_url: str) -> str:
        return f"{base_url}/api/v1/users/{self.user_id}"


def call_json(
    method: str, url: str, body: dict | None = None, token: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode("utf-8", "replace")}


def create_account(bench: Bench) -> None:
    email, password = f"bench-{uuid.uuid4().hex[:10]}@example.com", "correct horse battery"
    status, body = call_json(
        "POST", bench.user.base_url + "/api/v1/users", {"email": email, "password": password, "name": "Bench"}
    )
    if status != 201:
        raise BenchError(f"sign-up answered {status}: {body}")
    bench.user_id = body["id"]
    status, body = call_json("POST", bench.user.base_url + "/api/v1/auth/login", {"email": email, "password": password})
    if status != 200:
        raise BenchError(f"login answered {status}: {body}")
    bench.token = body["access_token"]


def place_order(bench: Bench) -> None:
    """One order, so that the order service's list has a row to read under load."""
    status, body = call_json(
        "POST",
        bench.stack.order.base_url + "/api/v1/orders",
        {"items": [{"sku": "BENCH-1", "quantity": 1, "unit_price_cents": 100}]},
        token=bench.token,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    if status != 201:
        raise BenchError(f"placing an order answered {status}: {body}")


def check_answers(bench: Bench) -> None:
    """Every URL under test answers 200 with the same user record before any load is measured."""
    bases = {
        "gateway": bench.stack.gateway_url,
        "nginx": bench.nginx.base_url,
        "user": bench.user.base_url,
        "observability off": bench.observability_off.base_url,
        "observability on": bench.observability_on.base_url,
        "tracing off": bench.tracing_off.base_url,
    }
    for name, base in bases.items():
        status, body = call_json("GET", bench.user_url(base), token=bench.token)
        if status != 200 or body.get("id") != bench.user_id:
            raise BenchError(f"GET {bench.user_url(base)} ({name}) answered {status}: {body}")


def start_everything(bench: Bench) -> None:
    stack = bench.stack
    stack.start()
    bench.observability_off = stack.start_service("user", **REPLICA_ENV, **OBSERVABILITY_OFF)
    bench.observability_on = stack.start_service(
        "user", **REPLICA_ENV, **OBSERVABILITY_ON, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=bench.sink.endpoint
    )
    bench.tracing_off = stack.start_service(
        "user", **REPLICA_ENV, **OBSERVABILITY_ON, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=""
    )
    # One nginx worker per gateway thread: the gateway serves on one event loop (kit/service's io_context{1}).
    bench.nginx = Nginx(stack.root, stack.user.http_port, workers=thread_count(stack.gateway.pid))
    bench.nginx.start()
    create_account(bench)
    place_order(bench)
    script = stack.root / "user_by_id.sql"
    script.write_text(pgbench_script(USER_BY_ID_SQL))
    bench.pgbench = PgbenchTarget(
        stack.pg.socket_dir, stack.pg.port, stack.passwords["users_app"], script, bench.user_id
    )
    check_answers(bench)


# -- measurements ------------------------------------------------------------------------------------------------------


def wrk_variant(bench: Bench, base_url: str, rss_pids: dict[str, int], cpu_pids: dict[str, list[int]]):
    def run(settings: Settings, duration: int) -> LoadResult:
        with PeakRss(rss_pids, bench.peaks), CpuTime(cpu_pids) as cpu:
            result = run_wrk(bench.user_url(base_url), bench.token, settings, duration)
        if result.requests:
            result.cpu_us_per_request = {name: spent / result.requests * 1e6 for name, spent in cpu.spent.items()}
        return result

    return run


def warm_up(variants: dict, settings: Settings) -> dict[str, LoadResult]:
    """A short unmeasured run of each variant: connection pools filled, pages touched, caches warm."""
    return {name: run(settings, WARMUP_SECONDS) for name, run in variants.items()}


def interleaved_rounds(variants: dict, settings: Settings) -> dict[str, list[LoadResult]]:
    """Runs the variants in turns, the order rotating each round (A B C, B C A, ...)."""
    names = list(variants)
    results: dict[str, list[LoadResult]] = {name: [] for name in names}
    for round_index in range(settings.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            result = variants[name](settings, settings.duration)
            results[name].append(result)
            print(
                f"  round {round_index + 1}/{settings.rounds} {name:<22} {result.rps:10.0f} req/s"
                + (f"  p99 {result.p99_ms:.2f} ms" if result.p99_ms is not None else ""),
                flush=True,
            )
    return results


def proxy_and_database_runs(bench: Bench, settings: Settings) -> dict[str, list[LoadResult]]:
    user, gateway = bench.user.pid, bench.stack.gateway.pid
    variants = {
        "gateway": wrk_variant(
            bench, bench.stack.gateway_url, {"gateway": gateway, "user": user}, {"proxy": [gateway], "user": [user]}
        ),
        "nginx": wrk_variant(
            bench, bench.nginx.base_url, {"user": user}, {"proxy": bench.nginx.worker_pids(), "user": [user]}
        ),
        "user direct": wrk_variant(bench, bench.user.base_url, {"user": user}, {"user": [user]}),
        "pgbench": bench.pgbench.run,
    }
    warm_up(variants, settings)
    return interleaved_rounds(variants, settings)


def metric_values(service: Service, name: str) -> dict[str, float]:
    """Every sample of one metric on the service's /metrics, keyed by its label set ('' when it has none)."""
    with urllib.request.urlopen(service.admin_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for match in re.finditer(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE):
        values[match.group(1) or ""] = float(match.group(2))
    return values


def span_counts(service: Service) -> dict[str, float]:
    """The exporter's counters: spans exported, dropped by reason, and its successful exports' count and time."""
    counts = {"exported": sum(metric_values(service, "otel_spans_exported_total").values())}
    for labels, value in metric_values(service, "otel_spans_dropped_total").items():
        reason = re.search(r'reason="([^"]*)"', labels)
        counts[f"dropped {reason.group(1) if reason else labels}"] = value
    for suffix in ("count", "sum"):
        values = metric_values(service, f"otel_export_duration_seconds_{suffix}")
        counts[f"exports {suffix}"] = sum(v for labels, v in values.items() if 'outcome="success"' in labels)
    return counts


def observability_runs(bench: Bench, settings: Settings) -> tuple[dict[str, list[LoadResult]], dict]:
    on, off, untraced = bench.observability_on, bench.observability_off, bench.tracing_off
    variants = {
        "observability off": wrk_variant(bench, off.base_url, {}, {"user": [off.pid], "sink": [os.getpid()]}),
        "observability on": wrk_variant(bench, on.base_url, {}, {"user": [on.pid], "sink": [os.getpid()]}),
        "tracing off": wrk_variant(bench, untraced.base_url, {}, {"user": [untraced.pid], "sink": [os.getpid()]}),
    }
    before_spans, before_sink = span_counts(on), bench.sink.counts()
    warm = warm_up(variants, settings)
    results = interleaved_rounds(variants, settings)
    time.sleep(2.5)  # the exporter flushes every second: let the last batches reach the sink
    after_spans, after_sink = span_counts(on), bench.sink.counts()
    spans = {key: after_spans.get(key, 0) - before_spans.get(key, 0) for key in after_spans}
    spans |= {f"sink {key}": after_sink[key] - before_sink[key] for key in after_sink}
    # The counters cover every request the "on" service answered in this phase, warm-up included.
    spans["requests"] = warm["observability on"].requests + sum(r.requests for r in results["observability on"])
    exports, seconds = spans.pop("exports count"), spans.pop("exports sum")
    spans["export mean ms"] = seconds / exports * 1000 if exports else None
    return results, spans


def order_peak_run(bench: Bench, settings: Settings) -> LoadResult:
    """The order service's list route under the same load, for its peak memory."""
    url = bench.stack.order.base_url + "/api/v1/orders"
    with PeakRss({"order": bench.stack.order.pid}, bench.peaks):
        return run_wrk(url, bench.token, settings, settings.duration)


# -- profile -----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Profile:
    event: str | None = None
    samples: str | None = None
    symbols: list[str] = dataclasses.field(default_factory=list)  # self time by symbol
    dso_symbols: list[str] = dataclasses.field(default_factory=list)  # the same, naming each symbol's library
    dsos: list[str] = dataclasses.field(default_factory=list)  # self time by library
    unavailable: str | None = None  # why no profile could be recorded
    load: LoadResult | None = None  # the wrk run made while perf recorded


def perf_record(pid: int, data: Path, seconds: int, event: list[str]) -> tuple[subprocess.Popen, Path]:
    log = data.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(PERF), "record", *event, "-g", "-p", str(pid), "-o", str(data), "--", "sleep", str(seconds)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


def perf_report_lines(data: Path, sort: str, limit: int) -> list[str]:
    result = subprocess.run(
        [str(PERF), "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio", "-g", "none"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"perf report failed: {result.stderr.strip()}")
    return [tidy_perf_line(line) for line in result.stdout.splitlines() if re.match(r"^\s+\d+\.\d+%", line)][:limit]


def tidy_perf_line(line: str) -> str:
    """Drops the padding perf adds to fit its longest (C++ template) name and the empty IPC columns."""
    line = re.sub(r"(\s+-){2}\s*$", "", line.rstrip())
    fields = line.split()
    percent, rest = fields[0], " ".join(fields[1:])
    return f"{percent:>7}  {rest[:140]}"


@dataclasses.dataclass(frozen=True)
class ProfileTarget:
    """A process to profile and the URL loaded meanwhile."""

    name: str  # profile-<name>.txt
    title: str
    pid: int
    base_url: str


def profile_targets(bench: Bench) -> list[ProfileTarget]:
    return [
        ProfileTarget("user", "the user service, loaded directly", bench.user.pid, bench.user.base_url),
        ProfileTarget(
            "gateway", "the gateway, in front of the user service", bench.stack.gateway.pid, bench.stack.gateway_url
        ),
        ProfileTarget(
            "user-observability-on",
            "the user service with metrics, access log and OTLP export on",
            bench.observability_on.pid,
            bench.observability_on.base_url,
        ),
    ]


def record_profile(bench: Bench, target: ProfileTarget, settings: Settings) -> Profile:
    """Records one process's CPU while wrk loads it (a run of its own: perf's overhead stays out of the table)."""
    if not PERF.exists():
        return Profile(unavailable=f"{PERF} is not installed (Debian package linux-perf)")
    data = bench.stack.root / f"perf-{target.name}.data"
    failures = []
    # The default event first; cpu-clock (a software timer) where hardware counters are not exposed, as in a VM.
    for event in ([], ["-e", "cpu-clock"]):
        process, log = perf_record(target.pid, data, settings.duration + 1, event)
        time.sleep(0.5)  # perf attaches before the load starts
        load = None
        if process.poll() is None:
            load = run_wrk(bench.user_url(target.base_url), bench.token, settings, settings.duration)
        code = process.wait(timeout=settings.duration + 60)
        if code == 0 and data.exists():
            return dataclasses.replace(read_profile(data), load=load)
        failures.append(f"perf record {' '.join(event) or '(default event)'} exited {code}: {tail(log, 600).strip()}")
    return Profile(unavailable="; ".join(failures))


def read_profile(data: Path) -> Profile:
    header = subprocess.run(
        [str(PERF), "report", "-i", str(data), "--header-only"], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    event = re.search(r"^# event : name = ([^,]+),", header, re.MULTILINE)
    samples = subprocess.run(
        [str(PERF), "report", "-i", str(data), "--stdio", "--no-children", "--sort", "dso", "-g", "none"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    ).stdout
    count = re.search(r"^# Samples: (\S+)", samples, re.MULTILINE)
    return Profile(
        event=event.group(1) if event else None,
        samples=count.group(1) if count else None,
        symbols=perf_report_lines(data, "symbol", 15),
        dso_symbols=perf_report_lines(data, "dso,symbol", 15),
        dsos=perf_report_lines(data, "dso", 8),
    )


def write_profile(target: ProfileTarget, profile: Profile, settings: Settings) -> Path:
    path = OUT_DIR / f"profile-{target.name}.txt"
    if profile.unavailable:
        path.write_text(f"No profile of {target.title}: {profile.unavailable}\n")
        return path
    path.write_text(
        f"# CPU profile of {target.title}: GET /api/v1/users/{{id}}, wrk -t{LOAD_THREADS} "
        f"-c{settings.connections} -d{settings.duration}s\n"
        f"# perf record -g -p <pid> (event {profile.event}, {profile.samples} samples); self time:\n"
        f"# perf report --no-children --sort symbol --stdio -g none (top {len(profile.symbols)})\n"
        + "\n".join(profile.symbols)
        + "\n\n# by shared object and symbol (symbols of a library without debug symbols show as addresses):\n"
        + "# perf report --no-children --sort dso,symbol --stdio -g none\n"
        + "\n".join(profile.dso_symbols)
        + "\n\n# by shared object: perf report --no-children --sort dso --stdio -g none\n"
        + "\n".join(profile.dsos)
        + "\n"
    )
    return path


# -- footprint ---------------------------------------------------------------------------------------------------------


def timed_start(service: Service) -> tuple[float, int]:
    """Starts the process, polls its /readyz every 2 ms; returns (ms from exec to the first 200, VmRSS KiB then)."""
    service.log_file = open(service.log_path, "ab")
    started = time.monotonic()
    service.process = subprocess.Popen(
        [str(service.binary), "serve"],
        env=service.env,
        stdout=service.log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = started + 30
    while not readyz_ok(service.admin_port):
        if service.process.poll() is not None:
            raise BenchError(
                f"{service.name} exited {service.process.returncode} before it was ready\n{tail(service.log_path)}"
            )
        if time.monotonic() > deadline:
            raise BenchError(f"{service.name} was not ready after 30 s\n{tail(service.log_path)}")
        time.sleep(READY_POLL_SECONDS)
    elapsed_ms = (time.monotonic() - started) * 1000
    return elapsed_ms, service.rss_kib()


def start_env(stack: GatewayStack, name: str, http_port: int, admin_port: int) -> dict[str, str]:
    """The environment the running instance of `name` got, on other ports."""
    if name == "gateway":
        return stack.gateway.env | {"HTTP_PORT": str(http_port), "ADMIN_PORT": str(admin_port)}
    extra = {"USER_SERVICE_URL": stack.gateway_url} if name == "order" else {}
    return stack.service_env(name, http_port, admin_port, **REPLICA_ENV, **extra)


def time_starts(stack: GatewayStack, name: str, starts: int) -> dict[str, list[float]]:
    times, idle = [], []
    for index in range(starts):
        http_port, admin_port = free_port(), free_port()
        service = Service(
            name=name,
            binary=stack.binary(name),
            env=start_env(stack, name, http_port, admin_port),
            log_path=stack.root / f"{name}-start-{index}.log",
            http_port=http_port,
            admin_port=admin_port,
        )
        stack.services.append(service)  # the stack's close() stops it if we are interrupted
        elapsed_ms, rss_kib = timed_start(service)
        service.stop()
        times.append(elapsed_ms)
        idle.append(rss_kib)
    return {"ready_ms": times, "idle_rss_kib": idle}


# -- report ------------------------------------------------------------------------------------------------------------


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def paired_ratio(numerators: list[LoadResult], denominators: list[LoadResult], field: str) -> float | None:
    """Median of the per-round ratios of a field ('rps', 'p99_ms', or 'cpu:<process>' for CPU per request): each
    pair ran back to back, so slow drift of the machine cancels out."""

    def value(result: LoadResult) -> float | None:
        if field.startswith("cpu:"):
            return result.cpu_us_per_request.get(field[4:])
        return getattr(result, field)

    ratios = [value(a) / value(b) for a, b in zip(numerators, denominators, strict=True) if value(a) and value(b)]
    return statistics.median(ratios) if ratios else None


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"


@dataclasses.dataclass
class Row:
    label: str
    rps: float | None = None
    p50: float | None = None
    p99: float | None = None
    figure: str = ""
    target: str = ""
    result: str = ""
    section: bool = False


def load_row(label: str, runs: list[LoadResult], figure: str = "") -> Row:
    errors = sum(r.errors for r in runs)
    note = f"{errors} errors" if errors else ""
    return Row(
        label,
        median([r.rps for r in runs]),
        median([r.p50_ms for r in runs]),
        median([r.p99_ms for r in runs]),
        figure or note,
        result="" if not errors else "!",
    )


def check_row(label: str, value: float | None, text: str, target: float, higher: bool, target_text: str) -> Row:
    return Row(
        label, figure=text if value is not None else "n/a", target=target_text, result=verdict(value, target, higher)
    )


def times(ratio: float | None, digits: int = 2) -> str:
    return f"{ratio:.{digits}f}x" if ratio is not None else "n/a"


def cpu_us(runs: list[LoadResult], process: str) -> float | None:
    """Median over the rounds of one process's CPU microseconds per request."""
    return median([r.cpu_us_per_request.get(process) for r in runs])


def microseconds(*values: float | None) -> str:
    return " / ".join("n/a" if v is None else f"{v:.0f}" for v in values) + " us"


def comparison_rows(runs: dict[str, list[LoadResult]], nginx_workers: int, gateway_threads: int) -> list[Row]:
    rps_ratio = paired_ratio(runs["gateway"], runs["nginx"], "rps")
    p50_ratio = paired_ratio(runs["gateway"], runs["nginx"], "p50_ms")
    p99_ratio = paired_ratio(runs["gateway"], runs["nginx"], "p99_ms")
    db_ratio = paired_ratio(runs["user direct"], runs["pgbench"], "rps")
    return [
        Row("1. gateway vs nginx: GET /api/v1/users/{id}, same user service behind both", section=True),
        load_row(f"gateway ({gateway_threads} thread)", runs["gateway"]),
        load_row(f"nginx ({nginx_workers} worker, keepalive)", runs["nginx"]),
        load_row("user service direct (baseline)", runs["user direct"]),
        # A third digit where a target decides: 0.7996 must not read as a missed "0.80x".
        check_row(
            "gateway / nginx req/s",
            rps_ratio,
            times(rps_ratio, 3),
            TARGET_GATEWAY_RPS_RATIO,
            True,
            f">= {TARGET_GATEWAY_RPS_RATIO}x",
        ),
        Row("gateway / nginx p50", figure=times(p50_ratio)),
        check_row(
            "gateway / nginx p99",
            p99_ratio,
            times(p99_ratio, 3),
            TARGET_GATEWAY_P99_RATIO,
            False,
            f"<= {TARGET_GATEWAY_P99_RATIO}x",
        ),
        Row(
            "CPU per request: gateway / nginx",
            figure=microseconds(cpu_us(runs["gateway"], "proxy"), cpu_us(runs["nginx"], "proxy")),
        ),
        Row(
            "  user service behind gateway/nginx/none",
            figure=microseconds(*(cpu_us(runs[name], "user") for name in ("gateway", "nginx", "user direct"))),
        ),
        Row("2. user read path vs the database alone", section=True),
        load_row("user service direct", runs["user direct"]),
        load_row("pgbench, same SELECT (p50 = avg)", runs["pgbench"]),
        Row("user service / pgbench req/s", figure=times(db_ratio)),
    ]


def observability_rows(runs: dict[str, list[LoadResult]], spans: dict) -> list[Row]:
    ratio = paired_ratio(runs["observability on"], runs["observability off"], "rps")
    loss = (1 - ratio) * 100 if ratio is not None else None
    exported = spans.get("exported", 0)
    dropped = sum(v for k, v in spans.items() if k.startswith("dropped") and v)
    off, on = runs["observability off"], runs["observability on"]
    cpu_ratio = paired_ratio(on, off, "cpu:user")
    cpu_added = f" ({(cpu_ratio - 1) * 100:+.0f} %)" if cpu_ratio is not None else ""
    return [
        Row("3. observability cost: user service direct, all on vs all off", section=True),
        load_row("off (no metrics, access log, export)", runs["observability off"]),
        load_row("on (metrics, access log, OTLP 100 %)", runs["observability on"]),
        check_row(
            "throughput lost",
            loss,
            f"{loss:.2f} %" if loss is not None else "",
            TARGET_OBSERVABILITY_LOSS,
            False,
            f"<= {TARGET_OBSERVABILITY_LOSS:.0f} %",
        ),
        Row("CPU per request: off / on", figure=microseconds(cpu_us(off, "user"), cpu_us(on, "user")) + cpu_added),
        # The sink runs in this script: on a 2-core machine its CPU is taken from the service's share.
        Row("  OTLP sink (this script) off / on", figure=microseconds(cpu_us(off, "sink"), cpu_us(on, "sink"))),
        Row(
            "spans exported / dropped",
            figure=f"{exported:.0f} / {dropped:.0f}",
            target="0 dropped",
            result="PASS" if exported > 0 and dropped == 0 else "MISS",
        ),
        # Tracing alone: the same service with metrics and access log, with and without span export at 100 %.
        load_row("metrics + access log, no tracing", runs["tracing off"]),
        Row(
            "throughput lost to tracing (100 % sampled)",
            figure=percent_lost(runs["observability on"], runs["tracing off"]),
        ),
        Row(
            "CPU per request: no tracing / tracing",
            figure=microseconds(cpu_us(runs["tracing off"], "user"), cpu_us(on, "user")),
        ),
    ]


def percent_lost(with_it: list[LoadResult], without: list[LoadResult]) -> str:
    ratio = paired_ratio(with_it, without, "rps")
    return f"{(1 - ratio) * 100:.2f} %" if ratio is not None else ""


def footprint_rows(starts: dict[str, dict[str, list[float]]], peaks: dict[str, int]) -> list[Row]:
    rows = [Row("4. footprint (VmRSS; time from exec to /readyz 200, median of starts)", section=True)]
    for name in ("gateway", "user", "order"):
        idle_mib = median(starts[name]["idle_rss_kib"]) / 1024
        ready_ms = median(starts[name]["ready_ms"])
        rows.append(
            check_row(
                f"{name} idle RSS",
                idle_mib,
                f"{idle_mib:.1f} MiB",
                TARGET_IDLE_RSS_MIB,
                False,
                f"< {TARGET_IDLE_RSS_MIB:.0f} MiB",
            )
        )
        peak = peaks.get(name)
        rows.append(Row(f"{name} peak RSS under load", figure=f"{peak / 1024:.1f} MiB" if peak else "n/a"))
        rows.append(
            check_row(
                f"{name} time to ready",
                ready_ms,
                f"{ready_ms:.0f} ms",
                TARGET_READY_MS,
                False,
                f"< {TARGET_READY_MS:.0f} ms",
            )
        )
    return rows


def render_table(rows: list[Row]) -> str:
    def number(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:,.{digits}f}"

    header = f"{'measurement':<42} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7}  {'figure':<20} {'target':<11} result"
    lines = [header, "-" * len(header)]
    for row in rows:
        if row.section:
            lines.append(row.label)
            continue
        lines.append(
            f"  {row.label:<40} {number(row.rps, 0):>9} {number(row.p50, 2):>7} {number(row.p99, 2):>7}  "
            f"{row.figure:<20} {row.target:<11} {row.result}".rstrip()
        )
    return "\n".join(lines)


def machine_info() -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    # Only changes to what the binaries are built from make the commit an inexact description of what ran.
    dirty = subprocess.run(
        [
            "git",
            "-C",
            str(REPO),
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            "services",
            "CMakeLists.txt",
            "CMakePresets.json",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": os.uname().release,
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "commit": commit + (" (with uncommitted changes to services/)" if dirty else ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def print_profile_summary(target: ProfileTarget, profile: Profile, path: Path) -> None:
    if profile.unavailable:
        print(f"\nCPU profile of {target.title}: not recorded ({profile.unavailable})")
        return
    print(
        f"\nCPU profile of {target.title} ({profile.event}, {profile.samples} samples; "
        f"{path.relative_to(REPO)}), self time by library: "
        + ", ".join(" ".join(line.split()) for line in profile.dsos[:5])
    )
    for line in profile.dso_symbols[:6]:
        print(f"  {line.strip()[:110]}")


def as_json(value: object) -> object:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


# -- main --------------------------------------------------------------------------------------------------------------


def check_tools() -> None:
    missing = [
        f"{tool} ({package})"
        for tool, package in ((WRK, "wrk"), (NGINX, "nginx"), (PGBENCH, "postgresql-15"))
        if not tool.exists()
    ]
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}; install them (tools/install-deps.sh)")


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop every process we started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def measure(bench: Bench, settings: Settings) -> dict:
    print("starting PostgreSQL, the services and nginx ...", flush=True)
    start_everything(bench)
    gateway_threads = thread_count(bench.stack.gateway.pid)
    print("comparisons 1 and 2: gateway, nginx, user service direct, pgbench", flush=True)
    proxy_runs = proxy_and_database_runs(bench, settings)
    print("comparison 3: observability off / on", flush=True)
    obs_runs, spans = observability_runs(bench, settings)
    print("footprint: order service under load, then timed starts", flush=True)
    order_run = order_peak_run(bench, settings)
    print("CPU profiles (perf record) ...", flush=True)
    targets = profile_targets(bench)
    profiles = {target.name: record_profile(bench, target, settings) for target in targets}
    starts = {name: time_starts(bench.stack, name, settings.starts) for name in ("gateway", "user", "order")}
    failed_answers = error_statuses([s.log_path for s in bench.stack.services] + [bench.nginx.root / "access.log"])
    return {
        "proxy_runs": proxy_runs,
        "observability_runs": obs_runs,
        "spans": spans,
        "order_run": order_run,
        "failed_answers": failed_answers,
        "profile_targets": targets,
        "profiles": profiles,
        "starts": starts,
        "peaks_kib": dict(bench.peaks),
        "gateway_threads": gateway_threads,
        "nginx_workers": bench.nginx.workers,
    }


def error_statuses(logs: list[Path]) -> dict[str, dict[str, int]]:
    """Per log, how many API answers had each 4xx/5xx status (JSON access logs and nginx's combined format); the
    admin port's /readyz and /metrics are left out."""
    found = {}
    status = re.compile(r'"http.response.status_code":([45]\d\d)|HTTP/1\.1" ([45]\d\d) ')
    for log in logs:
        if not log.exists():
            continue
        # grep first: the logs hold a line per request, hundreds of megabytes after a full run.
        result = subprocess.run(
            ["grep", "-E", r'status_code":[45]|" [45][0-9]{2} ', str(log)], capture_output=True, text=True, check=False
        )
        statuses = [
            next(group for group in match.groups() if group)
            for line in result.stdout.splitlines()
            if "/api/" in line and (match := status.search(line))
        ]
        if statuses:
            found[log.name] = {status: statuses.count(status) for status in sorted(set(statuses))}
    return found


def report(measured: dict, settings: Settings, machine: dict[str, str]) -> int:
    rows = (
        comparison_rows(measured["proxy_runs"], measured["nginx_workers"], measured["gateway_threads"])
        + observability_rows(measured["observability_runs"], measured["spans"])
        + footprint_rows(measured["starts"], measured["peaks_kib"])
    )
    profile_paths = {
        target.name: write_profile(target, measured["profiles"][target.name], settings)
        for target in measured["profile_targets"]
    }
    print(
        f"\nVigie benchmark, commit {machine['commit']}: {machine['nproc']} x {machine['cpu']}, kernel "
        f"{machine['kernel']}, load average at start {machine['load_average']}"
    )
    print(
        f"wrk -t{LOAD_THREADS} -c{settings.connections} -d{settings.duration}s --latency; pgbench -M extended "
        f"-c{settings.connections} -j{LOAD_THREADS} -T{settings.duration}; median of {settings.rounds} "
        f"round(s), ratios = median of per-round ratios\n"
    )
    print(render_table(rows))
    spans = measured["spans"]
    print(
        "\nobservability 'on' phase, warm-up included (service /metrics, sink counts): "
        + ", ".join(f"{k} {v:.1f}" if k.endswith("ms") else f"{k} {v:.0f}" for k, v in spans.items() if v is not None)
    )
    for target in measured["profile_targets"]:
        print_profile_summary(target, measured["profiles"][target.name], profile_paths[target.name])
    profile_runs = [profile.load for profile in measured["profiles"].values() if profile.load is not None]
    measured_runs = [
        *measured["proxy_runs"].values(),
        *measured["observability_runs"].values(),
        [measured["order_run"]],
        profile_runs,
    ]
    errors = sum(r.errors for runs in measured_runs for r in runs)
    results = {
        "machine": machine,
        "settings": dataclasses.asdict(settings),
        "measured": measured,
        "table": [dataclasses.asdict(row) for row in rows],
    }
    path = OUT_DIR / "results.json"
    path.write_text(json.dumps(results, indent=2, default=as_json) + "\n")
    print(f"\nresults: {path.relative_to(REPO)}")
    if errors:
        total = sum(r.requests for runs in measured_runs for r in runs)
        print(
            f"warning: {errors} requests failed during the load runs (rows marked '!'; the others were in the "
            f"order or profiling runs); 4xx/5xx API answers in the logs: "
            f"{measured['failed_answers'] or 'none (wrk timeouts or socket errors only)'}"
        )
        if errors > total * 0.01:
            print("error: more than 1 % of the requests failed: the throughput figures are not valid", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    stop_on_sigterm()
    bench = None
    try:
        check_tools()
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        machine = machine_info()
        print(f"about {settings.total_runs_seconds // 60 + 1} min of load runs, plus start-up", flush=True)
        bench = Bench(
            stack=GatewayStack(user_replicas=1, order_replicas=1, replica_env=REPLICA_ENV, gateway_env=GATEWAY_ENV),
            sink=OtlpSink(),
        )
        measured = measure(bench, settings)
        return report(measured, settings, machine)
    except (BenchError, StackError) as e:
        print(f"bench: could not measure: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted, stopping everything", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            tear_down(bench)


def tear_down(bench: Bench) -> None:
    # A second Ctrl-C or SIGTERM must not leave processes behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if bench.nginx is not None:
        bench.nginx.stop()
    bench.sink.stop()
    for problem in bench.stack.close():
        print(f"bench: {problem}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
