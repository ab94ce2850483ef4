"""The processes of a system test run: a private PostgreSQL 15 and the user and order services, as in production.

PostgreSQL runs as the `postgres` user (it refuses root) in a temporary directory, listening on a unix socket only.
Each service gets its own database and two roles, as deploy/local sets them up: `<db>_owner` owns the database and
runs `migrate`, `<db>_app` (CONNECT, USAGE and the table privileges the migrations grant) serves. Secrets (database
URLs, the JWT key pair, the admin password) are files, handed over with the *_FILE variables.
"""

from __future__ import annotations

import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("VIGIE_BUILD_DIR", REPO / "build" / "release"))
PG_BINDIR = Path(os.environ.get("VIGIE_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
ADMIN_EMAIL = "admin@vigie.test"
PORTS_ENV = REPO / "deploy" / "local" / "ports.env"
# OpenSearch's runner serves HTTP only on ports up to 9299 (tools/opensearch.sh); its transport port is HTTP + 100.
OPENSEARCH_HTTP_PORTS = range(9210, 9300)


class StackError(RuntimeError):
    """Something the system tests need could not be started; the message says what and shows the log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """COUNT distinct free ports (all held open until every one is chosen), e.g. for a whole vigie-local stack."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def local_port_names() -> list[str]:
    """Every VIGIE_*_PORT of deploy/local/ports.env, the one place the local platform's ports are declared."""
    return re.findall(r'^: "\$\{(VIGIE_[A-Z_]+_PORT):=\d+\}"', PORTS_ENV.read_text(), re.MULTILINE)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_opensearch_port() -> int:
    """A free HTTP port the OpenSearch runner accepts, its transport port (+100) free too."""
    candidates = list(OPENSEARCH_HTTP_PORTS)
    random.shuffle(candidates)
    for port in candidates:
        if _port_free(port) and _port_free(port + 100):
            return port
    raise StackError(f"no free port pair in {OPENSEARCH_HTTP_PORTS.start}-{OPENSEARCH_HTTP_PORTS.stop - 1} (+100)")


def local_platform_ports(opensearch_port: int | None = None) -> dict[str, int]:
    """A free port for every port of a `vigie-local` stack, so a test's stack never meets another one. OpenSearch's
    pair is `opensearch_port` and + 100 (see free_opensearch_port); without it (VIGIE_LOGGING=off) both are left
    out and keep their defaults, unused."""
    names = [name for name in local_port_names() if not name.startswith("VIGIE_OPENSEARCH_")]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    if opensearch_port is not None:
        ports.update(
            {"VIGIE_OPENSEARCH_PORT": opensearch_port, "VIGIE_OPENSEARCH_TRANSPORT_PORT": opensearch_port + 100}
        )
    return ports


def run(
    cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 60, input_text: str | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env, input=input_text, check=False
    )
    if result.returncode != 0:
        raise StackError(
            f"{' '.join(cmd)} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def tail(path: Path, size: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return "(no log)"
    return data[-size:].decode("utf-8", "replace")


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


class Postgres:
    """A throwaway PostgreSQL 15 cluster, unix socket only, in its own temporary directory."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "pgdata"
        self.socket_dir = root / "pgrun"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_hex(16)

    def init(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BINDIR / tool).exists():
                raise StackError(
                    f"no {tool} in {PG_BINDIR}: install postgresql-15 (tools/install-deps.sh) or set VIGIE_PG_BINDIR"
                )
        self.socket_dir.mkdir()
        pwfile = self.root / "superuser.password"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            pg = pwd.getpwnam(PG_USER)
            for path in (self.root, self.socket_dir, pwfile):
                os.chown(path, pg.pw_uid, pg.pw_gid)
        run(
            as_postgres(
                [
                    str(PG_BINDIR / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                ]
            ),
            timeout=120,
        )
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            # Durability is pointless for a throwaway cluster; speed matters on a 2-core machine.
            conf.write(
                f"\nlisten_addresses = ''\nunix_socket_directories = '{self.socket_dir}'\nport = {self.port}\n"
                "max_connections = 100\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )

    def start(self) -> None:
        try:
            run(
                as_postgres(
                    [str(PG_BINDIR / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"]
                ),
                timeout=90,
            )
        except StackError as e:
            raise StackError(f"{e}\npostgres.log:\n{tail(self.log)}") from None

    def stop(self, mode: str = "fast") -> None:
        run(
            as_postgres([str(PG_BINDIR / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"]),
            timeout=90,
        )

    def running(self) -> bool:
        result = subprocess.run(
            as_postgres([str(PG_BINDIR / "pg_ctl"), "-D", str(self.data), "status"]), capture_output=True, check=False
        )
        return result.returncode == 0

    def conninfo(self, user: str, password: str, dbname: str) -> str:
        return f"host={self.socket_dir} port={self.port} user={user} password={password} dbname={dbname}"

    def psql(self, sql: str, dbname: str = "postgres", variables: dict[str, str] | None = None) -> str:
        """Runs SQL as the superuser and returns the unaligned, tuples-only output (psql -At)."""
        # PostgreSQL's own psql, not Debian's Perl wrapper: several times faster to start, and tests call it often.
        cmd = [
            str(PG_BINDIR / "psql"),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            dbname,
        ]
        for name, value in (variables or {}).items():
            cmd += ["-v", f"{name}={value}"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "5"}
        return run(cmd, env=env, input_text=sql).stdout.strip()


class PsqlSession:
    """One long-lived psql on one database, as the superuser: a query costs a round trip, not a process start.

    Reconnects by itself (a fresh psql) after the server went away, e.g. in the database outage test.
    """

    MARKER = "__vigie_psql_done__"

    def __init__(self, pg: Postgres, dbname: str):
        self.pg = pg
        self.dbname = dbname
        self.process: subprocess.Popen | None = None

    def _start(self) -> None:
        cmd = [
            str(PG_BINDIR / "psql"),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=0",
            "-h",
            str(self.pg.socket_dir),
            "-p",
            str(self.pg.port),
            "-U",
            "postgres",
            "-d",
            self.dbname,
        ]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PGPASSWORD": self.pg.password,
            "PGCONNECT_TIMEOUT": "5",
        }
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        os.set_blocking(self.process.stderr.fileno(), False)

    def _stderr(self) -> str:
        chunks = []
        while True:
            try:
                chunk = os.read(self.process.stderr.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")

    def query(self, sql: str) -> str:
        """Runs SQL and returns its unaligned, tuples-only output (as psql -At prints it)."""
        for attempt in (1, 2):
            if self.process is None or self.process.poll() is not None:
                self._start()
            try:
                self.process.stdin.write(sql.strip().rstrip(";") + ";\n\\echo " + self.MARKER + "\n")
                self.process.stdin.flush()
                lines = []
                while (line := self.process.stdout.readline()) != self.MARKER + "\n":
                    if line == "":
                        raise BrokenPipeError("psql ended")
                    lines.append(line)
            except (BrokenPipeError, OSError) as e:
                error = f"{e}: {self._stderr()}"
                self.close()
                if attempt == 2:
                    raise StackError(f"psql on {self.dbname}: {error}") from None
                continue
            error = self._stderr()
            if error:
                raise StackError(f"psql on {self.dbname}: {sql}\n{error}")
            return "".join(lines).strip()
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
                pipe.close()
            self.process = None


@dataclass
class Service:
    """One service process (user or order), its ports and log, and the figures measured at its start."""

    name: str
    binary: Path
    env: dict[str, str]
    log_path: Path
    http_port: int
    admin_port: int
    process: subprocess.Popen | None = None
    startup_seconds: float | None = None
    idle_rss_kib: int | None = None
    log_file: object = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ready_timeout: float = 30) -> None:
        self.log_file = open(self.log_path, "ab")
        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(self.binary), "serve"],
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        # Polled every 5 ms so the time to ready is measured to that precision.
        deadline = started + ready_timeout
        while True:
            if self.process.poll() is not None:
                raise StackError(
                    f"{self.name} exited with {self.process.returncode} before it was ready\n{tail(self.log_path)}"
                )
            if self.ready():
                self.startup_seconds = time.monotonic() - started
                break
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} was not ready after {ready_timeout}s\n{tail(self.log_path)}")
            time.sleep(0.005)
        self.idle_rss_kib = self.rss_kib()

    def ready(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(self.admin_url + "/readyz", timeout=timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise StackError(f"no VmRSS for {self.name} (pid {self.pid})")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        """Signals the process and waits for it; SIGKILL if it outlives `timeout`. Returns its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
        return self.process.returncode


class Stack:
    """PostgreSQL, both databases migrated, the secrets, and the user and order services, ready."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="vigie-systest-", dir="/tmp"))
        self.secrets = self.root / "secrets"
        self.pg = Postgres(self.root)
        self.admin_password = secrets.token_urlsafe(18)
        self.passwords = {
            role: secrets.token_hex(16) for role in ("users_owner", "users_app", "orders_owner", "orders_app")
        }
        self.services: list[Service] = []
        self.user: Service | None = None
        self.order: Service | None = None

    # -- set-up ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        for binary in (self.binary("user"), self.binary("order")):
            if not binary.exists():
                raise StackError(
                    f"{binary} is missing: build first (cmake --preset release && "
                    "cmake --build --preset release -j2), or set VIGIE_BUILD_DIR"
                )
        self.secrets.mkdir(mode=0o700)
        self.pg.init()
        self.pg.start()
        self.bootstrap_databases()
        self.write_secrets()
        self.migrate()
        self.user = self.start_service("user")
        self.order = self.start_service("order")

    def binary(self, name: str) -> Path:
        return BUILD_DIR / "services" / name / name

    def bootstrap_databases(self) -> None:
        # The same least-privilege layout as deploy/local: the passwords go through psql variables, never argv.
        sql = []
        variables = {}
        for role, password in self.passwords.items():
            variables[f"pw_{role}"] = password
            sql.append(f"SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '{role}', :'pw_{role}') \\gexec")
        for db in ("users", "orders"):
            sql += [
                f"CREATE DATABASE {db} OWNER {db}_owner;",
                f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;",
                f"GRANT CONNECT ON DATABASE {db} TO {db}_app;",
                f"\\connect {db}",
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
                f"GRANT USAGE ON SCHEMA public TO {db}_app;",
                "\\connect postgres",
            ]
        self.pg.psql("\n".join(sql) + "\n", variables=variables)

    def write_secrets(self) -> None:
        def secret(name: str, text: str) -> None:
            path = self.secrets / name
            path.write_text(text)
            path.chmod(0o600)

        for role, password in self.passwords.items():
            secret(f"{role}.conninfo", self.pg.conninfo(role, password, role.split("_")[0]) + "\n")
        secret("admin.password", self.admin_password + "\n")
        for prefix in ("jwt", "other"):
            run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(self.secrets / f"{prefix}-private.pem")])
            run(
                [
                    "openssl",
                    "pkey",
                    "-in",
                    str(self.secrets / f"{prefix}-private.pem"),
                    "-pubout",
                    "-out",
                    str(self.secrets / f"{prefix}-public.pem"),
                ]
            )

    @property
    def jwt_private_key(self) -> Path:
        return self.secrets / "jwt-private.pem"

    @property
    def other_private_key(self) -> Path:
        """An Ed25519 key the services do not trust, to sign tokens that must be refused."""
        return self.secrets / "other-private.pem"

    def base_env(self) -> dict[str, str]:
        # A clean environment: nothing from the caller's (a stray DATABASE_URL, say) leaks into the services.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        # Sanitizer settings do pass, for runs against a -DVIGIE_SANITIZE=ON build.
        env |= {k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")}
        return env

    def migrate(self) -> None:
        for service, db in (("user", "users"), ("order", "orders")):
            env = self.base_env() | {"DATABASE_URL_FILE": str(self.secrets / f"{db}_owner.conninfo")}
            run([str(self.binary(service)), "migrate"], env=env)

    def service_env(self, name: str, http_port: int, admin_port: int, **overrides: str) -> dict[str, str]:
        env = self.base_env() | {
            "HTTP_PORT": str(http_port),
            "ADMIN_PORT": str(admin_port),
            "BIND_ADDRESS": "127.0.0.1",
            "LOG_LEVEL": "info",
            "FAULTS_ENABLED": "true",
            "SHUTDOWN_TIMEOUT": "5s",
            # Short, so that the slow-client test does not wait long; every other test sends whole requests.
            "HTTP_READ_TIMEOUT": "2s",
            "JWT_PUBLIC_KEY_FILE": str(self.secrets / "jwt-public.pem"),
            "JWT_ISSUER": "vigie",
            "DB_POOL_SIZE": "4",
        }
        if name == "user":
            env |= {
                "DATABASE_URL_FILE": str(self.secrets / "users_app.conninfo"),
                "JWT_PRIVATE_KEY_FILE": str(self.jwt_private_key),
                "JWT_TTL": "15m",
                "ADMIN_EMAIL": ADMIN_EMAIL,
                "ADMIN_PASSWORD_FILE": str(self.secrets / "admin.password"),
            }
        else:
            assert self.user is not None, "the order service needs the user service"
            env |= {
                "DATABASE_URL_FILE": str(self.secrets / "orders_app.conninfo"),
                "USER_SERVICE_URL": self.user.base_url,
            }
        env |= overrides
        return env

    def start_service(self, name: str, **overrides: str) -> Service:
        """Starts one more instance of `name` on fresh ports and waits until it is ready."""
        http_port, admin_port = free_port(), free_port()
        index = sum(1 for s in self.services if s.name == name)
        service = Service(
            name=name,
            binary=self.binary(name),
            env=self.service_env(name, http_port, admin_port, **overrides),
            log_path=self.root / f"{name}-{index}.log",
            http_port=http_port,
            admin_port=admin_port,
        )
        self.services.append(service)
        service.start()
        return service

    # -- tear-down ------------------------------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stops everything this stack started, whatever state it is in, and removes its files.

        Returns what went wrong with the services: a non-zero exit after SIGTERM, or a sanitizer report in a log
        (when they are built with -DVIGIE_SANITIZE=ON). The files are kept when there is something to look at.
        """
        problems = []
        for service in reversed(self.services):
            try:
                was_running = service.alive()
                code = service.stop(timeout=10)
                if was_running and code != 0:
                    problems.append(f"{service.name} ({service.log_path.name}) exited {code} after SIGTERM")
            except Exception as e:  # noqa: BLE001 - best effort, keep tearing down
                problems.append(f"stopping {service.name}: {e}")
        for service in self.services:
            report = sanitizer_report(service.log_path)
            if report:
                problems.append(f"{service.name} ({service.log_path.name}): {report}")
        try:
            if self.pg.data.exists() and self.pg.running():
                self.pg.stop("immediate")
        except Exception:  # noqa: BLE001
            pass
        if problems or os.environ.get("VIGIE_SYSTEST_KEEP"):
            print(f"\nsystem test files kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        return problems


SANITIZER_MARKERS = (
    b"ERROR: AddressSanitizer",
    b"ERROR: LeakSanitizer",
    b"runtime error:",
    b"WARNING: ThreadSanitizer",
)


def sanitizer_report(log: Path) -> str | None:
    """The first lines of a sanitizer report in a service log, if there is one."""
    try:
        data = log.read_bytes()
    except OSError:
        return None
    for marker in SANITIZER_MARKERS:
        at = data.find(marker)
        if at >= 0:
            return data[max(0, at - 200) : at + 1500].decode("utf-8", "replace")
    return None
