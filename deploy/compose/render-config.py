#!/usr/bin/env python3
"""Renders platform/'s Prometheus and Alertmanager templates for Docker Compose (the `config-render` service).

platform/prometheus/render.py fills the VIGIE_* placeholders; its templates address every target as
127.0.0.1:<port>, right for the native platform where everything shares one host. Under Compose each program is its
own host on the compose network, so after rendering, each `127.0.0.1:<port>` is replaced by `<compose service>:<port>`
(every port belongs to exactly one program, so the mapping is unambiguous; an address left on 127.0.0.1 is an error).
Rules, alert templates and dashboards are not copied: the rendered files point at platform/ mounted read-only at
VIGIE_PLATFORM_DIR.

    render-config.py --out-dir /etc/vigie/rendered     # prometheus.yml and alertmanager.yml

Stdlib only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

# Compose service name of the program behind each port (ports: platform/prometheus/render.py DEFAULTS; the SMTP
# sink is mailpit's SMTP port under Compose).
HOSTS = {
    "VIGIE_GATEWAY_PORT": "gateway",
    "VIGIE_GATEWAY_ADMIN_PORT": "gateway",
    "VIGIE_USER_PORT": "user",
    "VIGIE_USER_ADMIN_PORT": "user",
    "VIGIE_ORDER_PORT": "order",
    "VIGIE_ORDER_ADMIN_PORT": "order",
    "VIGIE_POSTGRES_PORT": "postgres",
    "VIGIE_PROMETHEUS_PORT": "prometheus",
    "VIGIE_ALERTMANAGER_PORT": "alertmanager",
    "VIGIE_NODE_EXPORTER_PORT": "node-exporter",
    "VIGIE_POSTGRES_EXPORTER_PORT": "postgres-exporter",
    "VIGIE_BLACKBOX_EXPORTER_PORT": "blackbox-exporter",
    "VIGIE_SMTP_SINK_PORT": "mailpit",
    "VIGIE_SLACK_SINK_PORT": "slack-sink",
}
LOOPBACK = re.compile(r"127\.0\.0\.1:(\d+)")


def load_renderer(platform_dir: Path):
    spec = importlib.util.spec_from_file_location("vigie_render", platform_dir / "prometheus" / "render.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"render-config: {platform_dir}/prometheus/render.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def to_compose_hosts(text: str, values: dict[str, str], source: str) -> str:
    by_port: dict[str, str] = {}
    for name, host in HOSTS.items():
        port = values[name]
        if by_port.get(port, host) != host:
            raise SystemExit(f"render-config: port {port} is given to both {by_port[port]} and {host}")
        by_port[port] = host

    def replace(match: re.Match[str]) -> str:
        port = match.group(1)
        if port not in by_port:
            raise SystemExit(f"render-config: {source}: 127.0.0.1:{port} belongs to no compose service")
        return f"{by_port[port]}:{port}"

    return LOOPBACK.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render platform/ templates with compose host names.")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--platform-dir", type=Path, default=Path(os.environ.get("VIGIE_PLATFORM_DIR", "platform")))
    args = parser.parse_args(argv)
    render = load_renderer(args.platform_dir)
    environ = dict(os.environ)
    environ["VIGIE_PLATFORM_DIR"] = str(args.platform_dir)
    try:
        values = render.effective_values(environ)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        for name, template in render.TEMPLATES.items():
            text = render.render_text(template.read_text(encoding="utf-8"), values, str(template))
            text = to_compose_hosts(text, values, str(template))
            header = f"# GENERATED from {template.name} by deploy/compose/render-config.py; edit the template.\n"
            target = args.out_dir / name
            tmp = target.with_suffix(".tmp")
            tmp.write_text(header + text, encoding="utf-8")
            tmp.replace(target)
            print(target)
        # The blackbox modules with the fresh-session probe (its bytes carry the probe role's password).
        blackbox = args.out_dir / "blackbox.yml"
        tmp = blackbox.with_suffix(".tmp")
        tmp.write_text(render.render_blackbox(os.environ.get("PROBE_PASSWORD")), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(blackbox)
        print(blackbox)
        # prometheus.yml discovers Jaeger from targets/jaeger.json (the local platform writes it only when Jaeger
        # runs). Under compose Jaeger is the `jaeger` service of the tracing profile, its metrics on 8888.
        targets = args.out_dir / "targets" / "jaeger.json"
        targets.parent.mkdir(exist_ok=True)
        targets.write_text(json.dumps([{"targets": ["jaeger:8888"], "labels": {"service": "jaeger"}}]) + "\n")
        print(targets)
    except render.RenderError as err:
        print(f"render-config: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
