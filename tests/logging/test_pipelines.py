"""The log and trace pipelines end to end, on a real local platform (`vigie-local up` with logging and tracing on).

A request we give our own W3C trace id goes through the gateway; then:
- Jaeger returns one trace with the gateway's, the order service's and the user service's spans, correctly parented;
- OpenSearch returns that request's log lines from all three services by that trace id, within seconds;
- stopping OpenSearch loses no line: what the services wrote meanwhile is searchable once it is back;
- the pipelines' own health reaches Prometheus (shipper, retention job, Jaeger).
Measured and printed in the summary: log line written -> searchable, per request.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "system"))
from vigie_stack import local_platform_ports  # noqa: E402 - the system tests' helpers, shared

SCRIPT = REPO / "deploy" / "local" / "vigie-local"
BUILD_DIR = Path(os.environ.get("VIGIE_BUILD_DIR", REPO / "build" / "release")).resolve()
COMMAND_TIMEOUT = 420  # seconds; `up` starts a JVM, slow on a busy 2-core machine
SERVICES = ("gateway", "user", "order")


def wait_for(what: str, check, timeout: float, interval: float = 0.5):
    """Polls check() until it returns something truthy; fails the test with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, ValueError, KeyError) as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"{what}: not after {timeout} s (last: {last!r})")


