"""SLO definitions and the rules generated from them (platform/slo/generate.py with pinned Sloth)."""

from __future__ import annotations

import shutil

import pytest
from conftest import PLATFORM, REPO, RULES_DIR, assert_ok, load_yaml, run, tool

GENERATE = PLATFORM / "slo" / "generate.py"
SERVICES = ("gateway", "user", "order")


@pytest.fixture(scope="module")
def generator():
    """The generator, with its pinned Sloth built into .cache/ if this checkout has not built it yet."""
    python = tool("python3")
    # A no-op when Sloth is cached; otherwise a one-time `go install` of the pinned version (minutes).
    assert_ok(run([python, str(GENERATE), "--install"], timeout=1800))
    return python


def test_committed_rules_are_current(generator):
    result = run([generator, str(GENERATE), "--check"], timeout=120)
    assert_ok(result)
    assert "are current" in result.stdout


def test_check_fails_on_stale_or_orphaned_output(generator, tmp_path):
    for path in RULES_DIR.glob("slo-*.generated.yml"):
        shutil.copy(path, tmp_path / path.name)
    stale = tmp_path / "slo-user.generated.yml"
    stale.write_text(stale.read_text().replace("vector(0.995)", "vector(0.999)"))
    (tmp_path / "slo-billing.generated.yml").write_text("groups: []\n")
    result = run([generator, str(GENERATE), "--check", "--rules-dir", str(tmp_path)], timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "slo-user.generated.yml is stale" in result.stderr
    assert "slo-billing.generated.yml has no SLO definition" in result.stderr
    assert "slo-gateway.generated.yml" not in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_availability_and_latency_objectives(service):
    spec = load_yaml(PLATFORM / "slo" / f"{service}.yml")
    assert spec["version"] == "prometheus/v1"
    assert spec["service"] == service
    slos = {slo["name"]: slo for slo in spec["slos"]}
    assert set(slos) == {"requests-availability", "requests-latency"}
    assert slos["requests-availability"]["objective"] == 99.5
    assert slos["requests-latency"]["objective"] == 99
    for slo in slos.values():
        alerting = slo["alerting"]
        assert alerting["labels"]["service"] == service
        assert alerting["page_alert"]["labels"]["severity"] == "critical"
        assert alerting["ticket_alert"]["labels"]["severity"] == "warning"
        assert alerting["annotations"]["runbook_url"] == f"docs/runbooks/{alerting['name']}.md"
        for query in slo["sli"]["events"].values():
            assert f'service="{service}"' in query and "{{.window}}" in query
    generated = RULES_DIR / f"slo-{service}.generated.yml"
    assert generated.is_file(), f"{generated.relative_to(REPO)} missing: run platform/slo/generate.py"
