"""The observability contract on every alert: labels, annotations, a runbook that exists, and unit-test cases.

A rule without its runbook, a runbook without its rule, or an alert without both a firing and a quiet promtool case
fails here with the alert's name.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
from conftest import REPO, RULE_TESTS_DIR, RUNBOOKS_DIR, alerting_rules, load_yaml

ALERTS = alerting_rules()
ALERT_NAMES = sorted({a.name for a in ALERTS})
SERVICE_METRICS = re.compile(r"\b(http_server_|http_client_|db_|process_|service_ready|faults_active|service:)")
RUNBOOK_SECTIONS = ["## Meaning", "## Impact", "## Confirm", "## Mitigate", "## Escalate"]


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: f"{a.name}-{a.labels.get('severity')}")
def test_alert_has_required_labels_and_annotations(alert):
    assert alert.labels.get("severity") in {"critical", "warning"}, f"{alert.name}: severity {alert.labels}"
    for key in ("summary", "description", "runbook_url"):
        assert alert.annotations.get(key, "").strip(), f"{alert.name} ({alert.file}) has no {key} annotation"
    assert alert.annotations["runbook_url"] == f"docs/runbooks/{alert.name}.md", alert.annotations["runbook_url"]


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: f"{a.name}-{a.labels.get('severity')}")
def test_service_alerts_carry_a_service_label(alert):
    # The label comes from the series (every service target has one) or from the rule itself; `by (...)`
    # aggregations that drop it would break routing and the ServiceDown inhibition.
    if not SERVICE_METRICS.search(alert.expr) or "service" in alert.labels:
        return
    for by_clause in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", alert.expr):
        assert "service" in by_clause, f"{alert.name}: `{by_clause}` drops the service label"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_runbook_exists_and_is_complete(name):
    path = RUNBOOKS_DIR / f"{name}.md"
    assert path.is_file(), f"{name}: runbook {path.relative_to(REPO)} is missing"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {name}\n"), f"{path.name} must start with '# {name}'"
    missing = [s for s in RUNBOOK_SECTIONS if s not in text]
    assert not missing, f"{path.name} lacks sections {missing}"
    # Confirmation must be concrete: at least one command block.
    assert "```sh" in text or "`curl" in text or "`df" in text, f"{path.name} has no command to confirm with"


def test_every_runbook_belongs_to_an_alert():
    pages = {p.stem for p in RUNBOOKS_DIR.glob("*.md")} - {"README"}
    orphans = sorted(pages - set(ALERT_NAMES))
    assert not orphans, f"runbooks without an alert (dead pages): {orphans}"


def test_runbook_links_resolve():
    for page in RUNBOOKS_DIR.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+\.md)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"


def test_runbook_index_lists_every_alert():
    index = (RUNBOOKS_DIR / "README.md").read_text(encoding="utf-8")
    for name in ALERT_NAMES:
        assert f"[{name}]({name}.md)" in index, f"docs/runbooks/README.md does not list {name}"


def test_runbook_index_matches_rules():
    # The index table repeats severity and `for:`; keep it honest.
    rows = dict(
        (m.group(1), (m.group(2), m.group(3)))
        for m in re.finditer(r"^\| (\w+) \| ([^|]+) \| ([^|]+) \|", (RUNBOOKS_DIR / "README.md").read_text(), re.M)
    )
    for alert in ALERTS:
        severity, for_ = rows[alert.name]
        assert alert.labels["severity"] in severity, f"{alert.name}: index says {severity!r}"
        assert for_.strip() == alert.for_, f"{alert.name}: index says for {for_.strip()}, rule says {alert.for_}"


def unit_test_cases():
    """alertname -> list of (file, test name, eval_time, number of expected alerts)."""
    cases = defaultdict(list)
    for path in sorted(RULE_TESTS_DIR.glob("*.yml")):
        for test in load_yaml(path)["tests"]:
            for case in test.get("alert_rule_test", []):
                expected = len(case["exp_alerts"] or [])
                cases[case["alertname"]].append((path.name, test.get("name"), case["eval_time"], expected))
    return cases


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_has_a_firing_and_a_quiet_unit_test_case(name):
    cases = unit_test_cases()[name]
    assert any(n > 0 for *_, n in cases), f"{name}: no promtool case where it fires"
    assert any(n == 0 for *_, n in cases), f"{name}: no promtool case where it must not fire"


def test_critical_hard_failures_detect_within_budget():
    # Budget (prometheus.yml.tmpl): scrape 5 s + evaluation 5 s + for + group_wait 5 s + delivery < 30 s.
    for alert in ALERTS:
        if alert.name in {"ServiceDown", "DatabaseDown"}:
            assert alert.for_ == "10s", f"{alert.name}: for {alert.for_}"
