"""Prometheus side: the rendered configuration, the rules, their promtool unit tests, the exporter configs."""

from __future__ import annotations

import concurrent.futures
import glob
import importlib.util
import re

import pytest
from conftest import (
    PLATFORM,
    RENDER,
    RULE_TESTS_DIR,
    RULES_DIR,
    SYSTEM_PYTHON,
    assert_ok,
    clean_env,
    load_yaml,
    render,
    run,
    tool,
)

SERVICES = {"gateway": ("8080", "9080"), "user": ("8081", "9081"), "order": ("8082", "9082")}


def load_render_module():
    spec = importlib.util.spec_from_file_location("vigie_render", RENDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rendered_prometheus_config_is_valid(rendered):
    result = run([tool("promtool"), "check", "config", str(rendered / "prometheus.yml")])
    assert_ok(result)
    # check config also loads every rule file the glob matches: make sure it found them all.
    expected = len(list(RULES_DIR.glob("*.yml")))
    assert f"SUCCESS: {expected} rule files found" in result.stdout, result.stdout


def test_rules_are_valid():
    files = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    assert files
    assert_ok(run([tool("promtool"), "check", "rules", *files]))


def test_rule_unit_tests_pass():
    files = sorted(str(p) for p in RULE_TESTS_DIR.glob("*.yml"))
    assert files, f"no promtool test files in {RULE_TESTS_DIR}"
    promtool = tool("promtool")
    # One promtool per file, side by side: the files are independent and the SLO one dominates.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(files)) as pool:
        results = list(pool.map(lambda f: run([promtool, "test", "rules", f], timeout=120), files))
    for result in results:
        assert_ok(result)
        assert "FAILED" not in result.stdout + result.stderr


def test_every_rule_file_has_a_unit_test_file():
    tested = set()
    for test_file in RULE_TESTS_DIR.glob("*.yml"):
        for rule_file in load_yaml(test_file)["rule_files"]:
            tested.add((RULE_TESTS_DIR / rule_file).resolve())
    untested = [p.name for p in RULES_DIR.glob("*.yml") if p.resolve() not in tested]
    assert not untested, f"rule files without promtool tests: {untested}"


def test_rule_unit_tests_run_at_production_evaluation_speed():
    # `for:` semantics depend on the evaluation interval; the tests must use the one prometheus.yml.tmpl uses
    # (the SLO tests excepted: their windows are minutes to days).
    for test_file in RULE_TESTS_DIR.glob("*.yml"):
        if test_file.name.startswith("slo"):
            continue
        assert load_yaml(test_file).get("evaluation_interval") == "5s", test_file.name


def test_scrape_configuration(rendered):
    config = load_yaml(rendered / "prometheus.yml")
    assert config["global"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {
        "gateway",
        "user",
        "order",
        "node",
        "postgres",
        "blackbox",
        "jaeger",
        "prometheus",
        "alertmanager",
    }
    # Jaeger is discovered from a file vigie-local writes only when tracing runs, next to prometheus.yml.
    assert jobs["jaeger"]["file_sd_configs"] == [{"files": ["targets/jaeger.json"], "refresh_interval": "30s"}]
    for service, (_public, admin) in SERVICES.items():
        [target] = jobs[service]["static_configs"]
        assert target["targets"] == [f"127.0.0.1:{admin}"]
        assert target["labels"] == {"service": service}
        assert jobs[service]["honor_labels"] is True
    probes = {
        (c["labels"]["service"], c["labels"]["probe"]): (c["targets"], c["labels"]["__param_module"])
        for c in jobs["blackbox"]["static_configs"]
    }
    for service, (public, admin) in SERVICES.items():
        assert probes[(service, "ready")] == ([f"http://127.0.0.1:{admin}/readyz"], "http_2xx")
        assert probes[(service, "public")] == ([f"127.0.0.1:{public}"], "tcp_connect")
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    [rule_glob] = config["rule_files"]
    assert sorted(glob.glob(rule_glob)) == sorted(str(p) for p in RULES_DIR.glob("*.yml"))


def test_render_applies_environment_overrides(tmp_path):
    out = render(tmp_path, VIGIE_USER_ADMIN_PORT="19081", VIGIE_SLACK_SINK_PORT="19095", VIGIE_SMTP_SINK_PORT="12525")
    prometheus = (out / "prometheus.yml").read_text()
    alertmanager = (out / "alertmanager.yml").read_text()
    assert "${" not in prometheus and "${" not in alertmanager
    assert "127.0.0.1:19081" in prometheus and "http://127.0.0.1:19081/readyz" in prometheus
    assert "127.0.0.1:9081" not in prometheus
    assert "http://127.0.0.1:19095/slack" in alertmanager
    assert "127.0.0.1:12525" in alertmanager


def test_render_refuses_a_bad_port_and_an_unknown_placeholder(tmp_path):
    result = run([tool(SYSTEM_PYTHON), str(RENDER), "--out-dir", str(tmp_path)], env=clean_env(VIGIE_USER_PORT="80x"))
    assert result.returncode == 1
    assert "VIGIE_USER_PORT='80x' is not a TCP port" in result.stderr
    assert not (tmp_path / "prometheus.yml").exists()

    module = load_render_module()
    with pytest.raises(module.RenderError, match="VIGIE_TYPO_PORT"):
        module.render_text("x: ${VIGIE_TYPO_PORT}", module.effective_values({}))
    # Prometheus' own $1 / ${1} style references in relabelling are not placeholders and stay untouched.
    assert module.render_text("replacement: $1", module.effective_values({})) == "replacement: $1"


def test_render_print_env_lists_every_default():
    result = run([tool(SYSTEM_PYTHON), str(RENDER), "--print-env"], env=clean_env())
    assert_ok(result)
    values = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert values["VIGIE_PROMETHEUS_PORT"] == "9090"
    assert values["VIGIE_SLACK_SINK_PORT"] == "9095"
    assert values["VIGIE_PLATFORM_DIR"] == str(PLATFORM)


def test_blackbox_modules_are_valid():
    result = run(
        [
            tool("prometheus-blackbox-exporter"),
            "--config.check",
            f"--config.file={PLATFORM / 'prometheus' / 'blackbox.yml'}",
        ]
    )
    assert_ok(result)
    assert "Config file is ok" in result.stdout + result.stderr
    modules = load_yaml(PLATFORM / "prometheus" / "blackbox.yml")["modules"]
    assert {"http_2xx", "tcp_connect"} <= set(modules)


def test_render_defaults_match_the_deployment_ports_file():
    # deploy/local/ports.env is the one place a deployment sets ports; the renderer's own defaults must agree.
    ports_env = (PLATFORM.parent / "deploy" / "local" / "ports.env").read_text()
    declared = dict(re.findall(r'^: "\$\{(VIGIE_[A-Z_]+_PORT):=(\d+)\}"', ports_env, re.MULTILINE))
    defaults = {k: v for k, v in load_render_module().DEFAULTS.items() if k.endswith("_PORT")}
    assert declared, "no VIGIE_*_PORT defaults found in deploy/local/ports.env"
    for name, value in defaults.items():
        assert declared.get(name) == value, f"{name}: renderer default {value}, ports.env {declared.get(name)}"
