#!/usr/bin/python3
"""Renders Vigie's Prometheus and Alertmanager configuration templates into runnable files.

Why templates: neither Prometheus nor Alertmanager expands environment variables in its configuration, and Vigie's
ports must be overridable in one place. So `prometheus.yml.tmpl` and `alertmanager.yml.tmpl` hold dollar-brace
VIGIE_* placeholders, filled from the environment. The one place a deployment sets ports is deploy/local/ports.env
(deploy/local/vigie-local passes every port to this script); DEFAULTS below repeat those defaults (checked equal by
tests/platform) so the renderer also works on its own, e.g. for the config checks. Rules, the blackbox module file
and the postgres-exporter queries have no ports and are used as they are.

    render.py --out-dir var/etc          # writes var/etc/prometheus.yml and var/etc/alertmanager.yml
    render.py --print-env                # prints NAME=value for every variable, defaults applied (shell-sourceable)

An unknown placeholder or a non-numeric port stops with a message naming it. Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

PLATFORM_DIR = Path(__file__).resolve().parent.parent

# Defaults when the environment does not set a variable: the same values as deploy/local/ports.env.
DEFAULTS: dict[str, str] = {
    "VIGIE_GATEWAY_PORT": "8080",
    "VIGIE_GATEWAY_ADMIN_PORT": "9080",
    "VIGIE_USER_PORT": "8081",
    "VIGIE_USER_ADMIN_PORT": "9081",
    "VIGIE_ORDER_PORT": "8082",
    "VIGIE_ORDER_ADMIN_PORT": "9082",
    "VIGIE_PROMETHEUS_PORT": "9090",
    "VIGIE_ALERTMANAGER_PORT": "9093",
    "VIGIE_NODE_EXPORTER_PORT": "9100",
    "VIGIE_POSTGRES_EXPORTER_PORT": "9187",
    "VIGIE_BLACKBOX_EXPORTER_PORT": "9115",
    "VIGIE_SMTP_SINK_PORT": "2525",
    "VIGIE_SLACK_SINK_PORT": "9095",
    # Absolute, so the rendered files work wherever they are written (rule and template globs resolve against it).
    "VIGIE_PLATFORM_DIR": str(PLATFORM_DIR),
}

TEMPLATES = {
    "prometheus.yml": PLATFORM_DIR / "prometheus" / "prometheus.yml.tmpl",
    "alertmanager.yml": PLATFORM_DIR / "alertmanager" / "alertmanager.yml.tmpl",
}

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RenderError(Exception):
    pass


def effective_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    """DEFAULTS overridden by the environment; every *_PORT must be a port number."""
    environ = os.environ if environ is None else environ
    values = {name: environ.get(name, default) for name, default in DEFAULTS.items()}
    for name, value in values.items():
        if name.endswith("_PORT") and not (value.isdigit() and 0 < int(value) < 65536):
            raise RenderError(f"{name}={value!r} is not a TCP port (1-65535)")
    return values


def render_text(text: str, values: dict[str, str], source: str = "template") -> str:
    """Replaces every ${NAME}; a name without a value is an error (a typo must not render an empty port)."""
    unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - values.keys())
    if unknown:
        raise RenderError(f"{source}: unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(sorted(values))}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render_all(out_dir: Path, values: dict[str, str]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, template in TEMPLATES.items():
        target = out_dir / name
        rendered = render_text(template.read_text(encoding="utf-8"), values, str(template))
        header = f"# GENERATED from {template} by {Path(__file__).name}; edit the template, not this file.\n"
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(header + rendered, encoding="utf-8")
        tmp.replace(target)  # atomic, so a reloading Prometheus never reads half a file
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render Vigie's Prometheus and Alertmanager config templates.")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out-dir", type=Path, metavar="DIR", help="write prometheus.yml and alertmanager.yml here")
    mode.add_argument("--print-env", action="store_true", help="print NAME=value for every variable and exit")
    args = parser.parse_args(argv)
    try:
        values = effective_values()
        if args.print_env:
            for name, value in values.items():
                print(f"{name}={shlex.quote(value)}")
            return 0
        for path in render_all(args.out_dir, values):
            print(path)
    except (RenderError, OSError) as err:
        print(f"render: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
