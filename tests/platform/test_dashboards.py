"""Grafana dashboards (platform/grafana/): generated output current, typed by grafana-foundation-sdk, provisioning
consistent, and every panel query answered with data by a live Prometheus after real traffic.

Grafana itself cannot run here, so the dashboards are proven the ways that remain:
  - types: each committed JSON decodes through the SDK's typed model and encodes back to exactly the same JSON (a key
    the model does not know would be lost), and every decoded value matches the model's type annotations (enums,
    literals, numbers, nested objects; panel options and targets decode to their plugin's own classes);
  - syntax, offline: every query, variables substituted, passes `promtool check rules`, and every recording rule a
    panel reads is recorded in platform/prometheus/rules/;
  - data: the local platform (deploy/local/vigie-local, own state directory and free ports, log and trace pipelines
    on, as `make up` runs it) runs under traffic through the gateway, then every panel target, annotation and
    variable query is evaluated with /api/v1/query and must return at least one series with a value that is not NaN.

Conditions a fresh stack would not show are created for real, never faked: an admin fault switch (error_ratio) on
every service makes 5xx responses and fires FaultInjectionActive, so the firing-alert panels and annotations have
something to show. Queries written to show 0 instead of nothing (`or vector(0)`): firing/critical alert counts,
monitoring targets down, the 4xx ratio's numerator, the log lines refused by OpenSearch. Restarts need no restart:
changes() over the existing start-time series is 0.

Needs the release build (user, order and gateway binaries): the live test fails, never skips, without them.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import typing
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from conftest import PLATFORM, REPO, RULES_DIR, load_yaml, run, tool

sys.path.insert(0, str(REPO / "tests" / "system"))
from vigie_stack import free_opensearch_port, local_platform_ports  # noqa: E402 - the system tests' helpers, shared

GRAFANA = PLATFORM / "grafana"
GENERATOR = GRAFANA / "dashboards.py"
DASHBOARDS_DIR = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
VIGIE_LOCAL = REPO / "deploy" / "local" / "vigie-local"
BUILD_DIR = Path(os.environ.get("VIGIE_BUILD_DIR", REPO / "build" / "release"))
SERVICES = ("gateway", "user", "order")

# What Grafana would put in place of its built-in variables when the panel is drawn.
BUILTINS = {"$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "15s", "$__range": "1h"}
LIVE_DEADLINE = 90  # seconds of traffic before a panel still without data counts as failed

try:
    from grafana_foundation_sdk.cog import plugins as sdk_plugins
    from grafana_foundation_sdk.cog import runtime as sdk_runtime
    from grafana_foundation_sdk.cog import variants as sdk_variants
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import dashboard as sdk_dashboard
    from grafana_foundation_sdk.models import prometheus as sdk_prometheus
except ImportError:  # a missing SDK fails every test that needs it, with the remedy
    sdk_dashboard = None


def require_sdk() -> None:
    if sdk_dashboard is None:
        pytest.fail(
            "grafana-foundation-sdk is missing from this interpreter: run tools/install-deps.sh "
            "--python-only and use .cache/venv/bin/pytest"
        )


def load_dashboards() -> dict[str, dict]:
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS_DIR}: run platform/grafana/dashboards.py"
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in files}


def panels(dashboard: dict) -> list[dict]:
    """Every panel, rows' nested panels included."""
    result = []
    for panel in dashboard.get("panels", []):
        result.append(panel)
        result.extend(panel.get("panels", []))
    return result


# ---------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------


def generate(*args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, str(GENERATOR), *args], timeout=120)


def test_committed_dashboards_are_current():
    result = generate("--check")
    assert result.returncode == 0, f"platform/grafana/dashboards.py --check:\n{result.stdout}{result.stderr}"