class Platform:
    def __init__(self, state: Path, opensearch_port: int) -> None:
        self.state = state
        self.ports = local_platform_ports(opensearch_port)
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("VIGIE_") and k not in ("DATABASE_URL", "DATABASE_URL_FILE")
        }
        self.env.update({name: str(port) for name, port in self.ports.items()})
        self.env.update(
            {
                "VIGIE_STATE_DIR": str(state),
                "VIGIE_BUILD_DIR": str(BUILD_DIR),
                "VIGIE_LOADGEN_RATE": "0",
                "VIGIE_LOGGING": "on",
                "VIGIE_TRACING": "on",
                "VIGIE_UP_TIMEOUT": "300",
            }
        )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            pytest.fail(
                f"vigie-local {' '.join(args)} exited {result.returncode}\n"
                f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            )
        return result

    def supervisorctl(self, *args: str) -> str:
        return subprocess.run(
            ["supervisorctl", "-c", str(self.state / "supervisor" / "supervisord.conf"), *args],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout

    def url(self, port_name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}{path}"

    # --- the application, through the gateway -----------------------------------------------------------------
    def api(self, method: str, path: str, trace_id: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        headers["traceparent"] = f"00-{trace_id}-{secrets.token_hex(8)}-01"
        return requests.request(method, self.url("VIGIE_GATEWAY_PORT", path), headers=headers, timeout=15, **kwargs)

    # --- the stores ---------------------------------------------------------------------------------------------
    def log_lines(self, trace_id: str) -> list[dict]:
        """The documents OpenSearch holds for a trace id, all daily indices."""
        reply = requests.post(
            self.url("VIGIE_OPENSEARCH_PORT", "/vigie-logs-*/_search"),
            timeout=10,
            json={"size": 200, "query": {"term": {"trace.id": trace_id}}, "sort": [{"@timestamp": "asc"}]},
        )
        if reply.status_code == 404:  # no index yet
            return []
        reply.raise_for_status()
        return [hit["_source"] for hit in reply.json()["hits"]["hits"]]

    def written_lines(self, trace_id: str) -> list[dict]:
        """The lines the services wrote to their log files for a trace id (what must end up in OpenSearch)."""
        lines = []
        for service in SERVICES:
            for path in sorted((self.state / "log").glob(f"{service}.log*")):
                for line in path.read_text(errors="replace").splitlines():
                    if trace_id in line:
                        lines.append(json.loads(line))
        return lines

    def trace(self, trace_id: str) -> dict | None:
        reply = requests.get(self.url("VIGIE_JAEGER_QUERY_PORT", f"/api/traces/{trace_id}"), timeout=10)
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        data = reply.json().get("data") or []
        return data[0] if len(data) == 1 else None

    def prometheus(self, query: str) -> list[dict]:
        reply = requests.get(self.url("VIGIE_PROMETHEUS_PORT", "/api/v1/query"), params={"query": query}, timeout=10)
        reply.raise_for_status()
        return reply.json()["data"]["result"]


@pytest.fixture(scope="module")
def platform(opensearch_http_port: int):
    for binary in (
        BUILD_DIR / "services/user/user",
        BUILD_DIR / "services/order/order",
        BUILD_DIR / "services/gateway/gateway",
    ):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is not built (build the release preset or set VIGIE_BUILD_DIR)")
    # Under /tmp: PostgreSQL runs as the postgres user and must traverse the path.
    state = Path(tempfile.mkdtemp(prefix="vigie-pipelines-", dir="/tmp"))
    state.chmod(0o755)
    platform = Platform(state, opensearch_http_port)
    try:
        platform.run("up")
        yield platform
    finally:
        subprocess.run(
            [str(SCRIPT), "down", "--purge", "--yes"],
            env=platform.env,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def customer(platform: Platform) -> dict:
    """A signed-up, logged-in user (with requests of their own trace ids, not the ones under test)."""
    email = f"pipelines-{uuid.uuid4().hex[:12]}@example.com"
    created = platform.api(
        "POST",
        "/api/v1/users",
        secrets.token_hex(16),
        json={"email": email, "password": "correct horse battery", "name": "Pipe Line"},
    )
    assert created.status_code == 201, created.text
    login = platform.api(
        "POST", "/api/v1/auth/login", secrets.token_hex(16), json={"email": email, "password": "correct horse battery"}
    )
    assert login.status_code == 200, login.text
    return {"id": created.json()["id"], "token": login.json()["access_token"]}


def place_order(platform: Platform, customer: dict, trace_id: str) -> requests.Response:
    return platform.api(
        "POST",
        "/api/v1/orders",
        trace_id,
        headers={"Authorization": f"Bearer {customer['token']}", "Idempotency-Key": trace_id},
        json={"items": [{"sku": "BOOK-42", "quantity": 1, "unit_price_cents": 990}]},
    )


def field(document: dict, name: str):
    """An ECS field of a stored document: the services write dotted names ("trace.id"), which OpenSearch keeps as
    they are in _source; fields the shipper adds are nested objects ({"log": {"file": ...}})."""
    if name in document:
        return document[name]
    head, _, rest = name.partition(".")
    return field(document[head], rest) if rest and isinstance(document.get(head), dict) else None


def spans_by_service(trace: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for span in trace["spans"]:
        out.setdefault(trace["processes"][span["processID"]]["serviceName"], []).append(span)
    return out


def tags(span: dict) -> dict:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def parent_of(span: dict) -> str | None:
    refs = [ref for ref in span.get("references", []) if ref["refType"] == "CHILD_OF"]
    return refs[0]["spanID"] if refs else None


def test_an_order_is_one_trace_across_gateway_order_and_user(platform: Platform, customer: dict):
    trace_id = secrets.token_hex(16)
    reply = place_order(platform, customer, trace_id)
    assert reply.status_code == 201, reply.text
    assert reply.headers.get("traceparent", trace_id).find(trace_id) >= 0

    def complete():
        trace = platform.trace(trace_id)
        return trace if trace and set(spans_by_service(trace)) >= set(SERVICES) else None

    trace = wait_for(f"trace {trace_id} with spans of {SERVICES} in Jaeger", complete, timeout=60)
    assert trace["traceID"] == trace_id
    by_id = {span["spanID"]: span for span in trace["spans"]}
    by_service = spans_by_service(trace)

    # The gateway's server span is the root inside the platform (its parent is our caller's span, not in Jaeger).
    [gateway_server] = [s for s in by_service["gateway"] if tags(s).get("span.kind") == "server"]
    assert parent_of(gateway_server) not in by_id
    assert gateway_server["operationName"] == "POST /api/v1/orders"
    assert tags(gateway_server)["http.request.method"] == "POST"
    assert int(tags(gateway_server)["http.response.status_code"]) == 201

    # order's server span hangs under one of the gateway's client spans; user's under one of order's client spans.
    [order_server] = [s for s in by_service["order"] if tags(s).get("span.kind") == "server"]
    assert by_id[parent_of(order_server)] in by_service["gateway"]
    assert tags(by_id[parent_of(order_server)]).get("span.kind") == "client"
    user_servers = [s for s in by_service["user"] if tags(s).get("span.kind") == "server"]
    assert user_servers, "the order service checks the user through the user service"
    for span in user_servers:
        parent = by_id[parent_of(span)]
        assert parent in by_service["order"] and tags(parent).get("span.kind") == "client"
    # Every span but the root has its parent in the trace: nothing dangling.
    assert [s for s in trace["spans"] if parent_of(s) not in by_id] == [gateway_server]
    # Queries are spans too, with the database semantic conventions.
    assert any(tags(s).get("db.system") == "postgresql" for s in by_service["order"])


def test_the_summary_fan_out_is_one_trace(platform: Platform, customer: dict):
    trace_id = secrets.token_hex(16)
    reply = platform.api(
        "GET",
        f"/api/v1/users/{customer['id']}/summary",
        trace_id,
        headers={"Authorization": f"Bearer {customer['token']}"},
    )
    assert reply.status_code == 200, reply.text

    def complete():
        trace = platform.trace(trace_id)
        return trace if trace and set(spans_by_service(trace)) >= set(SERVICES) else None

    trace = wait_for(f"summary trace {trace_id} in Jaeger", complete, timeout=60)
    by_id = {span["spanID"]: span for span in trace["spans"]}
    by_service = spans_by_service(trace)
    [root] = [s for s in trace["spans"] if parent_of(s) not in by_id]
    assert root in by_service["gateway"]
    # Both services' server spans are children of gateway client spans: the fan-out, side by side.
    for service in ("user", "order"):
        servers = [s for s in by_service[service] if tags(s).get("span.kind") == "server"]
        assert servers, service
        for span in servers:
            parent = by_id[parent_of(span)]
            assert parent in by_service["gateway"] and tags(parent).get("span.kind") == "client", service


def test_a_requests_log_lines_are_found_by_its_trace_id(platform: Platform, customer: dict, figures: dict):
    trace_id = secrets.token_hex(16)
    reply = place_order(platform, customer, trace_id)
    assert reply.status_code == 201, reply.text
    written_at = time.monotonic()

    def all_shipped():
        found = platform.log_lines(trace_id)
        return found if {field(line, "service.name") for line in found} >= set(SERVICES) else None

    found = wait_for(f"log lines of {trace_id} from {SERVICES} in OpenSearch", all_shipped, timeout=60, interval=0.2)
    figures["log line written -> searchable (one order, 3 services)"] = f"{time.monotonic() - written_at:.1f} s"
    # Exactly the lines the services wrote, each once, with their ECS fields kept.
    assert len(found) == len(platform.written_lines(trace_id))
    for line in found:
        assert field(line, "trace.id") == trace_id
        assert re.fullmatch(r"[0-9a-f]{16}", field(line, "span.id"))
        assert field(line, "log.level") in ("debug", "info", "warn", "error")
        assert line["@timestamp"].endswith("Z")
        assert field(line, "log.file.path").endswith(f"{field(line, 'service.name')}.log")
    access = [line for line in found if field(line, "http.response.status_code")]
    assert {field(line, "service.name") for line in access} == set(SERVICES)


def test_logs_written_while_opensearch_is_down_are_not_lost(platform: Platform, customer: dict, figures: dict):
    stopped_at = time.monotonic()
    platform.supervisorctl("stop", "opensearch")
    try:
        trace_ids = [secrets.token_hex(16) for _ in range(10)]
        for trace_id in trace_ids:
            assert place_order(platform, customer, trace_id).status_code == 201
        # The shipper holds them: its queue is not empty while OpenSearch is away.
        metrics_file = platform.state / "metrics" / "log_shipper.prom"

        def queued():
            text = metrics_file.read_text() if metrics_file.exists() else ""
            sizes = [float(v) for v in re.findall(r'^rsyslog_queue_size\{queue="opensearch[^"]*"\} (\S+)$', text, re.M)]
            return sum(sizes) > 0

        wait_for("the shipper's queue holding lines while OpenSearch is down", queued, timeout=40)
    finally:
        platform.supervisorctl("start", "opensearch")
    restarted_at = time.monotonic()
    expected = {trace_id: len(platform.written_lines(trace_id)) for trace_id in trace_ids}
    assert all(count >= 3 for count in expected.values()), expected

    def all_back():
        return all(len(platform.log_lines(t)) == n for t, n in expected.items())

    wait_for("every line written during the outage in OpenSearch", all_back, timeout=180, interval=1)
    figures["OpenSearch outage: lines written meanwhile / all searchable after restart"] = (
        f"{sum(expected.values())} lines over {restarted_at - stopped_at:.0f} s down / "
        f"{time.monotonic() - restarted_at:.0f} s"
    )


def test_pipeline_health_reaches_prometheus(platform: Platform, customer: dict):
    checks = {
        "shipper reports": 'time() - rsyslog_stats_last_timestamp_seconds{job="node"} < 30',
        "lines read, per service": 'rsyslog_lines_read_total{job="node"} > 0',
        "lines sent to OpenSearch": 'rsyslog_opensearch_submitted_total{job="node"} > 0',
        "retention job ran": 'vigie_log_retention_runs_total{job="node",result="ok"} >= 1',
        "Jaeger scraped": 'up{job="jaeger"} == 1',
        "spans accepted by Jaeger": 'sum(otelcol_receiver_accepted_spans_total{job="jaeger"}) > 0',
        "services export spans": 'sum by (service) (otel_spans_exported_total{job=~"gateway|user|order"}) > 0',
    }
    for what, query in checks.items():
        minimum = 3 if what in ("services export spans", "lines read, per service") else 1
        wait_for(what, lambda q=query, least=minimum: len(platform.prometheus(q)) >= least, timeout=90, interval=2)


# --- the shipper's own pieces, without a platform ----------------------------------------------------------------
SHIPPER_CONF = REPO / "platform" / "logging" / "rsyslog" / "vigie-shipper.conf"
STATS_EXPORTER = REPO / "platform" / "logging" / "rsyslog" / "stats_exporter.py"


def shipper_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "logs").mkdir()
    (tmp_path / "state").mkdir()
    return {
        **os.environ,
        "VIGIE_LOG_DIR": str(tmp_path / "logs"),
        "VIGIE_SHIPPER_STATE": str(tmp_path / "state"),
        "VIGIE_HOST": "127.0.0.1",
        "VIGIE_OPENSEARCH_PORT": "9200",
        "VIGIE_SHIPPER_STATS": str(STATS_EXPORTER),
        "VIGIE_METRICS_DIR": str(tmp_path),
    }


def test_shipper_configuration_is_valid_for_rsyslog(tmp_path: Path):
    env = shipper_env(tmp_path)
    check = subprocess.run(
        ["rsyslogd", "-N1", "-f", str(SHIPPER_CONF)], env=env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The check can fail: a misspelt parameter is refused.
    broken = tmp_path / "broken.conf"
    broken.write_text(SHIPPER_CONF.read_text().replace('bulkmode="on"', 'bulkmod="on"'))
    check = subprocess.run(["rsyslogd", "-N1", "-f", str(broken)], env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode != 0


def test_stats_exporter_turns_impstats_into_valid_prometheus_metrics(tmp_path: Path):
    impstats = [
        {"name": "lines_read", "origin": "dynstats.bucket", "values": {"order": 42, "gateway": 7}},
        {"name": "opensearch", "origin": "core.action", "processed": 40, "failed": 0, "suspended": 1},
        {"name": "opensearch queue", "origin": "core.queue", "size": 5, "discarded.full": 0, "discarded.nf": 2},
        {
            "name": "omelasticsearch",
            "origin": "omelasticsearch",
            "submitted": 40,
            "failed.http": 1,
            "failed.httprequests": 1,
            "failed.checkConn": 13,
            "failed.es": 0,
        },
        {"name": "resource-usage", "origin": "impstats", "utime": 1},
    ]
    stdin = "\n".join(json.dumps(stat) for stat in impstats) + "\nnot json\n"
    run = subprocess.run(
        [str(STATS_EXPORTER), "--metrics-dir", str(tmp_path)], input=stdin, capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "log_shipper.prom").read_text()
    assert 'rsyslog_lines_read_total{service="order"} 42' in text
    assert 'rsyslog_lines_read_total{service="gateway"} 7' in text
    assert 'rsyslog_queue_size{queue="opensearch queue"} 5' in text
    assert 'rsyslog_queue_discarded_total{queue="opensearch queue",reason="not_fitting"} 2' in text
    assert 'rsyslog_opensearch_failed_requests_total{reason="checkConn"} 13' in text
    assert "rsyslog_stats_last_timestamp_seconds " in text
    promtool = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr
    # A metrics directory that does not exist is refused with a message.
    refused = subprocess.run(
        [str(STATS_EXPORTER), "--metrics-dir", str(tmp_path / "absent")],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2 and "--metrics-dir" in refused.stderr
