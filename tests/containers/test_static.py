"""Checks without running containers: hadolint on the Dockerfiles, the compose file for every profile, the
rendered Prometheus/Alertmanager configuration under compose host names, the env script, Trivy (offline)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SERVICES, VERSION

VENV_BIN = Path(sys.executable).parent
COMPOSE = ROOT / "deploy/compose/docker-compose.yml"
DOCKERFILES = [ROOT / "deploy/docker/Dockerfile", ROOT / "tests/containers/postgres/Dockerfile"]
ENV_NAMES = [
    "POSTGRES_PASSWORD",
    "USERS_OWNER_PASSWORD",
    "USERS_APP_PASSWORD",
    "ORDERS_OWNER_PASSWORD",
    "ORDERS_APP_PASSWORD",
    "MONITOR_PASSWORD",
    "PROBE_PASSWORD",
    "ADMIN_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "VAULT_DEV_ROOT_TOKEN",
    "ELASTIC_PASSWORD",
    "KIBANA_SYSTEM_PASSWORD",
    "LOGSTASH_WRITER_PASSWORD",
]
PROFILES = {
    "core": {"postgres", "user-migrate", "order-migrate", "user", "order", "gateway", "loadgen"},
    "monitoring": {
        "config-render",
        "prometheus",
        "alertmanager",
        "grafana",
        "mailpit",
        "slack-sink",
        "node-exporter",
        "postgres-exporter",
        "blackbox-exporter",
        "jaeger",
    },
    "logging": {"elasticsearch", "elasticsearch-setup", "logstash", "filebeat", "kibana"},
    "tracing": {"jaeger"},
    "secrets": {"vault"},
}


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint(dockerfile):
    result = run(str(VENV_BIN / "hadolint"), "--failure-threshold", "info", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def compose_env() -> dict[str, str]:
    return {**os.environ, **{name: "not-a-secret" for name in ENV_NAMES}}


def compose_services(profile: str) -> dict[str, dict]:
    """The services a profile runs, with their resolved configuration. docker-compose 1.29's `config --services`
    ignores profiles, so each service's own `profiles` decide."""
    import yaml

    base = ["docker-compose", "-f", str(COMPOSE), "--profile", profile, "config"]
    config = yaml.safe_load(run(*base, env=compose_env()).stdout)
    return {name: svc for name, svc in config["services"].items() if profile in svc.get("profiles", [profile])}


@pytest.mark.parametrize("profile", [*PROFILES, "all"])
def test_compose_config_per_profile(profile):
    result = run("docker-compose", "-f", str(COMPOSE), "--profile", profile, "config", "-q", env=compose_env())
    assert result.returncode == 0, result.stderr
    services = set(compose_services(profile))
    expected = PROFILES["core"] | (set().union(*PROFILES.values()) if profile == "all" else PROFILES[profile])
    assert services == expected, f"profile {profile}: got {sorted(services)}, expected {sorted(expected)}"


@pytest.mark.parametrize("profile", [*PROFILES, "all"])
def test_services_call_each_other_by_name_within_the_profile(profile):
    """Every URL a service is configured with names a service of the same profile (Docker's DNS answers it), never an
    address. One exception: the trace endpoint in a profile without Prometheus, where no alert counts the drops."""
    services = compose_services(profile)
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            match = re.fullmatch(r"https?://([^/:]+)(:\d+)?(/.*)?", str(value))
            if not match:
                continue
            host = match.group(1)
            if host in {"127.0.0.1", "localhost"} or host in services:  # itself, or a service of the profile
                continue
            assert not re.fullmatch(r"[\d.]+", host), f"{profile}: {name} {variable}={value} is an address, not a name"
            assert variable == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" and "prometheus" not in services, (
                f"profile {profile}: {name} {variable}={value} names a service this profile does not run"
            )


