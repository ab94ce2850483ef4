"""The processes of a gateway system test: tests/system's stack (a private PostgreSQL, migrated databases, secrets)
with several replicas of the user and order services and the gateway in front of them.

The order service reaches the user service through the gateway (USER_SERVICE_URL is the gateway's URL), so its
calls are balanced over the user replicas and survive their restarts like every other caller's.
"""

from __future__ import annotations

import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "system"))

from vigie_stack import ADMIN_EMAIL, Service, Stack, StackError, free_port  # noqa: E402

__all__ = ["ADMIN_EMAIL", "GatewayStack", "Service", "StackError", "restart"]


class GatewayStack(Stack):
    """PostgreSQL, `user_replicas` user and `order_replicas` order services, and the gateway, all ready."""

    def __init__(
        self,
        user_replicas: int = 2,
        order_replicas: int = 2,
        replica_env: dict[str, str] | None = None,
        gateway_env: dict[str, str] | None = None,
    ):
        super().__init__()
        self.user_replicas = user_replicas
        self.order_replicas = order_replicas
        self.replica_env = replica_env or {}
        self.gateway_env = gateway_env or {}
        self.users: list[Service] = []
        self.orders: list[Service] = []
        self.gateway: Service | None = None
        self.gateway_port = free_port()
        self.gateway_admin_port = free_port()

    def start(self) -> None:
        for name in ("user", "order", "gateway"):
            if not self.binary(name).exists():
                raise StackError(
                    f"{self.binary(name)} is missing: build first (cmake --preset release && "
                    "cmake --build --preset release -j2), or set VIGIE_BUILD_DIR"
                )
        self.secrets.mkdir(mode=0o700)
        self.pg.init()
        self.pg.start()
        self.bootstrap_databases()
        self.write_secrets()
        self.migrate()
        for _ in range(self.user_replicas):
            self.users.append(self.start_service("user", **self.replica_env))
        self.user = self.users[0]
        for _ in range(self.order_replicas):
            self.orders.append(self.start_service("order", USER_SERVICE_URL=self.gateway_url, **self.replica_env))
        self.order = self.orders[0]
        self.gateway = self.start_gateway(self.gateway_port, self.gateway_admin_port, **self.gateway_env)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def start_gateway(self, http_port: int | None = None, admin_port: int | None = None, **overrides: str) -> Service:
        """Starts a gateway in front of every replica (another one when ports are not given) and waits until it is
        ready, i.e. it has probed at least one replica of each upstream."""
        http_port = http_port or free_port()
        admin_port = admin_port or free_port()

        def urls(services: list[Service], admin: bool) -> str:
            return ",".join(s.admin_url if admin else s.base_url for s in services)

        env = (
            self.base_env()
            | {
                "HTTP_PORT": str(http_port),
                "ADMIN_PORT": str(admin_port),
                "BIND_ADDRESS": "127.0.0.1",
                "LOG_LEVEL": "info",
                "SHUTDOWN_TIMEOUT": "5s",
                "HTTP_READ_TIMEOUT": "2s",
                "JWT_PUBLIC_KEY_FILE": str(self.secrets / "jwt-public.pem"),
                "JWT_ISSUER": "vigie",
                "USER_SERVICE_URLS": urls(self.users, False),
                "USER_SERVICE_ADMIN_URLS": urls(self.users, True),
                "ORDER_SERVICE_URLS": urls(self.orders, False),
                "ORDER_SERVICE_ADMIN_URLS": urls(self.orders, True),
                "HEALTH_CHECK_INTERVAL": "250ms",
                "RATE_LIMIT_RPS": "10000",
                "RATE_LIMIT_BURST": "10000",
            }
            | overrides
        )
        index = sum(1 for s in self.services if s.name == "gateway")
        gateway = Service(
            name="gateway",
            binary=self.binary("gateway"),
            env=env,
            log_path=self.root / f"gateway-{index}.log",
            http_port=http_port,
            admin_port=admin_port,
        )
        self.services.append(gateway)
        gateway.start()
        return gateway

    def healthy_at_gateway(self, service: Service, gateway: Service | None = None) -> bool:
        """Whether the gateway's last readiness probe of `service` passed (its upstream_healthy gauge)."""
        gateway = gateway or self.gateway
        with urllib.request.urlopen(gateway.admin_url + "/metrics", timeout=2) as response:
            text = response.read().decode()
        pattern = r'^upstream_healthy\{[^}]*instance="127\.0\.0\.1:' + str(service.http_port) + r'"[^}]*\} (\S+)$'
        match = re.search(pattern, text, re.MULTILINE)
        return bool(match) and float(match.group(1)) == 1.0

    def wait_healthy_at_gateway(self, service: Service, timeout: float = 15, gateway: Service | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy_at_gateway(service, gateway):
            if time.monotonic() > deadline:
                raise StackError(f"the gateway did not see {service.name}:{service.http_port} ready in {timeout}s")
            time.sleep(0.05)


def restart(stack: GatewayStack, service: Service, sig: int = signal.SIGTERM) -> float:
    """Stops a replica (SIGTERM: it drains), starts it again on the same ports, waits until the gateway routes to
    it again; returns how long the replica was away."""
    stopped = time.monotonic()
    code = service.stop(sig, timeout=30)
    if sig == signal.SIGTERM and code != 0:
        raise StackError(f"{service.name}:{service.http_port} exited {code} after SIGTERM")
    service.start()
    stack.wait_healthy_at_gateway(service)
    return time.monotonic() - stopped
