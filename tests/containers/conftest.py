"""Fixtures of the container tests (`make test-containers`): the Docker engine, our images built from the offline
base images (tools/docker.sh), and one running stack — PostgreSQL 15 from Debian packages, the migrations, user,
order and gateway — on a user-defined network, each container read-only, without capabilities, as uid 65532.

`make test` runs them last, through `make test-containers`, which sets VIGIE_CONTAINER_TESTS=1; `pytest tests`
(test-python) leaves this directory out, so they are not run twice. They need root for dockerd; a cold cache
(no base image, no layer) costs about 8 minutes, a warm one about a minute.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
VERSION = "test"
SERVICES = ("user", "order", "gateway")
ADMIN_PORTS = {"gateway": 9080, "user": 9081, "order": 9082}
API_PORTS = {"gateway": 8080, "user": 8081, "order": 8082}

if os.environ.get("VIGIE_CONTAINER_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}")
    return result


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name).stdout)[0]


@pytest.fixture(scope="session")
def engine() -> None:
    """A Docker engine for the session: tools/docker.sh starts dockerd when none answers, and the dockerd this
    session started is stopped at its end. Where dockerd cannot run at all, the tests that need it are reported as
    skipped with dockerd's own words, never as passed; everything else in this directory still runs."""
    running = (
        subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True).returncode == 0
    )
    started = subprocess.run([str(ROOT / "tools/docker.sh"), "start"], capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.skip(f"not run: the Docker engine could not be started here: {started.stderr.strip()[-1500:]}")
    yield
    if not running:
        subprocess.run([str(ROOT / "tools/docker.sh"), "stop"], check=False, timeout=60)


@pytest.fixture(scope="session")
def images(engine) -> dict[str, float]:
    """Builds the base images (when missing) and our images; returns the seconds each step took.
    VIGIE_CONTAINER_IMAGES=prebuilt uses the vigie/*:test images already there (e.g. while another build runs)."""
    timings = {}
    if os.environ.get("VIGIE_CONTAINER_IMAGES") == "prebuilt":
        return timings
    started = time.monotonic()
    subprocess.run([str(ROOT / "tools/docker.sh"), "base"], check=True, timeout=900)
    timings["base"] = time.monotonic() - started
    started = time.monotonic()
    subprocess.run([str(ROOT / "tools/docker.sh"), "build", "--version", VERSION], check=True, timeout=3600)
    timings["build"] = time.monotonic() - started
    print(f"\ncontainer images: base images {timings['base']:.0f} s, build {timings['build']:.0f} s")
    return timings


class Stack:
    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:8]
        # A user-defined network, as compose creates: its DNS answers the aliases, and the services call each
        # other by name (gateway -> user/order, order -> user), as they do under compose and Kubernetes.
        self.network = f"vigie-test-{self.id}"
        self.password = secrets.token_hex(16)
        self.containers: dict[str, str] = {}
        self.keys = Path(tempfile.mkdtemp(prefix="vigie-containers-"))

    def name(self, service: str) -> str:
        return f"vigie-test-{self.id}-{service}"

    def host_port(self, service: str, port: int) -> int:
        mapping = inspect(self.name(service))["NetworkSettings"]["Ports"][f"{port}/tcp"]
        return int(mapping[0]["HostPort"])

    def url(self, service: str, port: int) -> str:
        return f"http://127.0.0.1:{self.host_port(service, port)}"

    def wait_healthy(self, service: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < deadline:
            state = inspect(self.name(service))["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return
            if not state["Running"]:
                break
            time.sleep(0.5)
        logs = docker("logs", "--tail", "40", self.name(service), check=False)
        raise AssertionError(
            f"{service} not healthy within {timeout} s: {json.dumps(state.get('Health'))}\n{logs.stdout}{logs.stderr}"
        )


def hardened(stack: Stack, service: str) -> list[str]:
    """`docker run` options every service container gets: what a restricted Kubernetes pod would impose."""
    return [
        "--name",
        stack.name(service),
        "--network",
        stack.network,
        "--network-alias",
        service,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "--memory",
        "256m",
        "-v",
        f"{stack.keys}:/run/secrets:ro",
    ]


@pytest.fixture(scope="session")
def stack(images) -> Stack:
    s = Stack()
    docker("network", "create", s.network)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(s.keys / "jwt-private.pem")], check=True)
    subprocess.run(
        ["openssl", "pkey", "-in", str(s.keys / "jwt-private.pem"), "-pubout", "-out", str(s.keys / "jwt-public.pem")],
        check=True,
    )
    os.chmod(s.keys, 0o755)
    for key in s.keys.iterdir():
        os.chmod(key, 0o644)  # read by uid 65532 in the containers; a temporary test key
    try:
        docker(
            "run",
            "-d",
            "--name",
            s.name("postgres"),
            "--network",
            s.network,
            "--network-alias",
            "postgres",
            "-e",
            f"VIGIE_DB_PASSWORD={s.password}",
            "vigie/postgres-test:15",
        )
        s.containers["postgres"] = s.name("postgres")
        s.wait_healthy("postgres", timeout=90)
        db = {"user": "users", "order": "orders"}
        for service in ("user", "order"):
            url = f"postgresql://{db[service]}_owner:{s.password}@postgres:5432/{db[service]}"
            result = docker(
                "run",
                "--rm",
                "--network",
                s.network,
                "--read-only",
                "--cap-drop",
                "ALL",
                "-e",
                f"DATABASE_URL={url}",
                f"vigie/{service}:{VERSION}",
                "migrate",
                check=False,
            )
            assert result.returncode == 0, f"{service} migrate failed:\n{result.stdout}{result.stderr}"
        common = ["-e", "JWT_PUBLIC_KEY_FILE=/run/secrets/jwt-public.pem", "-e", "SHUTDOWN_DELAY=1s"]

        def published(svc: str) -> list[str]:
            return ["-p", f"127.0.0.1::{API_PORTS[svc]}", "-p", f"127.0.0.1::{ADMIN_PORTS[svc]}"]

        docker(
            "run",
            "-d",
            *hardened(s, "user"),
            *published("user"),
            *common,
            "-e",
            f"DATABASE_URL=postgresql://users_app:{s.password}@postgres:5432/users",
            "-e",
            "JWT_PRIVATE_KEY_FILE=/run/secrets/jwt-private.pem",
            f"vigie/user:{VERSION}",
        )
        s.containers["user"] = s.name("user")
        docker(
            "run",
            "-d",
            *hardened(s, "order"),
            *published("order"),
            *common,
            "-e",
            f"DATABASE_URL=postgresql://orders_app:{s.password}@postgres:5432/orders",
            "-e",
            "USER_SERVICE_URL=http://user:8081",
            # the latency switch holds a request in flight while the drain test stops the containers
            "-e",
            "FAULTS_ENABLED=true",
            f"vigie/order:{VERSION}",
        )
        s.containers["order"] = s.name("order")
        docker(
            "run",
            "-d",
            *hardened(s, "gateway"),
            *published("gateway"),
            *common,
            "-e",
            "USER_SERVICE_URLS=http://user:8081",
            "-e",
            "ORDER_SERVICE_URLS=http://order:8082",
            f"vigie/gateway:{VERSION}",
        )
        s.containers["gateway"] = s.name("gateway")
        for service in SERVICES:
            s.wait_healthy(service)
        yield s
    finally:
        for name in s.containers.values():
            docker("rm", "-f", "-v", name, check=False)
        docker("network", "rm", s.network, check=False)
        for key in s.keys.iterdir():
            key.unlink()
        s.keys.rmdir()


@pytest.fixture(scope="session")
def http() -> requests.Session:
    return requests.Session()