def test_check_detects_stale_and_stray_files(tmp_path):
    out = tmp_path / "dashboards"
    shutil.copytree(DASHBOARDS_DIR, out)
    assert generate("--check", "--out-dir", str(out)).returncode == 0
    edited = out / "service-user.json"
    edited.write_text(edited.read_text().replace("Vigie / User service", "Vigie / Edited by hand"))
    (out / "stray.json").write_text("{}\n")
    stale = generate("--check", "--out-dir", str(out))
    assert stale.returncode == 1
    assert "stale: " + str(edited) in stale.stderr and "stray.json" in stale.stderr, stale.stderr
    fixed = generate("--out-dir", str(out))
    assert fixed.returncode == 0, fixed.stderr
    assert generate("--check", "--out-dir", str(out)).returncode == 0
    assert not (out / "stray.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# Types: the SDK's model is the schema
# ---------------------------------------------------------------------------------------------------------------


def _type_errors(value, hint, path: str) -> list[str]:
    """Where `value` does not match the SDK type annotation `hint` (empty when it does)."""
    if hint is typing.Any or hint is object:
        return []
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        arms = typing.get_args(hint)
        if value is None and type(None) in arms:
            return []
        arms = [arm for arm in arms if arm is not type(None)]
        # Several classes: the value's own class says which arm to check (its errors are the useful ones).
        exact = [arm for arm in arms if isinstance(arm, type) and type(value) is arm]
        if len(arms) == 1 or exact:
            return _type_errors(value, (exact or arms)[0], path)
        if any(not _type_errors(value, arm, path) for arm in arms):
            return []
        return [f"{path}: {value!r} matches none of {hint}"]
    if origin is typing.Literal:
        return [] if value in typing.get_args(hint) else [f"{path}: {value!r} not one of {typing.get_args(hint)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {value!r}"]
        (item,) = typing.get_args(hint)
        return [e for i, v in enumerate(value) for e in _type_errors(v, item, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {value!r}"]
        key_hint, value_hint = typing.get_args(hint)
        return [
            e
            for k, v in value.items()
            for e in _type_errors(k, key_hint, f"{path}.<key>") + _type_errors(v, value_hint, f"{path}.{k}")
        ]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            hint(value)
        except ValueError:
            return [f"{path}: {value!r} is not a {hint.__name__} ({[m.value for m in hint]})"]
        return []
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number, got {value!r}"]
    if hint in (int, str, bool):
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {hint.__name__}, got {value!r}"]
    if hint is sdk_variants.Dataquery:
        if isinstance(value, sdk_runtime.UnknownDataquery):
            return [f"{path}: a query of no known data source type: {value.data!r}"]
        return _object_errors(value, path)
    if isinstance(hint, type) and isinstance(value, dict) and hasattr(hint, "from_json"):
        # The SDK's decoder leaves a few nested lists as plain JSON (panel links, transformations): decode them
        # with their own class, which must keep every key, and check that.
        decoded = hint.from_json(value)
        encoded = json.loads(json.dumps(decoded, cls=JSONEncoder))
        if encoded != value:
            return [f"{path}: not a {hint.__name__}: {_first_difference(value, encoded)}"]
        return _object_errors(decoded, path)
    if isinstance(hint, type):
        if not isinstance(value, hint):
            return [f"{path}: expected {hint.__name__}, got {type(value).__name__} {value!r}"]
        return _object_errors(value, path)
    return [f"{path}: no check for type {hint}"]


def _object_errors(obj, path: str) -> list[str]:
    hints = typing.get_type_hints(type(obj))
    return [e for name, hint in hints.items() for e in _type_errors(getattr(obj, name), hint, f"{path}.{name}")]


def _typed_errors(data: dict) -> list[str]:
    """Every way `data` falls short of the SDK's Dashboard model."""
    sdk_plugins.register_default_plugins()
    model = sdk_dashboard.Dashboard.from_json(data)
    errors = []
    back = json.loads(json.dumps(model, cls=JSONEncoder))
    if back != data:
        errors.append(
            "does not survive decoding and encoding through the SDK model (a key or value the model "
            f"does not know):\n{_first_difference(data, back)}"
        )
    errors += _object_errors(model, "dashboard")
    for panel in model.panels or []:
        if isinstance(panel, sdk_dashboard.RowPanel):
            continue
        where = f"panel {panel.title!r}"
        # Options and custom field config are `object` in the panel model; the plugin registry gives their types.
        config = sdk_runtime.panelcfg_config(panel.type_val)
        if config is None:
            errors.append(f"{where}: panel type {panel.type_val!r} unknown to the SDK")
            continue
        if config.options_from_json_hook and panel.options is not None:
            if isinstance(panel.options, dict):
                errors.append(f"{where}: options did not decode to {panel.type_val}'s Options")
            else:
                errors += _object_errors(panel.options, f"{where}.options")
        custom = panel.field_config.defaults.custom if panel.field_config and panel.field_config.defaults else None
        if config.field_config_from_json_hook and custom is not None:
            if isinstance(custom, dict):
                errors.append(f"{where}: fieldConfig.defaults.custom did not decode to {panel.type_val}'s type")
            else:
                errors += _object_errors(custom, f"{where}.fieldConfig.defaults.custom")
        for target in panel.targets or []:
            if not isinstance(target, sdk_prometheus.Dataquery):
                errors.append(f"{where}: target {target!r} is not a Prometheus query")
    return errors


def _first_difference(expected, got, path: str = "") -> str:
    if type(expected) is not type(got):
        return f"{path or '/'}: {expected!r} became {got!r}"
    if isinstance(expected, dict):
        for key in sorted(expected.keys() | got.keys()):
            if key not in got:
                return f"{path}/{key}: dropped by the model"
            if key not in expected:
                return f"{path}/{key}: added by the model"
            if expected[key] != got[key]:
                return _first_difference(expected[key], got[key], f"{path}/{key}")
    if isinstance(expected, list):
        if len(expected) != len(got):
            return f"{path}: {len(expected)} items became {len(got)}"
        for index, (a, b) in enumerate(zip(expected, got, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}/{index}")
    return f"{path}: {expected!r} became {got!r}"


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS_DIR.glob("*.json")))
def test_dashboard_matches_the_sdk_types(name):
    require_sdk()
    errors = _typed_errors(json.loads((DASHBOARDS_DIR / name).read_text(encoding="utf-8")))
    assert not errors, f"{name}:\n" + "\n".join(errors[:20])


def test_type_check_catches_what_grafana_would_reject():
    require_sdk()
    original = json.loads((DASHBOARDS_DIR / "service-user.json").read_text(encoding="utf-8"))
    stat = next(i for i, p in enumerate(original["panels"]) if p["type"] == "stat")
    series = next(i for i, p in enumerate(original["panels"]) if p["type"] == "timeseries")
    mutations = {
        "unknown top-level key": lambda d: d.update(refreshEvery="5s"),
        "bad enum": lambda d: d.update(graphTooltip=7),
        "bad stat option": lambda d: d["panels"][stat]["options"].update(colorMode="rainbow"),
        "unknown panel option": lambda d: d["panels"][stat]["options"].update(sparkle=True),
        "bad legend placement": lambda d: d["panels"][series]["options"]["legend"].update(placement="middle"),
        "string where a number goes": lambda d: d["panels"][series]["gridPos"].update(w="12"),
        "non-Prometheus target": lambda d: d["panels"][stat].update(datasource={"type": "loki", "uid": "x"}),
    }
    for what, mutate in mutations.items():
        data = json.loads(json.dumps(original))
        mutate(data)
        assert _typed_errors(data), f"the type check let through: {what}"


def test_dashboards_are_consistent():
    dashboards = load_dashboards()
    assert {"overview.json", "postgres.json", "host.json"} <= dashboards.keys()
    assert {f"service-{s}.json" for s in SERVICES} <= dashboards.keys()
    uids = [d["uid"] for d in dashboards.values()]
    assert len(set(uids)) == len(uids), uids
    for name, dashboard in dashboards.items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        ids = [p["id"] for p in panels(dashboard)]
        assert len(set(ids)) == len(ids), f"{name}: duplicate panel ids"
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            where = f"{name} / {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel.get("description"), f"{where}: say what the panel shows"
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, f"{where}: {pos}"
            refs = [t["refId"] for t in panel["targets"]]
            assert panel["targets"] and len(set(refs)) == len(refs) and all(refs), f"{where}: refIds {refs}"
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where


def _exprs(dashboard: dict) -> str:
    return "\n".join(t["expr"] for p in panels(dashboard) for t in p.get("targets", []))


def test_dashboards_cover_what_the_issue_asks():
    dashboards = load_dashboards()
    for service in SERVICES:
        exprs = _exprs(dashboards[f"service-{service}.json"])
        wanted = [
            "service:http_server_requests:rate1m",
            "http_server_requests_5xx",
            "p50_rate1m",
            "p95_rate1m",
            "p99_rate1m",
            "http_server_active_requests",
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "service_ready",
        ]
        if service != "gateway":
            wanted += ["db_pool_connections", "db_pool_waiting", "db_pool_wait_duration", "db_query_duration"]
        missing = [w for w in wanted if w not in exprs]
        assert not missing, f"service-{service}.json lacks {missing}"
        assert f'service="{service}"' in exprs and not any(
            f'service="{other}"' in exprs for other in SERVICES if other != service
        )
    overview = _exprs(dashboards["overview.json"])
    for wanted in (
        "slo:period_error_budget_remaining:ratio",
        "slo:sli_error:ratio_rate30d",
        'ALERTS{alertstate="firing"}',
        'service=~"gateway|user|order"',
    ):
        assert wanted in overview, wanted
    postgres = _exprs(dashboards["postgres.json"])
    for wanted in ("pg_up", "pg_stat_activity_count", "pg_stat_database_xact_commit", "pg_long_running_queries"):
        assert wanted in postgres, wanted
    host = _exprs(dashboards["host.json"])
    for wanted in ("node_cpu", "node_memory", "node_filesystem", "node_network"):
        assert wanted in host, wanted


def test_every_query_parses(tmp_path):
    """Offline, before the live test: each query (variables substituted) as a recording rule for promtool."""
    rules = []
    for name, dashboard in load_dashboards().items():
        variables = {v["name"]: "placeholder" for v in dashboard["templating"]["list"]}
        exprs = [a["expr"] for a in dashboard["annotations"]["list"] if a.get("expr")]
        exprs += [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
        rules += [
            {
                "record": f"dashboard_check:{name.removesuffix('.json').replace('-', '_')}:{i}",
                "expr": _substitute(expr, variables),
            }
            for i, expr in enumerate(exprs)
        ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, f"promtool check rules on the dashboards' queries:\n{result.stdout}{result.stderr}"


def test_recording_rules_used_by_panels_exist():
    recorded = {
        rule["record"]
        for path in RULES_DIR.glob("*.yml")
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    used_anywhere: set[str] = set()
    for name, dashboard in load_dashboards().items():
        used = set(re.findall(r"\b[a-z_]+:[a-z0-9_:]+\b", _exprs(dashboard)))
        assert used <= recorded, f"{name} reads recording rules nobody records: {sorted(used - recorded)}"
        used_anywhere |= used
    # The pipelines' alerts read raw metrics (no recording rule); the service dashboards read many.
    assert {"service:up:min", "service:http_server_requests:rate1m"} <= used_anywhere, sorted(used_anywhere)


# ---------------------------------------------------------------------------------------------------------------
# Provisioning
# ---------------------------------------------------------------------------------------------------------------


def provisioned_datasource() -> dict:
    config = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")
    assert config["apiVersion"] == 1
    (datasource,) = config["datasources"]
    return datasource


def test_datasource_provisioning():
    datasource = provisioned_datasource()
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "$PROMETHEUS_URL"
    # $__rate_interval is derived from timeInterval: it must be the scrape interval Prometheus really uses.
    prometheus = (PLATFORM / "prometheus" / "prometheus.yml.tmpl").read_text(encoding="utf-8")
    scrape = re.search(r"^\s+scrape_interval:\s*(\S+)", prometheus, re.M).group(1)
    assert datasource["jsonData"]["timeInterval"] == scrape


def test_dashboard_provisioning_points_at_the_generated_files():
    config = load_yaml(PROVISIONING / "dashboards" / "vigie.yml")
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    path = os.path.expandvars(provider["options"]["path"].replace("$VIGIE_DASHBOARDS_DIR", str(DASHBOARDS_DIR)))
    assert Path(path) == DASHBOARDS_DIR
    assert sorted(p.name for p in Path(path).glob("*.json")) == sorted(load_dashboards())


# ---------------------------------------------------------------------------------------------------------------
# Live: every query against the running platform
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class LiveStack:
    state: Path
    ports: dict[str, int]
    env: dict[str, str]

    def url(self, port_name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}{path}"

    def vigie_local(self, *args: str) -> subprocess.CompletedProcess:
        # `up` starts OpenSearch's JVM: slow on a busy 2-core machine (VIGIE_UP_TIMEOUT below)
        return subprocess.run(
            [str(VIGIE_LOCAL), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=420,
            stdin=subprocess.DEVNULL,
            check=False,
        )


@pytest.fixture(scope="module")
def live_stack():
    missing = [f"services/{s}/{s}" for s in SERVICES if not os.access(BUILD_DIR / "services" / s / s, os.X_OK)]
    if missing:
        pytest.fail(
            f"the live dashboard test needs the service binaries, missing in {BUILD_DIR}: {missing}. "
            "Build them: cmake --preset release && cmake --build --preset release -j2"
        )
    # Under /tmp: PostgreSQL runs as the postgres user and must traverse the path.
    state = Path(tempfile.mkdtemp(prefix="vigie-dashboards-", dir="/tmp"))
    state.chmod(0o755)
    ports = local_platform_ports(free_opensearch_port())
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VIGIE_") and k not in ("DATABASE_URL", "DATABASE_URL_FILE")
    }
    env.update({"VIGIE_STATE_DIR": str(state), "VIGIE_BUILD_DIR": str(BUILD_DIR)})
    # The whole platform, as `make up` runs it: the pipelines dashboard needs the log and trace pipelines.
    env.update({"VIGIE_LOGGING": "on", "VIGIE_TRACING": "on", "VIGIE_UP_TIMEOUT": "300"})
    env.update({name: str(port) for name, port in ports.items()})
    stack = LiveStack(state, ports, env)
    try:
        up = stack.vigie_local("up")
        if up.returncode != 0:
            pytest.fail(f"vigie-local up exited {up.returncode}\n--- stdout\n{up.stdout}\n--- stderr\n{up.stderr}")
        yield stack
    finally:
        stack.vigie_local("down", "--purge", "--yes")
        shutil.rmtree(state, ignore_errors=True)


class Traffic:
    """Users going through the gateway in a loop: sign-ups, logins, profile reads, orders and their status
    changes, the summary route, and the client errors real clients make (bad password, no token, bad input,
    unknown order)."""

    def __init__(self, routes: dict[str, str]) -> None:
        self.routes = routes  # path prefix -> base URL
        self.session = requests.Session()
        self.stop = threading.Event()
        self.counts: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _call(self, method: str, path: str, **kwargs) -> requests.Response | None:
        try:
            base = max((p for p in self.routes if path.startswith(p)), key=len)
            response = self.session.request(method, self.routes[base] + path, timeout=5, **kwargs)
        except requests.RequestException:
            self.counts["transport error"] = self.counts.get("transport error", 0) + 1
            return None
        key = f"{response.status_code // 100}xx"
        self.counts[key] = self.counts.get(key, 0) + 1
        return response

    def _run(self) -> None:
        while not self.stop.is_set():
            email = f"dash-{uuid.uuid4().hex[:12]}@example.com"
            password = "correct horse battery staple"
            created = self._call(
                "POST", "/api/v1/users", json={"email": email, "password": password, "name": "Dashboard Test"}
            )
            login = self._call("POST", "/api/v1/auth/login", json={"email": email, "password": password})
            self._call("POST", "/api/v1/auth/login", json={"email": email, "password": "wrong password!"})
            self._call("POST", "/api/v1/users", json={"email": "not an address"})
            self._call("GET", "/api/v1/orders")
            if not (
                created is not None and created.status_code == 201 and login is not None and login.status_code == 200
            ):
                self.stop.wait(0.2)
                continue
            user_id = created.json()["id"]
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            self._call("GET", f"/api/v1/users/{user_id}", headers=auth)
            for _ in range(2):
                order = self._call(
                    "POST",
                    "/api/v1/orders",
                    headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                    json={"items": [{"sku": "TEA-1", "quantity": 2, "unit_price_cents": 350}]},
                )
                if order is not None and order.status_code == 201:
                    order_id = order.json()["id"]
                    self._call("GET", f"/api/v1/orders/{order_id}", headers=auth)
                    self._call("POST", f"/api/v1/orders/{order_id}/status", headers=auth, json={"status": "paid"})
                    self._call(
                        "POST", f"/api/v1/orders/{order_id}/status", headers=auth, json={"status": "pending"}
                    )  # 409: not a move of the state machine
            self._call("GET", "/api/v1/orders", headers=auth)
            self._call("GET", f"/api/v1/orders/{uuid.uuid4()}", headers=auth)
            self._call("GET", f"/api/v1/users/{user_id}/summary", headers=auth)
            self.stop.wait(0.1)


@dataclass
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str


def _substitute(expr: str, variables: dict[str, str]) -> str:
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    for name, value in variables.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    return expr


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def query(self, expr: str) -> list[dict]:
        """The result vector (or the one scalar as a series); an invalid expression fails the test at once."""
        response = requests.post(self.url + "/api/v1/query", data={"query": expr}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            pytest.fail(f"Prometheus rejected {expr!r}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        if data["resultType"] != "vector":
            pytest.fail(f"{expr!r} returned a {data['resultType']}, not an instant vector")
        return data["result"]

    def label_values(self, selector: str, label: str) -> list[str]:
        response = requests.get(self.url + "/api/v1/series", params={"match[]": selector}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", body
        return sorted({series[label] for series in body["data"] if label in series})


def _resolve_variables(prometheus: Prometheus, dashboard: dict) -> dict[str, str]:
    """The value Grafana would put in each query variable: "All" (its allValue) where that is the default, else the
    first value its label_values query finds; the query must find some either way. Empty when one finds none."""
    values = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "datasource":
            continue
        assert variable["type"] == "query", f"{dashboard['title']}: no test for variable type {variable['type']}"
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
        assert match, f"{dashboard['title']}: variable {variable['name']}: unexpected query {variable['query']!r}"
        found = prometheus.label_values(match.group(1), match.group(2))
        if not found:
            return {}
        all_selected = variable.get("includeAll") and variable.get("current", {}).get("value") == "$__all"
        values[variable["name"]] = variable["allValue"] if all_selected else found[0]
    return values


def _has_data(result: list[dict]) -> bool:
    return any(not math.isnan(float(series["value"][1])) for series in result)


def test_every_panel_query_returns_data(live_stack: LiveStack):
    datasource = provisioned_datasource()
    # The provisioned data source, with the URL the launcher would give Grafana.
    prometheus = Prometheus(datasource["url"].replace("$PROMETHEUS_URL", live_stack.url("VIGIE_PROMETHEUS_PORT")))
    for service in SERVICES:
        faults = requests.post(
            live_stack.url(f"VIGIE_{service.upper()}_ADMIN_PORT", "/admin/faults"),
            json={"error_ratio": 0.05},
            timeout=10,
        )
        assert faults.status_code == 200, f"{service}: POST /admin/faults answered {faults.status_code} {faults.text}"

    dashboards = load_dashboards()
    pending: dict[str, str] = {}
    with Traffic({"/api/v1/": live_stack.url("VIGIE_GATEWAY_PORT")}) as traffic:
        deadline = time.monotonic() + LIVE_DEADLINE
        while True:
            pending = {}
            for name, dashboard in dashboards.items():
                variables = _resolve_variables(prometheus, dashboard)
                names = [v["name"] for v in dashboard["templating"]["list"] if v["type"] != "datasource"]
                if len(variables) < len(names):
                    pending[f"{name}: variables {names}"] = "a variable query found no value"
                    continue
                queries = [
                    Query(name, "annotation " + a["name"], "-", a["expr"])
                    for a in dashboard["annotations"]["list"]
                    if a.get("expr")
                ]
                queries += [
                    Query(name, p["title"], t["refId"], t["expr"])
                    for p in panels(dashboard)
                    for t in p.get("targets", [])
                ]
                for q in queries:
                    expr = _substitute(q.expr, variables)
                    assert "$" not in expr, f"{q.dashboard} / {q.panel} {q.ref}: unsubstituted variable in {expr!r}"
                    result = prometheus.query(expr)
                    if not _has_data(result):
                        pending[f"{q.dashboard} / {q.panel} / {q.ref}: {expr}"] = "NaN only" if result else "empty"
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(3)
    assert traffic.counts.get("2xx", 0) > 0, f"no request succeeded through the gateway: {traffic.counts}"
    assert not pending, (
        f"{len(pending)} panel queries without data after {LIVE_DEADLINE} s of traffic "
        f"({traffic.counts}):\n" + "\n".join(f"  [{why}] {what}" for what, why in pending.items())
    )
