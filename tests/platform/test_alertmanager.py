"""Alertmanager side: the configuration, its routing tree, and a live run that delivers into the real sinks."""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import time

import pytest
import requests
from conftest import PLATFORM, alerting_rules, assert_ok, free_port, load_yaml, render, run, tool, wait_until

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"


def test_config_is_valid(rendered):
    result = run([tool("amtool"), "check-config", str(rendered / "alertmanager.yml")])
    assert_ok(result)
    assert "SUCCESS" in result.stdout
    assert "1 templates" in result.stdout  # the notification templates were found and parsed


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=DatabaseDown", "severity=critical", "service=postgres"], "email,slack"),
        (["alertname=ApiLatencyHigh", "severity=critical", "service=gateway"], "email,slack"),
        (["alertname=ProcessMemoryHigh", "severity=warning", "service=user"], "slack"),
        (["alertname=Watchdog"], "slack"),  # no severity: Slack, never dropped
    ],
)
def test_routing_tree(rendered, labels, receivers):
    result = run(
        [
            tool("amtool"),
            "config",
            "routes",
            "test",
            f"--config.file={rendered / 'alertmanager.yml'}",
            f"--verify.receivers={receivers}",
            *labels,
        ]
    )
    assert_ok(result)
    assert result.stdout.strip() == receivers


def test_grouping_and_timing(rendered):
    route = load_yaml(rendered / "alertmanager.yml")["route"]
    assert route["group_by"] == ["alertname", "service"]
    # 5 s group_wait is part of the < 30 s budget for hard failures (see prometheus.yml.tmpl).
    assert route["group_wait"] == "5s"


def test_inhibition_rules_name_only_existing_alerts(rendered):
    names = {alert.name for alert in alerting_rules()}
    for rule in load_yaml(rendered / "alertmanager.yml")["inhibit_rules"]:
        for matcher in rule.get("source_matchers", []) + rule.get("target_matchers", []):
            m = re.fullmatch(r'alertname(=~|=)"([^"]+)"', matcher)
            if m:
                for name in m.group(2).split("|"):
                    assert name in names, f"inhibit rule names unknown alert {name!r}: {rule}"


def post_alerts(base: str, alerts: list[dict]) -> None:
    payload = [
        {
            "labels": labels,
            "annotations": {
                "summary": f"{labels['alertname']} summary",
                "description": f"{labels['alertname']} description",
                "runbook_url": f"docs/runbooks/{labels['alertname']}.md",
            },
            "generatorURL": "http://127.0.0.1:9090/graph",
        }
        for labels in alerts
    ]
    response = requests.post(f"{base}/api/v2/alerts", json=payload, timeout=5)
    assert response.status_code == 200, response.text


def test_live_routing_and_inhibition_reach_the_sinks(tmp_path, smtp_sink, slack_sink):
    am_port = free_port()
    config_dir = render(
        tmp_path / "etc",
        VIGIE_SMTP_SINK_PORT=str(smtp_sink.port),
        VIGIE_SLACK_SINK_PORT=str(slack_sink.port),
        VIGIE_ALERTMANAGER_PORT=str(am_port),
    )
    am = subprocess.Popen(
        [
            tool(ALERTMANAGER),
            f"--config.file={config_dir / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{am_port}"
    try:

        def ready():
            if am.poll() is not None:
                pytest.fail(f"alertmanager exited {am.returncode}:\n{am.stdout.read()}")
            try:
                return requests.get(f"{base}/-/ready", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, timeout=15, what="alertmanager /-/ready")
        post_alerts(
            base,
            [
                {"alertname": "DatabaseDown", "severity": "critical", "service": "postgres", "job": "postgres"},
                # Caused by the database: muted by DatabaseDown (no `equal`, any service).
                {"alertname": "ApiErrorRateHigh", "severity": "critical", "service": "gateway"},
                {"alertname": "ServiceFlapping", "severity": "critical", "service": "order"},
                # Same service as the crash loop: muted. Another service: delivered.
                {"alertname": "ServiceRestarted", "severity": "warning", "service": "order"},
                {"alertname": "ServiceRestarted", "severity": "warning", "service": "user"},
                {"alertname": "ProcessMemoryHigh", "severity": "warning", "service": "user"},
            ],
        )
        started = time.monotonic()

        def slack_titles():
            if not slack_sink.out.exists():
                return []
            posts = [json.loads(line) for line in slack_sink.out.read_text().splitlines()]
            return sorted(p["attachments"][0]["title"] for p in posts)

        def mails():
            new = smtp_sink.maildir / "new"
            files = sorted(new.glob("*")) if new.is_dir() else []
            return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]

        wait_until(lambda: len(slack_titles()) >= 4 and len(mails()) >= 2, timeout=25, what="notifications")
        elapsed = time.monotonic() - started
        # Inhibited alerts would have been flushed with the others (same group_wait): give them a moment to show up.
        time.sleep(1.5)
    finally:
        am.terminate()
        am.wait(timeout=10)

    assert elapsed < 15, f"notifications took {elapsed:.1f}s; group_wait is 5s"
    assert slack_titles() == [
        "[FIRING:1] DatabaseDown · postgres",
        "[FIRING:1] ProcessMemoryHigh · user",
        "[FIRING:1] ServiceFlapping · order",
        "[FIRING:1] ServiceRestarted · user",
    ]
    received = mails()
    assert sorted(m["Subject"] for m in received) == [
        "[Vigie FIRING:1] DatabaseDown on postgres",
        "[Vigie FIRING:1] ServiceFlapping on order",
    ]
    for m in received:
        assert m["To"] == "oncall@vigie.local"
        text = m.get_body(preferencelist=("plain",)).get_content()
        name = m["Subject"].split("] ")[1].split(" on ")[0]
        assert f"CRITICAL: {name} summary" in text
        assert f"Runbook: docs/runbooks/{name}.md" in text
    slack_text = [json.loads(line)["attachments"][0] for line in slack_sink.out.read_text().splitlines()]
    memory = next(a for a in slack_text if "ProcessMemoryHigh" in a["title"])
    assert memory["color"] == "warning"
    assert "WARNING: ProcessMemoryHigh summary" in memory["text"]
    assert "Runbook: docs/runbooks/ProcessMemoryHigh.md" in memory["text"]
    database = next(a for a in slack_text if "DatabaseDown" in a["title"])
    assert database["color"] == "danger"


def test_runbook_links_in_templates_come_from_annotations():
    # The notification texts print each alert's runbook_url annotation, so every notification links its runbook.
    template = (PLATFORM / "alertmanager" / "templates" / "vigie.tmpl").read_text()
    assert "Runbook: {{ .Annotations.runbook_url }}" in template