def test_compose_images_are_pinned_and_limited():
    import yaml

    config = yaml.safe_load(
        run("docker-compose", "-f", str(COMPOSE), "--profile", "all", "config", env=compose_env()).stdout
    )
    for name, service in config["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: image {image} is not pinned"
        assert service.get("mem_limit"), f"{name}: no memory limit"
        if "network_mode" not in service and name not in {
            "config-render",
            "user-migrate",
            "order-migrate",
            "elasticsearch-setup",
        }:
            # Our images carry their HEALTHCHECK (deploy/docker/Dockerfile); the exporters' images have no shell or
            # HTTP client to probe with, and Prometheus's `up` watches them.
            ours = "build" in service
            assert "healthcheck" in service or ours or name.endswith("-exporter"), f"{name}: no health check"


def test_rendered_monitoring_config_is_valid(tmp_path):
    env = {**os.environ, "VIGIE_SMTP_SINK_PORT": "1025"}
    result = run(
        sys.executable,
        str(ROOT / "deploy/compose/render-config.py"),
        "--out-dir",
        str(tmp_path),
        "--platform-dir",
        str(ROOT / "platform"),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    prometheus = (tmp_path / "prometheus.yml").read_text()
    assert "127.0.0.1" not in prometheus and "gateway:9080" in prometheus
    result = run("promtool", "check", "config", "--syntax-only", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("amtool", "check-config", str(tmp_path / "alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_init_env_writes_random_secrets_and_refuses_to_overwrite(tmp_path):
    script = tmp_path / "init-env.sh"
    script.write_text((ROOT / "deploy/compose/init-env.sh").read_text())
    script.chmod(0o755)
    assert run(str(script)).returncode == 0
    first = (tmp_path / ".env").read_text()
    values = dict(line.split("=", 1) for line in first.splitlines() if "=" in line and not line.startswith("#"))
    assert set(ENV_NAMES) <= values.keys()
    assert len({values[n] for n in ENV_NAMES}) == len(ENV_NAMES), "every secret must differ"
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    refused = run(str(script))
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert (tmp_path / ".env").read_text() == first
    assert run(str(script), "--force").returncode == 0
    assert (tmp_path / ".env").read_text() != first
    assert run(str(script), "--bogus").returncode == 2
    example = (ROOT / "deploy/compose/.env.example").read_text()
    for name in ENV_NAMES:
        assert f"\n{name}=\n" in example, f"{name} must be listed without a value in .env.example"


def test_docker_sh_refuses_bad_arguments():
    for args in (["bogus"], [], ["build", "--version"], ["build", "--version", "a b"], ["base", "--nope"]):
        result = run(str(ROOT / "tools/docker.sh"), *args)
        assert result.returncode == 2, f"{args}: exit {result.returncode}"
        assert "docker.sh:" in result.stderr


def trivy(*args: str) -> subprocess.CompletedProcess[str]:
    cache = Path(os.environ.get("VIGIE_CACHE", Path.home() / ".cache/vigie")) / "trivy"
    return run(
        str(VENV_BIN / "trivy"),
        "--cache-dir",
        str(cache),
        *args,
        "--skip-db-update",
        "--skip-check-update",
        "--scanners",
        "misconfig,secret",
        "--severity",
        "HIGH,CRITICAL",
        "--exit-code",
        "1",
        "--format",
        "json",
        "--quiet",
    )


def findings(report: str) -> list[str]:
    out = []
    for result in json.loads(report).get("Results", []) or []:
        for m in result.get("Misconfigurations", []) or []:
            out.append(f"{result['Target']}: {m['ID']} {m['Title']}")
        for s in result.get("Secrets", []) or []:
            out.append(f"{result['Target']}: secret {s['RuleID']} line {s.get('StartLine')}")
    return out


def test_trivy_repository_config():
    result = trivy("fs", "--skip-dirs", "build,var,.cache,.git", str(ROOT))
    assert result.returncode == 0, "\n".join(findings(result.stdout)) or result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_trivy_images(images, service):
    # --image-config-scanners: the image's configuration (user, health check, history) as a Dockerfile would be.
    result = trivy("image", "--image-config-scanners", "misconfig,secret", f"vigie/{service}:{VERSION}")
    assert result.returncode == 0, "\n".join(findings(result.stdout)) or result.stderr
