"""The vigie-logs index template and the retention job against a real OpenSearch 2.19 (see conftest.py)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ADMIN, TEMPLATE, admin, closed_port, json_lines

# One access-log line as the gateway wrote it (var/log/gateway.log of the local platform, copied verbatim).
GATEWAY_LINE = (
    '{"@timestamp":"2026-11-26T23:33:37.580Z","log.level":"info","service.name":"gateway","message":"request",'
    '"http.request.method":"POST","url.path":"/api/v1/orders/4d983c62-d1f4-4165-bc75-beb5c865a3a2/status",'
    '"http.route":"/api/v1/orders/{id}/status","http.response.status_code":200,"event.duration":6257729,'
    '"http.request.id":"loadgen-e7d1af8e88e64f35","client.address":"127.0.0.1",'
    '"trace.id":"0ee2e3ac64522c718d5e49653c3b0093","span.id":"d18acaf114b3666f"}'
)
# Ages (days before "today") of the daily indices the retention tests create, and which of them must go with 30 days.
AGES = (0, 1, 29, 30, 31, 45, 400)
EXPIRED_AGES = {31, 45, 400}


def daily(day: dt.date) -> str:
    return f"vigie-logs-{day:%Y.%m.%d}"


def field_type(mapping: dict, dotted: str) -> str | None:
    """Type of a dotted field in an index mapping whose dotted names are objects (ECS)."""
    node = {"properties": mapping["mappings"]["properties"]}
    for part in dotted.split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return None
    return node.get("type")


def metrics(path: Path) -> dict[str, float]:
    samples = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def assert_exit(result: subprocess.CompletedProcess, status: int) -> None:
    assert result.returncode == status, (
        f"expected exit status {status}, got {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


@pytest.fixture
def dated(opensearch):
    """Creates the daily indices AGES days before a given day plus unrelated ones; deletes them afterwards."""
    created: list[str] = []

    def make(today: dt.date, closed_age: int | None = None) -> dict[int, str]:
        by_age = {age: daily(today - dt.timedelta(days=age)) for age in AGES}
        others = [
            f"other-{today - dt.timedelta(days=400):%Y.%m.%d}",  # another pattern, old date
            "vigie-logs-notadate",  # the prefix without a date
            f"vigie-logs-{today.year - 1}.02.30",  # a date that does not exist
            f"{daily(today - dt.timedelta(days=400))}-restored",  # the exact pattern plus a suffix
            f".vigie-system-{today - dt.timedelta(days=400):%Y.%m.%d}",  # a dot-prefixed (system-like) name
        ]
        existing = opensearch.indices()
        for name in [*by_age.values(), *others]:
            if name in existing:  # e.g. today's index from another test: used, and left in place
                continue
            opensearch.create_index(name)
            created.append(name)
        if closed_age is not None:
            name = daily(today - dt.timedelta(days=closed_age))
            opensearch.create_index(name)
            created.append(name)
            opensearch.ok("POST", f"/{name}/_close")
            by_age[closed_age] = name
        make.others = others
        return by_age

    yield make
    opensearch.delete_indices(created)


# ---------------------------------------------------------------------------------------------------------------
# The server itself
# ---------------------------------------------------------------------------------------------------------------


def test_server_is_a_single_local_node_named_vigie_without_disk_thresholds(opensearch):
    root = opensearch.ok("GET", "/")
    assert root["cluster_name"] == "vigie"
    assert root["version"]["distribution"] == "opensearch" and root["version"]["number"].startswith("2.19.")
    nodes = opensearch.ok("GET", "/_nodes/http,settings?flat_settings=true")["nodes"]
    assert len(nodes) == 1
    node = next(iter(nodes.values()))
    assert node["http"]["bound_address"] == [f"127.0.0.1:{opensearch.http_port}"]
    assert node["settings"]["transport.port"] == str(opensearch.transport_port)
    assert node["settings"]["discovery.type"] == "single-node"
    assert node["settings"]["cluster.routing.allocation.disk.threshold_enabled"] == "false"
    # Nothing listens on another interface: a non-loopback address of this host must refuse the connection.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
        own_address = probe.getsockname()[0]
    if own_address.startswith("127."):
        pytest.fail("this host has no non-loopback address to check the bind address against")
    with pytest.raises(OSError):
        socket.create_connection((own_address, opensearch.http_port), timeout=2).close()


# ---------------------------------------------------------------------------------------------------------------
# setup: the index template
# ---------------------------------------------------------------------------------------------------------------


def test_setup_installs_the_template_and_a_new_daily_index_gets_the_mapping(logs_template):
    opensearch = logs_template
    installed = opensearch.ok("GET", "/_index_template/vigie-logs")["index_templates"][0]["index_template"]
    assert installed["index_patterns"] == ["vigie-logs-*"]
    # A second setup changes nothing and still succeeds (idempotent).
    again = admin("setup", "--url", opensearch.url, "--wait", "5")
    assert_exit(again, 0)
    assert json_lines(again.stdout)[-1]["event.action"] == "template-installed"

    today = daily(dt.datetime.now(dt.UTC).date())
    opensearch.delete_indices([today])
    opensearch.create_index(today)
    mapping = opensearch.ok("GET", f"/{today}/_mapping")[today]
    expected = {
        "@timestamp": "date",
        "message": "text",
        "log.level": "keyword",
        "service.name": "keyword",
        "trace.id": "keyword",
        "span.id": "keyword",
        "http.request.method": "keyword",
        "http.response.status_code": "long",
        "event.duration": "long",
        "url.path": "keyword",
        "client.address": "keyword",
        "error.message": "text",
        "user.id": "keyword",
    }
    assert {name: field_type(mapping, name) for name in expected} == expected
    settings = opensearch.ok("GET", f"/{today}/_settings")[today]["settings"]["index"]
    shape = (settings["number_of_shards"], settings["number_of_replicas"], settings["refresh_interval"])
    assert shape == ("1", "0", "1s")
    assert opensearch.ok("GET", f"/_cluster/health/{today}?wait_for_status=green&timeout=10s")["status"] == "green"
    opensearch.delete_indices([today])


def test_the_template_file_is_what_the_server_holds(logs_template):
    """The file is the one definition: what setup installed is that file, field for field."""
    held = logs_template.ok("GET", "/_index_template/vigie-logs")["index_templates"][0]["index_template"]
    source = json.loads(TEMPLATE.read_text())
    assert held["template"]["mappings"] == source["template"]["mappings"]
    assert held["_meta"] == source["_meta"]
    assert held["priority"] == source["priority"]


def test_a_real_service_line_is_searchable_by_trace_id(logs_template):
    opensearch = logs_template
    line = json.loads(GATEWAY_LINE)
    index = "vigie-logs-" + line["@timestamp"][:10].replace("-", ".")
    opensearch.delete_indices([index])
    status, reply = opensearch.request("POST", f"/{index}/_doc?refresh=wait_for", line)
    assert status == 201, reply
    mapping = opensearch.ok("GET", f"/{index}/_mapping")[index]
    # Fields the template does not name: strings become keyword through the dynamic template.
    assert field_type(mapping, "http.request.id") == "keyword"

    def hits(query: dict) -> list[dict]:
        return opensearch.ok("POST", f"/{index}/_search", {"query": query})["hits"]["hits"]

    found = hits({"term": {"trace.id": line["trace.id"]}})
    assert [hit["_source"]["span.id"] for hit in found] == [line["span.id"]]
    assert hits({"term": {"trace.id": "0" * 32}}) == []
    # status code and duration are numbers (range queries), the route a whole keyword, the message full text.
    assert len(hits({"range": {"http.response.status_code": {"gte": 200, "lt": 300}}})) == 1
    assert len(hits({"range": {"http.response.status_code": {"gte": 500}}})) == 0
    assert len(hits({"range": {"event.duration": {"gt": 6_000_000}}})) == 1
    assert len(hits({"term": {"http.route": "/api/v1/orders/{id}/status"}})) == 1
    assert len(hits({"range": {"@timestamp": {"gte": "2026-11-26T23:00:00Z", "lt": "2026-11-27T00:00:00Z"}}})) == 1
    opensearch.delete_indices([index])


# ---------------------------------------------------------------------------------------------------------------
# retention
# ---------------------------------------------------------------------------------------------------------------


def test_retention_deletes_exactly_the_indices_older_than_30_days(opensearch, dated, tmp_path):
    today = dt.date(2001, 6, 15)
    by_age = dated(today, closed_age=50)  # a closed index is deleted like an open one
    metrics_file = tmp_path / "log_retention.prom"
    before = time.time()
    result = admin(
        "retention",
        "--url",
        opensearch.url,
        "--days",
        "30",
        "--today",
        today.isoformat(),
        "--metrics-file",
        str(metrics_file),
    )
    assert_exit(result, 0)

    expired = {name for age, name in by_age.items() if age in EXPIRED_AGES | {50}}
    kept = {name for age, name in by_age.items() if age not in EXPIRED_AGES | {50}}
    remaining = opensearch.indices()
    assert expired & remaining == set(), "older than 30 days, still there"
    assert kept - remaining == set(), "30 days old or younger, deleted"
    assert set(dated.others) - remaining == set(), "indices outside the pattern were deleted"
    # The index of today - 30 stays, today - 31 goes: the boundary, spelled out.
    assert by_age[30] in remaining and by_age[31] not in remaining

    lines = json_lines(result.stdout)
    deletions = [line for line in lines if line.get("event.action") == "index-deleted"]
    assert {line["index.name"] for line in deletions} == expired
    assert all(line["service.name"] == "log-retention" and "@timestamp" in line for line in deletions)
    assert lines[-1]["event.outcome"] == "success" and lines[-1]["indices.deleted"] == len(expired)

    samples = metrics(metrics_file)
    assert samples["vigie_log_retention_deleted_indices_total"] == len(expired)
    assert samples['vigie_log_retention_runs_total{result="ok"}'] == 1
    assert samples['vigie_log_retention_runs_total{result="error"}'] == 0
    assert before <= samples["vigie_log_retention_last_success_timestamp_seconds"] <= time.time()

    # A second run finds nothing to delete and the counters continue from the file.
    assert_exit(
        admin(
            "retention",
            "--url",
            opensearch.url,
            "--days",
            "30",
            "--today",
            today.isoformat(),
            "--metrics-file",
            str(metrics_file),
        ),
        0,
    )
    samples = metrics(metrics_file)
    assert samples['vigie_log_retention_runs_total{result="ok"}'] == 2
    assert samples["vigie_log_retention_deleted_indices_total"] == len(expired)


def test_metrics_file_passes_promtool(opensearch, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run tools/install-deps.sh (Debian package prometheus)")
    metrics_file = tmp_path / "log_retention.prom"
    assert_exit(
        admin(
            "retention",
            "--url",
            opensearch.url,
            "--days",
            "30",
            "--today",
            "1999-01-01",
            "--metrics-file",
            str(metrics_file),
        ),
        0,
    )
    check = subprocess.run(
        [promtool, "check", "metrics"], input=metrics_file.read_text(), capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["log_retention.prom"], "a temporary file was left behind"


def test_dry_run_deletes_nothing_and_says_what_it_would_delete(opensearch, dated):
    today = dt.date(2002, 6, 15)
    by_age = dated(today)
    before = opensearch.indices()
    result = admin("retention", "--url", opensearch.url, "--days", "30", "--today", today.isoformat(), "--dry-run")
    assert_exit(result, 0)
    assert opensearch.indices() == before
    would = {
        line["index.name"] for line in json_lines(result.stdout) if line.get("event.action") == "index-delete-dry-run"
    }
    assert would == {name for age, name in by_age.items() if age in EXPIRED_AGES}


def test_today_override_moves_the_cutoff(opensearch, dated):
    today = dt.date(2003, 6, 15)
    by_age = dated(today)
    # Seen from 20 days earlier, only the 400-day-old index is more than 30 days old.
    earlier = today - dt.timedelta(days=20)
    assert_exit(admin("retention", "--url", opensearch.url, "--days", "30", "--today", earlier.isoformat()), 0)
    remaining = opensearch.indices()
    assert by_age[400] not in remaining
    assert {by_age[31], by_age[45]} <= remaining
    # --days moves it too: with 1 day kept, seen from the real day, only today and yesterday stay.
    assert_exit(admin("retention", "--url", opensearch.url, "--days", "1", "--today", today.isoformat()), 0)
    remaining = opensearch.indices()
    assert {by_age[0], by_age[1]} <= remaining
    assert {by_age[29], by_age[30], by_age[31], by_age[45]} & remaining == set()


def test_default_today_is_the_current_utc_date(opensearch, dated):
    by_age = dated(dt.datetime.now(dt.UTC).date())
    result = admin("retention", "--url", opensearch.url, "--days", "30", "--dry-run")
    assert_exit(result, 0)
    would = {
        line["index.name"] for line in json_lines(result.stdout) if line.get("event.action") == "index-delete-dry-run"
    }
    assert {by_age[age] for age in EXPIRED_AGES} <= would
    assert {by_age[age] for age in set(AGES) - EXPIRED_AGES} & would == set()


@pytest.mark.parametrize(
    "args, complaint",
    [
        (["--days", "0"], "--days"),
        (["--days", "-3"], "--days"),
        (["--days", "thirty"], "--days"),
        (["--days", "30", "--today", "2025-02-30"], "--today"),
        (["--days", "30", "--today", "2025-13-01"], "--today"),
        (["--days", "30", "--today", "20250101"], "--today"),
        (["--days", "30", "--every", "0"], "--every"),
        (["--days", "30", "--url", "ftp://127.0.0.1:9200"], "--url"),
        (["--days", "30", "--url", "127.0.0.1:9200"], "--url"),
        (["--days", "30", "--url", "http://"], "--url"),
        (["--days", "30", "--url", "http://127.0.0.1:99999"], "--url"),
        ([], "--days"),
    ],
)
def test_bad_retention_arguments_exit_2_with_a_message(opensearch, args, complaint):
    if "--url" not in args:
        args = [*args, "--url", opensearch.url]
    result = admin("retention", *args)
    assert_exit(result, 2)
    assert complaint in result.stderr, result.stderr
    assert result.stdout == "", "something ran despite the bad arguments"


def test_bad_setup_arguments_exit_2_and_an_unreachable_cluster_exits_1():
    result = admin("setup", "--url", "http://127.0.0.1:9200", "--wait", "-1")
    assert_exit(result, 2)
    assert "--wait" in result.stderr
    result = admin("setup", "--url", f"http://127.0.0.1:{closed_port()}", "--wait", "1")
    assert_exit(result, 1)
    assert "not yellow or green within 1 s" in result.stderr and "refused" in result.stderr.lower()


class _Forwarder(socketserver.ThreadingTCPServer):
    """A TCP forwarder to OpenSearch on a port chosen beforehand: 'the server comes back' for the retention loop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, target: tuple[str, int]):
        self.target = target
        super().__init__(("127.0.0.1", port), _Pipe)


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self):
        upstream = socket.create_connection(self.server.target, timeout=30)

        def pump(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        thread = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        thread.start()
        pump(self.request, upstream)
        thread.join(30)
        upstream.close()


def test_retention_loop_survives_an_unreachable_server_and_stops_on_sigterm(opensearch, dated, tmp_path):
    today = dt.date(2004, 6, 15)
    by_age = dated(today)
    metrics_file = tmp_path / "log_retention.prom"
    port = closed_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ADMIN),
            "retention",
            "--url",
            f"http://127.0.0.1:{port}",
            "--days",
            "30",
            "--today",
            today.isoformat(),
            "--every",
            "0.5",
            "--timeout",
            "2",
            "--metrics-file",
            str(metrics_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    forwarder = None
    try:

        def wait_for(predicate, what: str, timeout: float = 30):
            deadline = time.monotonic() + timeout
            while not predicate():
                assert proc.poll() is None, f"the loop exited ({proc.returncode}): {proc.stderr.read()}"
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(0.1)

        def sample(name: str) -> float:
            try:
                return metrics(metrics_file).get(name, 0)
            except FileNotFoundError:
                return 0

        errors = 'vigie_log_retention_runs_total{result="error"}'
        oks = 'vigie_log_retention_runs_total{result="ok"}'
        # Two failed ticks in a row: the first error did not end the loop.
        wait_for(lambda: sample(errors) >= 2, "two failed runs in the metrics file")
        assert sample(oks) == 0 and sample("vigie_log_retention_last_success_timestamp_seconds") == 0
        assert {by_age[age] for age in EXPIRED_AGES} <= opensearch.indices()
        # The server becomes reachable on that port: the next tick succeeds and deletes.
        forwarder = _Forwarder(port, ("127.0.0.1", opensearch.http_port))
        threading.Thread(target=forwarder.serve_forever, daemon=True).start()
        wait_for(lambda: sample(oks) >= 1, "a successful run once the server is reachable")
        assert {by_age[age] for age in EXPIRED_AGES} & opensearch.indices() == set()
        assert sample("vigie_log_retention_deleted_indices_total") == len(EXPIRED_AGES)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, "SIGTERM must end the loop with status 0"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if forwarder is not None:
            forwarder.shutdown()
            forwarder.server_close()
    lines = json_lines(proc.stdout.read())
    failures = [line for line in lines if line.get("event.outcome") == "failure"]
    assert failures and all(f"127.0.0.1:{port}" in line["error.message"] for line in failures)
    assert lines[-1]["event.action"] == "stopped"
