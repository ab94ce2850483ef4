#!/usr/bin/python3
"""Renders Vigie's Prometheus and Alertmanager configuration templates into runnable files.

Why templates: neither Prometheus nor Alertmanager expands environment variables in its configuration, and Vigie's
ports must be overridable in one place. So `prometheus.yml.tmpl` and `alertmanager.yml.tmpl` hold dollar-brace
VIGIE_* placeholders, filled from the environment. The one place a deployment sets ports is deploy/local/ports.env
(deploy/local/vigie-local passes every port to this script); DEFAULTS below repeat those defaults (checked equal by
tests/platform) so the renderer also works on its own, e.g. for the config checks. Rules and the postgres-exporter
queries have no ports and are used as they are; blackbox.yml is copied with the postgres_session module added, whose
bytes carry the probe role's password (VIGIE_POSTGRES_PROBE_PASSWORD_FILE; without it the module is left out).

    render.py --out-dir var/etc          # writes var/etc/prometheus.yml, alertmanager.yml and blackbox.yml
    render.py --print-env                # prints NAME=value for every variable, defaults applied (shell-sourceable)

An unknown placeholder or a non-numeric port stops with a message naming it. Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import struct
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
    "VIGIE_POSTGRES_PORT": "5432",
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

BLACKBOX_MODULES = PLATFORM_DIR / "prometheus" / "blackbox.yml"
# The role the fresh-session probe logs in as (deploy/local/vigie-local creates it, pg_hba.conf confines it).
PROBE_ROLE = "vigie_probe"
PROBE_MARKER = "vigie-probe-ok"

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


def postgres_session_bytes(password: str) -> bytes:
    """What the probe sends PostgreSQL in one write: a v3 StartupMessage as PROBE_ROLE to database postgres, the
    PasswordMessage (clear text, pg_hba.conf `password` over loopback: the TCP prober speaks no SCRAM), a query whose
    only row ends in a newline, so the prober's line reader sees the marker without waiting for more, then
    Terminate, so the server ends the session cleanly (the newline the prober appends is never read as a message)."""

    def message(kind: bytes, body: bytes) -> bytes:
        return kind + struct.pack("!I", len(body) + 4) + body

    params = (
        b"".join(
            f"{k}\0{v}\0".encode()
            for k, v in (("user", PROBE_ROLE), ("database", "postgres"), ("application_name", "vigie-probe"))
        )
        + b"\0"
    )
    startup = struct.pack("!II", len(params) + 8, 3 << 16) + params
    query = f"SELECT '{PROBE_MARKER}' || chr(10)".encode() + b"\0"
    return startup + message(b"p", password.encode() + b"\0") + message(b"Q", query) + b"X\0\0\0\4"


def yaml_double_quoted(data: bytes) -> str:
    """A YAML double-quoted scalar holding exactly these bytes (all below 0x80, so none becomes a UTF-8 pair)."""
    if any(byte >= 0x80 for byte in data):
        raise RenderError("the probe's bytes must be ASCII (a length or the password is not)")
    return '"' + "".join(chr(b) if 0x20 <= b < 0x7F and chr(b) not in '"\\' else f"\\x{b:02x}" for b in data) + '"'


def render_blackbox(password: str | None) -> str:
    """The blackbox exporter's modules: blackbox.yml as it is, plus postgres_session when the probe's password is
    known. That module opens a new PostgreSQL session on every probe (the exporter's long-lived connection cannot
    see a postmaster that accepts no new ones) and succeeds when the query's marker comes back within 3 s."""
    text = BLACKBOX_MODULES.read_text(encoding="utf-8")
    if password is None:
        return text
    password = password.strip()
    if not password or len(password) > 64:
        raise RenderError("the probe role's password must have 1-64 characters")
    return (
        text
        + f"""  # Rendered by {Path(__file__).name} (the password comes from the secret file; this output is 0600).
  postgres_session:
    prober: tcp
    timeout: 3s
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      query_response:
        - send: {yaml_double_quoted(postgres_session_bytes(password))}
        - expect: "{PROBE_MARKER}"
"""
    )


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
    password_file = os.environ.get("VIGIE_POSTGRES_PROBE_PASSWORD_FILE")
    target = out_dir / "blackbox.yml"
    tmp = target.with_suffix(".yml.tmp")
    password = Path(password_file).read_text(encoding="utf-8") if password_file else None
    tmp.write_text(render_blackbox(password), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(target)
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
