"""The notification sinks, for real: an SMTP session into a Maildir, HTTP posts into a JSON-lines file."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import subprocess
from email.message import EmailMessage

import requests
from conftest import PLATFORM, SYSTEM_PYTHON, tool


def maildir_messages(maildir):
    return sorted((maildir / "new").glob("*")) if (maildir / "new").is_dir() else []


def test_smtp_sink_delivers_every_message_into_the_maildir(smtp_sink):
    msg = EmailMessage()
    msg["From"] = "alertmanager@vigie.local"
    msg["To"] = "oncall@vigie.local"
    msg["Subject"] = "[Vigie FIRING:1] DatabaseDown on postgres"
    msg.set_content("CRITICAL: PostgreSQL is down\nRunbook: docs/runbooks/DatabaseDown.md\n")
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as smtp:
        smtp.send_message(msg)
        second = EmailMessage()
        second["From"] = "alertmanager@vigie.local"
        second["To"] = "oncall@vigie.local"
        second["Subject"] = "second"
        second.set_content("second body")
        smtp.send_message(second, to_addrs=["oncall@vigie.local", "backup@vigie.local"])

    files = maildir_messages(smtp_sink.maildir)
    assert len(files) == 2, f"expected 2 mails in {smtp_sink.maildir}/new, found {files}"
    # Maildir delivery: nothing left half-written in tmp/.
    assert list((smtp_sink.maildir / "tmp").iterdir()) == []
    parsed = sorted(
        (email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files),
        key=lambda m: m["Subject"] != msg["Subject"],
    )
    first = parsed[0]
    assert first["Subject"] == "[Vigie FIRING:1] DatabaseDown on postgres"
    assert first["Return-Path"] == "<alertmanager@vigie.local>"
    assert first["Delivered-To"] == "oncall@vigie.local"
    assert "by vigie-smtp-sink" in first["Received"]
    assert "Runbook: docs/runbooks/DatabaseDown.md" in first.get_content()
    assert parsed[1]["Delivered-To"] == "oncall@vigie.local, backup@vigie.local"
    assert parsed[1].get_content().strip() == "second body"


def test_smtp_sink_exits_cleanly_on_sigterm(smtp_sink):
    assert smtp_sink.terminate() == 0
    assert "stopped" in smtp_sink.stderr()


def test_slack_sink_records_each_payload_as_one_json_line(slack_sink):
    base = f"http://{slack_sink.host}:{slack_sink.port}"
    payloads = [
        {"channel": "#vigie-alerts", "attachments": [{"title": "[FIRING:1] ServiceDown · user", "text": "a\nb"}]},
        {"text": 'accents é and quotes " survive'},
    ]
    for payload in payloads:
        response = requests.post(f"{base}/slack", json=payload, timeout=5)
        assert (response.status_code, response.text) == (200, "ok")
    # Any path is accepted, like Slack's /services/T…/B…/… URLs.
    assert requests.post(f"{base}/services/T0/B0/x", json={"text": "third"}, timeout=5).status_code == 200

    lines = slack_sink.out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == payloads + [{"text": "third"}]


def test_slack_sink_rejects_invalid_payloads_without_recording_them(slack_sink):
    base = f"http://{slack_sink.host}:{slack_sink.port}"
    bad = requests.post(f"{base}/slack", data=b"{not json", headers={"Content-Type": "application/json"}, timeout=5)
    assert bad.status_code == 400
    assert "invalid_payload" in bad.text
    not_object = requests.post(f"{base}/slack", json=["a", "list"], timeout=5)
    assert not_object.status_code == 400
    good = requests.post(f"{base}/slack", json={"text": "kept"}, timeout=5)
    assert good.status_code == 200
    assert slack_sink.out.read_text(encoding="utf-8").splitlines() == ['{"text":"kept"}']


def test_slack_sink_health_and_sigterm(slack_sink):
    base = f"http://{slack_sink.host}:{slack_sink.port}"
    health = requests.get(f"{base}/healthz", timeout=5)
    assert (health.status_code, health.text) == (200, "ok")
    assert requests.get(f"{base}/other", timeout=5).status_code == 404
    assert slack_sink.terminate() == 0
    assert "stopped" in slack_sink.stderr()


def test_sinks_have_help_and_refuse_bad_arguments():
    for script in ("smtp_sink.py", "slack_sink.py"):
        path = str(PLATFORM / "notify" / script)
        helped = subprocess.run([tool(SYSTEM_PYTHON), path, "--help"], capture_output=True, text=True, timeout=10)
        assert helped.returncode == 0 and "--listen" in helped.stdout, helped.stderr
        bad = subprocess.run(
            [tool(SYSTEM_PYTHON), path, "--listen", "nowhere"], capture_output=True, text=True, timeout=10
        )
        assert bad.returncode == 2 and "HOST:PORT" in bad.stderr, bad.stderr
