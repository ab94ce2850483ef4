#!/usr/bin/env python3
"""Installs Vigie's log storage in Elasticsearch 8 and its saved objects in Kibana; safe to run again.

    setup.py --elasticsearch http://elasticsearch:9200 --kibana http://kibana:5601

In order, each step an idempotent PUT (or an import with overwrite):
  1. waits for the cluster (yellow or green);
  2. when ELASTIC_PASSWORD is set (security on): the kibana_system password, the role and user Logstash writes with
     (create_index + create_doc on vigie-logs-*, nothing else), and the user Jaeger writes with when
     JAEGER_ES_PASSWORD is set (vigie-jaeger-* only);
  3. the ILM policy vigie-logs-policy (vigie-logs-policy.json: deleted 30 days after the index was created);
  4. the component template vigie-logs-ilm (vigie-logs-ilm.component.json: index.lifecycle.name, no mapping);
  5. the index template vigie-logs: platform/logging/opensearch/vigie-logs-template.json, the one place of the ECS
     mapping, read at run time with vigie-logs-ilm added to its `composed_of` (the mapping is never copied here);
  6. Kibana's saved objects (platform/logging/kibana/saved-objects.ndjson) through POST /api/saved_objects/_import
     ?overwrite=true, after Kibana answers.

Credentials only from the environment: ELASTIC_PASSWORD (user `elastic`), KIBANA_SYSTEM_PASSWORD,
LOGSTASH_WRITER_PASSWORD, JAEGER_ES_PASSWORD. `--render-index-template` prints the composed index template and
touches no server. Exit status: 0 done, 1 a server refused or never came up, 2 bad arguments. Stdlib only.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOGGING = HERE.parent
POLICY_NAME = "vigie-logs-policy"
COMPONENT_NAME = "vigie-logs-ilm"
TEMPLATE_NAME = "vigie-logs"
LOGSTASH_USER = "vigie_logstash"
LOGSTASH_ROLE = "vigie_logstash_writer"
JAEGER_USER = "vigie_jaeger"
JAEGER_ROLE = "vigie_jaeger_writer"


class SetupError(Exception):
    pass


def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SetupError(f"{path}: {err}") from err
    if not isinstance(value, dict):
        raise SetupError(f"{path}: expected a JSON object")
    return value


def compose_index_template(shared: dict, component_name: str = COMPONENT_NAME) -> dict:
    """The shared composable template with our component added; refuses anything that is not one."""
    if not shared.get("index_patterns") or not isinstance(shared.get("template"), dict):
        raise SetupError("shared template: not a composable index template (index_patterns and template expected)")
    composed = json.loads(json.dumps(shared))
    names = list(composed.get("composed_of", []))
    if component_name not in names:
        names.append(component_name)
    composed["composed_of"] = names
    return composed


def check_component(component: dict) -> None:
    template = component.get("template", {})
    if "mappings" in template:
        raise SetupError("component template: carries mappings; the shared template is the only place for them")
    if template.get("settings", {}).get("index.lifecycle.name") != POLICY_NAME:
        raise SetupError(f"component template: index.lifecycle.name must be {POLICY_NAME}")


class Client:
    def __init__(self, base: str, auth: tuple[str, str] | None, timeout: float = 30) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.headers = {}
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def call(
        self, method: str, path: str, body: bytes | dict | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict]:
        data = body
        all_headers = dict(self.headers)
        if isinstance(body, dict):
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read().decode() or "{}"
                return response.status, json.loads(text)
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            raise SetupError(f"{method} {path}: HTTP {err.code}: {text[:500]}") from err

    def wait(self, path: str, seconds: float, ready) -> None:
        deadline = time.monotonic() + seconds
        last = "no answer"
        while True:
            try:
                status, body = self.call("GET", path)
                if ready(body):
                    return
                last = f"HTTP {status}: {json.dumps(body)[:200]}"
            except (SetupError, urllib.error.URLError, OSError, ValueError) as err:
                last = str(err)
            if time.monotonic() > deadline:
                raise SetupError(f"{self.base}{path} not ready within {seconds:.0f} s ({last})")
            time.sleep(2)


def multipart(field: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = f"vigie-{uuid.uuid4().hex}"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def setup_security(es: Client, env: dict[str, str]) -> None:
    kibana_password = env.get("KIBANA_SYSTEM_PASSWORD")
    if kibana_password:
        es.call("POST", "/_security/user/kibana_system/_password", {"password": kibana_password})
        print("kibana_system password set")
    writer = env.get("LOGSTASH_WRITER_PASSWORD")
    if writer:
        es.call(
            "PUT",
            f"/_security/role/{LOGSTASH_ROLE}",
            {
                "cluster": ["monitor"],
                "indices": [{"names": ["vigie-logs-*"], "privileges": ["create_index", "create_doc"]}],
            },
        )
        es.call("PUT", f"/_security/user/{LOGSTASH_USER}", {"password": writer, "roles": [LOGSTASH_ROLE]})
        print(f"user {LOGSTASH_USER} (role {LOGSTASH_ROLE})")
    jaeger = env.get("JAEGER_ES_PASSWORD")
    if jaeger:
        es.call(
            "PUT",
            f"/_security/role/{JAEGER_ROLE}",
            {
                "cluster": ["monitor", "manage_index_templates"],
                "indices": [
                    {
                        "names": ["vigie-jaeger-*"],
                        "privileges": ["create_index", "write", "read", "view_index_metadata", "delete_index"],
                    }
                ],
            },
        )
        es.call("PUT", f"/_security/user/{JAEGER_USER}", {"password": jaeger, "roles": [JAEGER_ROLE]})
        print(f"user {JAEGER_USER} (role {JAEGER_ROLE})")


def import_saved_objects(kibana: Client, ndjson: Path, wait_seconds: float) -> None:
    kibana.wait(
        "/api/status", wait_seconds, lambda body: body.get("status", {}).get("overall", {}).get("level") == "available"
    )
    body, content_type = multipart("file", ndjson.name, ndjson.read_bytes())
    _, result = kibana.call(
        "POST",
        "/api/saved_objects/_import?overwrite=true",
        body,
        {"Content-Type": content_type, "kbn-xsrf": "vigie-setup"},
    )
    if not result.get("success"):
        raise SetupError(f"Kibana import failed: {json.dumps(result.get('errors', result))[:1000]}")
    print(f"Kibana: {result.get('successCount', 0)} saved objects imported")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Install Vigie's ILM policy, templates and Kibana saved objects.")
    parser.add_argument("--elasticsearch", default=os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200"))
    parser.add_argument(
        "--kibana",
        default=os.environ.get("KIBANA_URL"),
        help="Kibana base URL; without it the saved objects are not imported",
    )
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for each server (300)")
    parser.add_argument("--shared-template", type=Path, default=LOGGING / "opensearch" / "vigie-logs-template.json")
    parser.add_argument("--saved-objects", type=Path, default=LOGGING / "kibana" / "saved-objects.ndjson")
    parser.add_argument(
        "--render-index-template", action="store_true", help="print the composed index template and exit (no server)"
    )
    args = parser.parse_args(argv)
    for name in ("elasticsearch", "kibana"):
        url = getattr(args, name)
        if url is None:
            continue
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.username or parsed.password:
            parser.error(f"--{name} {url!r}: expected http(s)://host:port, credentials from the environment only")
    if args.wait <= 0:
        parser.error("--wait must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = dict(os.environ)
    try:
        policy = read_json(HERE / "vigie-logs-policy.json")
        component = read_json(HERE / "vigie-logs-ilm.component.json")
        check_component(component)
        template = compose_index_template(read_json(args.shared_template))
        if args.render_index_template:
            print(json.dumps(template, indent=2, sort_keys=True))
            return 0
        password = env.get("ELASTIC_PASSWORD")
        es = Client(args.elasticsearch, ("elastic", password) if password else None)
        es.wait("/_cluster/health", args.wait, lambda body: body.get("status") in ("yellow", "green"))
        if password:
            setup_security(es, env)
        es.call("PUT", f"/_ilm/policy/{POLICY_NAME}", policy)
        es.call("PUT", f"/_component_template/{COMPONENT_NAME}", component)
        es.call("PUT", f"/_index_template/{TEMPLATE_NAME}", template)
        print(
            f"Elasticsearch: ILM policy {POLICY_NAME}, component template {COMPONENT_NAME}, "
            f"index template {TEMPLATE_NAME} (composed_of {template['composed_of']})"
        )
        if args.kibana:
            kibana = Client(args.kibana, ("elastic", password) if password else None)
            import_saved_objects(kibana, args.saved_objects, args.wait)
    except SetupError as err:
        print(f"setup.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
