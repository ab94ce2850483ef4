"""The production log and trace configuration (Elasticsearch, Logstash, Kibana, Filebeat, Jaeger, compose, k8s),
checked offline: Logstash, Kibana, Elasticsearch, Filebeat and Kubernetes cannot run here (../shared/TOOLS.md), so
each file is checked by the strongest means available: parsed, cross-referenced, the setup script run against a
recording fake of the Elasticsearch/Kibana APIs, docker-compose and kubernetes-validate (schemas of Kubernetes 1.33)
where installed, the real Jaeger binary when it has been built, and the shared mapping in a real OpenSearch when the
`opensearch` fixture of tests/logging/conftest.py is there. Each test states what it needs and skips otherwise.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LOGGING = ROOT / "platform/logging"
ES = LOGGING / "elasticsearch"
SETUP = ES / "setup.py"
SHARED_TEMPLATE = LOGGING / "opensearch/vigie-logs-template.json"
NDJSON = LOGGING / "kibana/saved-objects.ndjson"
LOGSTASH = LOGGING / "logstash"
TRACING = ROOT / "platform/tracing"
K8S = ROOT / "deploy/k8s/base"
COMPOSE = ROOT / "deploy/compose/docker-compose.yml"
VENV_BIN = Path(sys.executable).parent
K8S_VERSION = "1.33.0"
SERVICES = ("gateway", "user", "order")

YAML_FILES = [
    TRACING / "jaeger-local.yaml",
    TRACING / "jaeger-production.yaml",
    TRACING / "kustomization.yaml",
    LOGGING / "filebeat/filebeat.yml",
    LOGGING / "filebeat/kustomization.yaml",
    LOGSTASH / "logstash.yml",
    LOGSTASH / "pipelines.yml",
    COMPOSE,
    *sorted((K8S / "logging").glob("*.yaml")),
    *sorted((K8S / "tracing").glob("*.yaml")),
]
JSON_FILES = [ES / "vigie-logs-policy.json", ES / "vigie-logs-ilm.component.json"]


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def saved_objects() -> list[dict]:
    lines = NDJSON.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# ------------------------------------------------------------------------------------------------ every file parses
@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path):
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    assert documents, f"{path}: no YAML document"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_json_parses(path):
    assert isinstance(load_json(path), dict)


def test_yamllint():
    yamllint = VENV_BIN / "yamllint"
    if not yamllint.exists():
        pytest.skip("yamllint not installed in the venv (PyPI yamllint)")
    config = (
        "{extends: default, rules: {line-length: {max: 120}, document-start: disable, "
        "truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}, braces: {max-spaces-inside: 1}}}"
    )
    # The compose file is shared with other components (and has older long lines): linted by its own tests.
    result = run(str(yamllint), "-s", "-d", config, *(str(p) for p in YAML_FILES if p != COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------ Kibana objects
def test_ndjson_is_one_importable_object_per_line():
    text = NDJSON.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\n\n" not in text
    for number, line in enumerate(text.splitlines(), start=1):
        obj = json.loads(line)
        required = {"type", "id", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion"}
        missing = required - obj.keys()
        assert not missing, f"line {number}: missing {missing}"
        assert obj["coreMigrationVersion"].startswith("8."), f"line {number}: {obj['coreMigrationVersion']}"
        # Kibana refuses objects newer than itself: nothing above the 8.x formats of compose's Kibana 8.15.
        major = int(obj["typeMigrationVersion"].split(".")[0])
        assert major in (7, 8), f"line {number}: typeMigrationVersion {obj['typeMigrationVersion']}"


def test_ndjson_references_resolve_and_ids_are_unique():
    objects = saved_objects()
    ids = [(o["type"], o["id"]) for o in objects]
    assert len(ids) == len(set(ids)), "duplicate saved object"
    known = set(ids)
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in known, f"{obj['id']}: reference {ref} not in the file"
        names = [ref["name"] for ref in obj["references"]]
        assert len(names) == len(set(names)), f"{obj['id']}: duplicate reference names"


def test_data_view_and_searches():
    objects = {o["id"]: o for o in saved_objects()}
    view = objects["vigie-logs"]
    assert view["type"] == "index-pattern"
    assert view["attributes"]["title"] == "vigie-logs-*" and view["attributes"]["timeFieldName"] == "@timestamp"
    searches = {o["id"]: o for o in objects.values() if o["type"] == "search"}
    expected = {f"vigie-logs-{s}": f'service.name : "{s}"' for s in SERVICES}
    expected["vigie-logs-errors"] = 'log.level : "error"'
    expected["vigie-logs-by-trace"] = "trace.id : *"
    assert set(expected) <= searches.keys()
    for object_id, query in expected.items():
        source = json.loads(searches[object_id]["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert source["query"] == {"query": query, "language": "kuery"}, object_id
        refs = {r["name"]: r for r in searches[object_id]["references"]}
        assert refs[source["indexRefName"]]["id"] == "vigie-logs", object_id


def test_dashboard_panels_reference_the_charts_and_searches():
    objects = {o["id"]: o for o in saved_objects()}
    board = objects["vigie-logs-dashboard"]
    panels = json.loads(board["attributes"]["panelsJSON"])
    refs = {r["name"]: r for r in board["references"]}
    targets = set()
    for panel in panels:
        ref = refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        assert ref["type"] == panel["type"]
        targets.add(ref["id"])
        grid = panel["gridData"]
        assert grid["x"] + grid["w"] <= 48, f"panel {panel['panelIndex']} wider than the grid"
    assert {f"vigie-logs-{s}" for s in SERVICES} | {"vigie-logs-errors"} <= targets
    lenses = [o for o in objects.values() if o["type"] == "lens"]
    assert {o["id"] for o in lenses} <= targets and len(lenses) == 2
    for lens in lenses:
        layer = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]
        assert set(layer["columnOrder"]) == set(layer["columns"])


def test_ndjson_is_generated_from_its_script():
    result = run(sys.executable, str(LOGGING / "kibana/saved_objects.py"), "--check")
    assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------------ Elasticsearch
def test_ilm_policy_deletes_after_30_days_without_rollover():
    phases = load_json(ES / "vigie-logs-policy.json")["policy"]["phases"]
    assert phases["delete"]["min_age"] == "30d" and "delete" in phases["delete"]["actions"]
    for name, phase in phases.items():
        assert "rollover" not in phase.get("actions", {}), f"{name}: daily indices need no rollover"


def test_component_template_adds_only_settings():
    component = load_json(ES / "vigie-logs-ilm.component.json")
    assert set(component["template"]) == {"settings"}, "the mapping lives in the shared template only"
    assert component["template"]["settings"]["index.lifecycle.name"] == "vigie-logs-policy"
    for path in ES.iterdir():
        if path.is_file():
            assert '"properties"' not in path.read_text(encoding="utf-8"), f"{path.name} carries a mapping"


def render_index_template() -> dict:
    if not SHARED_TEMPLATE.exists():
        pytest.skip(f"{SHARED_TEMPLATE.relative_to(ROOT)} not written yet")
    result = run(sys.executable, str(SETUP), "--render-index-template")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_index_template_overlay_composes_with_the_shared_mapping():
    shared = load_json(SHARED_TEMPLATE) if SHARED_TEMPLATE.exists() else pytest.skip("no shared template yet")
    composed = render_index_template()
    assert composed["composed_of"][-1] == "vigie-logs-ilm"
    assert composed["template"] == shared["template"], "the shared template must be used unchanged"
    assert composed["index_patterns"] == shared["index_patterns"]
    # What the index gets, composed as Elasticsearch does: components first, the template's own settings last.
    component = load_json(ES / "vigie-logs-ilm.component.json")["template"]
    overlap = set(component["settings"]) & set(flatten(shared["template"].get("settings", {})))
    assert not overlap, f"the component would be overridden by the shared template for {overlap}"


def flatten(settings: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in settings.items():
        name = key if key.startswith("index.") or prefix else f"index.{key}" if key != "index" else "index"
        name = f"{prefix}.{key}" if prefix else name
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--elasticsearch", "ftp://es:9200"],
        ["--kibana", "kibana:5601"],
        ["--elasticsearch", "http://elastic:secret@es:9200"],
        ["--wait", "0"],
    ],
)
def test_setup_refuses_bad_arguments(args):
    result = run(sys.executable, str(SETUP), *args)
    assert result.returncode == 2, f"{args}: exit {result.returncode}\n{result.stderr}"


class FakeElastic:
    """Records every request; answers like Elasticsearch and Kibana 8 (or refuses one path with 400)."""

    def __init__(self, refuse: str | None = None) -> None:
        self.requests: list[tuple[str, str, dict, bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append((method, self.path, dict(self.headers), body))
                if refuse and self.path.startswith(refuse):
                    reply, status = {"error": "refused by the test"}, 400
                elif self.path.startswith("/_cluster/health"):
                    reply, status = {"status": "yellow"}, 200
                elif self.path == "/api/status":
                    reply, status = {"status": {"overall": {"level": "available"}}}, 200
                elif self.path.startswith("/api/saved_objects/_import"):
                    reply, status = {"success": True, "successCount": body.count(b'"coreMigrationVersion"')}, 200
                else:
                    reply, status = {"acknowledged": True}, 200
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self.answer("GET")

            def do_PUT(self):
                self.answer("PUT")

            def do_POST(self):
                self.answer("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_elastic():
    fakes: list[FakeElastic] = []

    def make(refuse: str | None = None) -> FakeElastic:
        fakes.append(FakeElastic(refuse))
        return fakes[-1]

    yield make
    for fake in fakes:
        fake.close()


def setup_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_PASSWORD")}
    env.update(extra)
    return env


def test_setup_installs_everything_and_is_idempotent(fake_elastic):
    if not SHARED_TEMPLATE.exists():
        pytest.skip("no shared template yet")
    fake = fake_elastic()
    env = setup_env(
        ELASTIC_PASSWORD="pw-elastic", KIBANA_SYSTEM_PASSWORD="pw-kibana", LOGSTASH_WRITER_PASSWORD="pw-logstash"
    )
    args = [sys.executable, str(SETUP), "--elasticsearch", fake.url, "--kibana", fake.url, "--wait", "10"]
    first = run(*args, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    calls = [(m, p) for m, p, _, _ in fake.requests]
    for expected in [
        ("PUT", "/_ilm/policy/vigie-logs-policy"),
        ("PUT", "/_component_template/vigie-logs-ilm"),
        ("PUT", "/_index_template/vigie-logs"),
        ("POST", "/_security/user/kibana_system/_password"),
        ("PUT", "/_security/user/vigie_logstash"),
        ("POST", "/api/saved_objects/_import?overwrite=true"),
    ]:
        assert expected in calls, f"{expected} not sent; sent {calls}"
    order = [p for _, p in calls]
    assert order.index("/_component_template/vigie-logs-ilm") < order.index("/_index_template/vigie-logs")
    sent = {p: (h, b) for m, p, h, b in fake.requests}
    assert json.loads(sent["/_ilm/policy/vigie-logs-policy"][1]) == load_json(ES / "vigie-logs-policy.json")
    template = json.loads(sent["/_index_template/vigie-logs"][1])
    assert template["template"] == load_json(SHARED_TEMPLATE)["template"]
    headers, body = sent["/api/saved_objects/_import?overwrite=true"]
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers.get("kbn-xsrf") and headers["content-type"].startswith("multipart/form-data")
    assert NDJSON.read_bytes() in body
    assert all(
        dict((k.lower(), v) for k, v in h.items()).get("authorization", "").startswith("Basic ")
        for _, _, h, _ in fake.requests
    )
    assert "pw-" not in first.stdout + first.stderr, "a password was printed"
    # Second run: the same requests again, nothing else (every step is a PUT or an overwrite).
    count = len(fake.requests)
    second = run(*args, env=env)
    assert second.returncode == 0, second.stderr
    assert [(m, p) for m, p, _, _ in fake.requests[count:]] == calls


def test_setup_fails_when_elasticsearch_refuses(fake_elastic):
    if not SHARED_TEMPLATE.exists():
        pytest.skip("no shared template yet")
    fake = fake_elastic(refuse="/_index_template/")
    result = run(sys.executable, str(SETUP), "--elasticsearch", fake.url, "--wait", "5", env=setup_env())
    assert result.returncode == 1 and "HTTP 400" in result.stderr, result.stderr
    assert not any(p.startswith("/_security") for _, p, _, _ in fake.requests), "no password: no security calls"


# ------------------------------------------------------------------------------------------------ Logstash
def strip_logstash(text: str) -> str:
    """The config without comments and quoted strings (where braces do not count)."""
    out, i, quote = [], 0, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    assert quote is None, "unterminated string"
    return "".join(out)


@pytest.mark.parametrize("name", ["vigie.conf", "dlq.conf"])
def test_logstash_pipeline_is_balanced_and_writes_daily_indices(name):
    # No Logstash here (TOOLS.md): `bin/logstash --config.test_and_exit` cannot run; structure is checked instead.
    text = (LOGSTASH / "pipeline" / name).read_text(encoding="utf-8")
    bare = strip_logstash(text)
    depth = 0
    for c in bare:
        depth += {"{": 1, "}": -1}.get(c, 0)
        assert depth >= 0, "closing brace without an opening one"
    assert depth == 0, f"{depth} unclosed braces"
    assert bare.count("[") == bare.count("]")
    sections = re.findall(r"^(input|filter|output)\s*\{", bare, re.M)
    assert sections[0] == "input" and sections[-1] == "output"
    assert re.search(r'index\s*=>\s*"vigie-logs-[a-z-]*%\{\+YYYY\.MM\.dd\}"', text)
    assert re.search(r"ilm_enabled\s*=>\s*false", text), "with ILM on, the plugin ignores `index`"
    assert re.search(r'password\s*=>\s*"\$\{LOGSTASH_WRITER_PASSWORD\}"', text), "password only from env/keystore"


def test_logstash_parses_json_into_ecs_objects_and_tags_failures():
    text = (LOGSTASH / "pipeline/vigie.conf").read_text(encoding="utf-8")
    assert re.search(r'json\s*\{[^}]*source\s*=>\s*"message"', text)
    assert "_jsonparsefailure" in text and "skip_on_invalid_json" not in text, "failures are tagged, not skipped"
    assert re.search(r'date\s*\{[^}]*match\s*=>\s*\["\[@metadata\]\[timestamp\]",\s*"ISO8601"\]', text)
    assert 'key.split(".")' in text, "dotted keys become nested objects"
    assert "drop" not in strip_logstash(text), "nothing is dropped"


def test_logstash_settings_queue_and_dead_letters():
    settings = yaml.safe_load((LOGSTASH / "logstash.yml").read_text())
    assert settings["queue.type"] == "persisted" and settings["dead_letter_queue.enable"] is True
    pipelines = yaml.safe_load((LOGSTASH / "pipelines.yml").read_text())
    assert [p["pipeline.id"] for p in pipelines] == ["vigie", "vigie-dlq"]
    for pipeline in pipelines:
        assert (LOGSTASH / "pipeline" / Path(pipeline["path.config"]).name).exists()
    dlq = (LOGSTASH / "pipeline/dlq.conf").read_text()
    assert 'pipeline_id => "vigie"' in dlq


# ------------------------------------------------------------------------------------------------ Jaeger
def jaeger_config(name: str) -> dict:
    return yaml.safe_load((TRACING / name).read_text())


@pytest.mark.parametrize("name", ["jaeger-local.yaml", "jaeger-production.yaml"])
def test_jaeger_pipeline_references_defined_components(name):
    config = jaeger_config(name)
    service = config["service"]
    assert set(service["extensions"]) <= config["extensions"].keys()
    for pipeline in service["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= config.get(kind, {}).keys(), f"{kind} of {pipeline}"
    backends = config["extensions"]["jaeger_storage"]["backends"]
    assert config["extensions"]["jaeger_query"]["storage"]["traces"] in backends
    assert config["exporters"]["jaeger_storage_exporter"]["trace_storage"] in backends
    prometheus = service["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert {"host", "port"} <= prometheus.keys()


def test_jaeger_local_listens_on_loopback_with_badger():
    text = (TRACING / "jaeger-local.yaml").read_text()
    config = jaeger_config("jaeger-local.yaml")
    otlp = config["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"].endswith("${env:VIGIE_OTLP_GRPC_PORT:-4317}")
    assert otlp["http"]["endpoint"].endswith("${env:VIGIE_OTLP_HTTP_PORT:-4318}")
    hosts = re.findall(r"\$\{env:VIGIE_JAEGER_LISTEN_HOST:-([^}]*)\}", text)
    assert hosts and set(hosts) == {"127.0.0.1"}, "every listener defaults to loopback"
    assert "0.0.0.0" not in json.dumps(config), "nothing listens on every interface by default"
    badger = config["extensions"]["jaeger_storage"]["backends"]["local_badger"]["badger"]
    assert badger["ttl"]["spans"] == "72h" and badger["ephemeral"] is False
    assert badger["directories"]["keys"].startswith("${env:VIGIE_JAEGER_DATA")
    metrics = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert metrics["port"] == "${env:VIGIE_JAEGER_METRICS_PORT:-8888}"


def test_jaeger_production_uses_daily_elasticsearch_indices():
    es = jaeger_config("jaeger-production.yaml")["extensions"]["jaeger_storage"]["backends"]["es_main"]
    es = es["elasticsearch"]
    assert es["indices"]["index_prefix"] == "vigie"
    for kind in ("spans", "services", "dependencies", "sampling"):
        assert es["indices"][kind]["rollover_frequency"] == "day"
    assert "password" not in es["auth"]["basic"], "the password comes from a file"
    cronjob = yaml.safe_load((K8S / "tracing/es-index-cleaner-cronjob.yaml").read_text())
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "7"
    assert {"name": "INDEX_PREFIX", "value": "vigie"} in container["env"]


def jaeger_binary() -> str:
    """The Jaeger that tools/install-deps.sh builds (make deps); its absence is a failure, not a skip."""
    found = subprocess.run([str(ROOT / "tools" / "jaeger.sh"), "path"], capture_output=True, text=True, timeout=30)
    if found.returncode != 0:
        pytest.fail(f"Jaeger v2 is not built: {found.stderr.strip()} (run tools/install-deps.sh)")
    return found.stdout.strip()


@pytest.mark.parametrize("name", ["jaeger-local.yaml", "jaeger-production.yaml"])
def test_jaeger_validates_its_config(name, tmp_path):
    binary = jaeger_binary()
    password = tmp_path / "password"
    password.write_text("not-a-secret")
    env = {**os.environ, "VIGIE_JAEGER_DATA": str(tmp_path / "badger"), "ES_PASSWORD_FILE": str(password)}
    result = run(binary, "validate", f"--config=file:{TRACING / name}", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jaeger_local_runs_and_answers(tmp_path):
    binary = jaeger_binary()
    import requests

    ports = {
        name: str(free_port())
        for name in (
            "VIGIE_OTLP_GRPC_PORT",
            "VIGIE_OTLP_HTTP_PORT",
            "VIGIE_JAEGER_QUERY_PORT",
            "VIGIE_JAEGER_QUERY_GRPC_PORT",
            "VIGIE_JAEGER_HEALTH_PORT",
            "VIGIE_JAEGER_METRICS_PORT",
        )
    }
    env = {**os.environ, **ports, "VIGIE_JAEGER_DATA": str(tmp_path / "badger")}
    proc = subprocess.Popen(
        [binary, f"--config=file:{TRACING / 'jaeger-local.yaml'}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "jaeger.log", "w"),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status = requests.get(f"http://127.0.0.1:{ports['VIGIE_JAEGER_HEALTH_PORT']}/status", timeout=1)
                if status.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, (tmp_path / "jaeger.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Jaeger not healthy within 30 s"
            time.sleep(0.5)
        services = requests.get(f"http://127.0.0.1:{ports['VIGIE_JAEGER_QUERY_PORT']}/api/services", timeout=5)
        assert services.status_code == 200 and "data" in services.json()
        metrics = requests.get(f"http://127.0.0.1:{ports['VIGIE_JAEGER_METRICS_PORT']}/metrics", timeout=5)
        assert metrics.status_code == 200 and "otelcol_" in metrics.text
        assert (tmp_path / "badger/keys").is_dir()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# ------------------------------------------------------------------------------------------------ Kubernetes
def kustomize(directory: Path) -> str:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (kustomize) not installed")
    result = run("kubectl", "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    return result.stdout


def kubernetes_validate(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    validator = VENV_BIN / "kubernetes-validate"
    if not validator.exists():
        pytest.skip("kubernetes-validate not installed in the venv (PyPI kubernetes-validate)")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    return run(str(validator), "--strict", "-k", K8S_VERSION, "--quiet", str(manifest))


@pytest.mark.parametrize("base", ["logging", "tracing"])
def test_k8s_base_builds_and_validates(base, tmp_path):
    text = kustomize(K8S / base)
    result = kubernetes_validate(text, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    docs = [d for d in yaml.safe_load_all(text) if d]
    configmaps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert len(configmaps) == 1
    source = {"logging": LOGGING / "filebeat/filebeat.yml", "tracing": TRACING / "jaeger-production.yaml"}[base]
    assert configmaps[0]["data"][source.name] == source.read_text(), "the ConfigMap is the platform/ file"
    for doc in docs:
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template", {}
        ).get("spec")
        for container in (pod or {}).get("containers", []):
            assert ":" in container["image"] and not container["image"].endswith(":latest")
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["limits"]["memory"]


def test_kubernetes_validate_catches_a_broken_manifest(tmp_path):
    docs = [d for d in yaml.safe_load_all(kustomize(K8S / "tracing")) if d]
    broken = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    result = kubernetes_validate(yaml.safe_dump(broken), tmp_path)
    assert result.returncode != 0, "a misspelt field must fail strict validation"


def test_filebeat_ships_only_vigie_containers_to_logstash():
    config = yaml.safe_load((LOGGING / "filebeat/filebeat.yml").read_text())
    assert config["output.logstash"]["hosts"] == ["${LOGSTASH_HOSTS:logstash:5044}"]
    drop = next(p["drop_event"] for p in config["processors"] if "drop_event" in p)
    labels = [next(iter(c["equals"])) for c in drop["when"]["not"]["or"]]
    assert labels == ["container.labels.app_kubernetes_io/part-of", "kubernetes.labels.app_kubernetes_io/part-of"]


# ------------------------------------------------------------------------------------------------ compose
COMPOSE_SECRETS = [
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


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed (apt docker-compose)")
    env = {**os.environ, **{name: "not-a-secret" for name in COMPOSE_SECRETS}}
    return run("docker-compose", "-f", str(COMPOSE), *args, env=env)


@pytest.mark.parametrize("profile", ["core", "monitoring", "logging", "tracing", "secrets", "all"])
def test_compose_profile_is_valid(profile):
    result = compose("--profile", profile, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_logging_and_tracing_come_from_platform():
    config = yaml.safe_load(compose("--profile", "all", "config").stdout)
    services = config["services"]
    logging = {name for name, s in services.items() if "logging" in s["profiles"] and "core" not in s["profiles"]}
    assert logging == {"elasticsearch", "elasticsearch-setup", "logstash", "filebeat", "kibana"}
    mounts = {
        name: [v["source"] if isinstance(v, dict) else v.split(":")[0] for v in s.get("volumes", [])]
        for name, s in services.items()
    }
    assert str(LOGGING / "logstash/pipeline") in mounts["logstash"]
    assert str(ROOT / "platform") in mounts["filebeat"] and str(ROOT / "platform") in mounts["jaeger"]
    assert "platform/tracing/jaeger-local.yaml" in " ".join(services["jaeger"]["command"])
    assert services["jaeger"]["image"] == "jaegertracing/jaeger:2.13.0"
    assert services["logstash"]["depends_on"]["elasticsearch-setup"]["condition"] == "service_completed_successfully"
    for name in ("elasticsearch", "elasticsearch-setup", "logstash", "kibana"):
        for key, value in services[name].get("environment", {}).items():
            if "PASSWORD" in key:
                assert value == "not-a-secret", f"{name}.{key} must come from .env"
    assert services["gateway"]["labels"]["app.kubernetes.io/part-of"] == "vigie"
    assert not (ROOT / "deploy/compose/logstash").exists(), "the placeholder pipeline is gone"


# ------------------------------------------------------------------------------------------------ real OpenSearch
LOGSTASH_DOCUMENT = {
    # What pipeline vigie makes of a gateway access-log line shipped by Filebeat from a compose container.
    "@timestamp": "2025-03-04T10:11:12.345Z",
    "log": {"level": "info", "file": {"path": "/var/lib/docker/containers/abc/abc-json.log"}},
    "service": {"name": "gateway", "environment": "compose"},
    "message": "request",
    "trace": {"id": "4bf92f3577b34da6a3ce929d0e0e4736"},
    "span": {"id": "00f067aa0ba902b7"},
    "http": {"request": {"method": "GET"}, "response": {"status_code": 200}},
    "url": {"path": "/api/v1/users/42"},
    "event": {"duration": 1500000, "dataset": "vigie.gateway"},
    "host": {"name": "node-1"},
    "container": {"id": "abc", "name": "vigie-gateway-1", "labels": {"app_kubernetes_io/part-of": "vigie"}},
    "agent": {"type": "filebeat", "version": "8.15.3", "name": "node-1"},
    "ecs": {"version": "8.0.0"},
    "tags": ["beats_input_codec_plain_applied"],
}
EXPECTED_TYPES = {
    "@timestamp": "date",
    "log.level": "keyword",
    "service.name": "keyword",
    "message": "text",
    "trace.id": "keyword",
    "http.response.status_code": "long",
    "event.duration": "long",
    "url.path": "keyword",
    "service.environment": "keyword",
    "event.dataset": "keyword",
}


def test_shared_template_indexes_a_logstash_document(logs_template):
    # logs_template (tests/logging/conftest.py): a real OpenSearch 2.19 with the shared template installed.
    import requests

    base = logs_template.url
    session = requests.Session()
    index = "vigie-logs-2025.03.04"
    created = session.post(f"{base}/{index}/_doc?refresh=true", json=LOGSTASH_DOCUMENT, timeout=30)
    assert created.status_code == 201, created.text
    mapping = session.get(f"{base}/{index}/_mapping/field/{','.join(EXPECTED_TYPES)}", timeout=30).json()[index]
    types = {field: next(iter(m["mapping"].values()))["type"] for field, m in mapping["mappings"].items()}
    assert types == EXPECTED_TYPES
    hit = session.get(
        f"{base}/{index}/_search", params={"q": 'trace.id:"4bf92f3577b34da6a3ce929d0e0e4736"'}, timeout=30
    ).json()
    assert hit["hits"]["total"]["value"] == 1
    session.delete(f"{base}/{index}", timeout=30)
