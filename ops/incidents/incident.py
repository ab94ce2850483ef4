#!/usr/bin/python3
"""Incident drills: inject ONE real incident into a running Vigie stack and time the fault → alert contract.

    incident.py slow-api                  # `make incident NAME=slow-api`
    incident.py --list                    # the incidents, their alert, severity, sinks and budget
    incident.py database-down --json out.json

For the incident asked, the drill checks the stack and the alert rule, waits until the alert is quiet, remembers
what the notification sinks already hold, then injects the fault for real (an admin fault switch, stopping
PostgreSQL or a service through supervisorctl, or kill -9 of a service) and reports, relative to the moment the
fault started:
  - when the alert fired in Prometheus (GET /api/v1/alerts, state "firing"),
  - when its notification landed in each sink: the Maildir (`notifications/mail/`, time = the file's mtime) and the
    Slack JSON-lines file (`notifications/slack.jsonl`, time = when the drill saw the line; it polls every second),
  - once the fault is removed: when the alert left Prometheus and when the RESOLVED notification landed.
Critical alerts must reach e-mail and Slack, warnings Slack only (an e-mail for a warning is a failure). Budgets:
hard failures (database or service down, service killed) notified in under 30 s, the others in under 2 minutes.
Exit status 0 when every expectation held, 1 when one did not (the report says which), 2 for bad arguments.

Nothing is faked: no metric is written, no alert is posted. Latency and error alerts need traffic; the drill drives
its own (a few requests per second straight to the faulted service, ops/loadgen/loadgen.py) on top of the
platform's load generator. The fault is always removed, also on failure or Ctrl-C.

Where the stack is: VIGIE_STATE_DIR (default <repo>/var) and the VIGIE_*_PORT variables (defaults in
deploy/local/ports.env), as for deploy/local/vigie-local. Stdlib only; the module is also imported by
ops/incidents/drill.py (`make drill`) and by tests/drills/.
"""

from __future__ import annotations

import argparse
import dataclasses
import email
import email.policy
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PORTS_ENV = REPO / "deploy" / "local" / "ports.env"
LOADGEN = REPO / "ops" / "loadgen" / "loadgen.py"
HOST = "127.0.0.1"

# Notification budgets of the issue: hard failures in under 30 s, everything else in under 2 minutes.
HARD_BUDGET = 30.0
SOFT_BUDGET = 120.0
SINKS_BY_SEVERITY = {"critical": ("email", "slack"), "warning": ("slack",)}
SINK_NAMES = ("email", "slack")


class DrillError(Exception):
    """The drill cannot run (stack not there, rule missing, alert already firing...): exit 1 with the message."""


# ---------------------------------------------------------------------------------------------------------------
# The incidents
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Incident:
    name: str
    summary: str
    alert: str
    severity: str  # the contract; checked against the live rule before the drill
    service: str  # the service the fault hits (label `service` of the alert)
    action: str  # fault | stop | kill | freeze (SIGSTOP, SIGCONT to recover)
    fault: dict | None = None  # POST /admin/faults body, for action "fault"
    program: str | None = None  # supervisord program, for stop / kill / freeze
    # freeze: the whole process tree (a storage stall stops everything) or only the program's own process (for
    # PostgreSQL: the postmaster, which opens new sessions, while the existing backends keep serving).
    freeze_tree: bool = False
    # Requests per second the drill sends to the faulted service (0: the incident needs none). Kept low where each
    # request holds a database connection for the fault's duration, so the pool does not saturate as well.
    traffic: float = 0.0
    hard: bool = False
    # What the alert looks at ({service} filled in) and its threshold: the drill reports the peak it reached, which
    # says why when an alert did not fire (e.g. a CPU burn that a busy host never lets reach 0.8 core).
    signal: str = ""
    threshold: str = ""
    # How long after recovery the alert may take to resolve and be notified as resolved: rule windows (1 min rate
    # windows, ServiceRestarted's 5 min window) plus Alertmanager's group_interval (30 s), with a margin.
    resolve_timeout: float = 180.0

    @property
    def budget(self) -> float:
        return HARD_BUDGET if self.hard else SOFT_BUDGET

    @property
    def sinks(self) -> tuple[str, ...]:
        return SINKS_BY_SEVERITY[self.severity]

    def describe_fault(self) -> str:
        if self.action == "fault":
            return f"POST /admin/faults {json.dumps(self.fault)} on {self.service}"
        if self.action == "stop":
            return f"supervisorctl stop {self.program}"
        if self.action == "freeze":
            return f"kill -STOP {self.program}" + (
                " and every child process" if self.freeze_tree else " (main process only)"
            )
        return f"kill -9 {self.program}"


# Targets are chosen so one incident does not cascade into another's alert: slow-api hits order (nothing but the
# gateway calls it; a slow user service would time out order's user checks and turn into 5xx), 5xx-burst hits user,
# the kill and the stop hit different services so two drills in a row never add up to ServiceFlapping.
INCIDENTS: dict[str, Incident] = {
    i.name: i
    for i in [
        Incident(
            "slow-api",
            "API too slow: every order request delayed by 1.2 s",
            "ApiLatencyHigh",
            "critical",
            "order",
            "fault",
            {"latency_ms": 1200},
            traffic=4.0,
            signal='service:http_server_request_duration_seconds:p95_rate1m{service="order"}',
            threshold="1 (s)",
        ),
        Incident(
            "5xx-burst",
            "30 % of user requests answered 500",
            "ApiErrorRateHigh",
            "critical",
            "user",
            "fault",
            {"error_ratio": 0.3},
            traffic=4.0,
            signal='service:http_server_requests_5xx:ratio_rate1m{service="user"}',
            threshold="0.05",
        ),
        Incident(
            "memory-leak",
            "user service holds 600 MiB more (resident)",
            "ProcessMemoryHigh",
            "critical",
            "user",
            "fault",
            {"memory_mb": 600},
            signal='process_resident_memory_bytes{job="user"} / 2^20',
            threshold="500 (MiB)",
        ),
        # Eight threads (the switch's maximum), as a runaway thread pool would: the alert wants 0.8 core for the
        # process, and on a host busy with other work the scheduler shares the cores per thread. Measured here on 2
        # cores at a load average of 5-12: 2 threads peaked at 0.4 core, 4 threads at 0.81 core (never 30 s above 0.8).
        Incident(
            "cpu-burn",
            "eight threads spinning in the order service",
            "ProcessCpuHigh",
            "critical",
            "order",
            "fault",
            {"cpu_threads": 8},
            signal='service:process_cpu_seconds:rate1m{service="order"}',
            threshold="0.8 (cores)",
        ),
        Incident(
            "database-down",
            "PostgreSQL stopped",
            "DatabaseDown",
            "critical",
            "postgres",
            "stop",
            program="postgres",
            hard=True,
            resolve_timeout=120.0,
        ),
        # The postmaster alone stopped: existing sessions (the pools', the exporter's) keep working, no new one opens.
        Incident(
            "database-no-new-connections",
            "PostgreSQL's postmaster stopped (SIGSTOP): existing sessions work, no new one opens",
            "DatabaseNoNewConnections",
            "critical",
            "postgres",
            "freeze",
            program="postgres",
            hard=True,
        ),
        # Every PostgreSQL process stopped, as a storage stall does: nothing answers, the exporter's scrape times out.
        Incident(
            "database-hung",
            "every PostgreSQL process stopped (SIGSTOP), as in a storage stall",
            "DatabaseDown",
            "critical",
            "postgres",
            "freeze",
            program="postgres",
            freeze_tree=True,
            hard=True,
            resolve_timeout=120.0,
        ),
        # 600 ms: over the alert's 500 ms, under the 1 s of ApiLatencyHigh; 1 req/s so the slow statements (the
        # platform's own traffic included) keep well under the pool's 8 connections.
        Incident(
            "slow-queries",
            "every user request runs a 600 ms query",
            "DatabaseSlowQueries",
            "critical",
            "user",
            "fault",
            {"slow_query_ms": 600},
            traffic=1.0,
            signal='service_query:db_query_duration_seconds:p95_rate1m{service="user",query="fault_slow_query"}',
            threshold="0.5 (s)",
        ),
        # ServiceRestarted looks at process_start_time_seconds over 5 minutes: it resolves 5 minutes after the restart.
        Incident(
            "service-killed",
            "order service killed with SIGKILL (supervisord restarts it)",
            "ServiceRestarted",
            "critical",
            "order",
            "kill",
            program="order",
            hard=True,
            resolve_timeout=420.0,
        ),
        Incident(
            "service-down",
            "user service stopped for good (until the drill starts it again)",
            "ServiceDown",
            "critical",
            "user",
            "stop",
            program="user",
            hard=True,
            resolve_timeout=120.0,
        ),
    ]
}


# ---------------------------------------------------------------------------------------------------------------
# The stack: URLs, files, supervisorctl
# ---------------------------------------------------------------------------------------------------------------


def read_port_defaults(path: Path = PORTS_ENV) -> dict[str, str]:
    """The `: "${NAME:=value}"` lines of deploy/local/ports.env."""
    pattern = re.compile(r'^:\s*"\$\{(VIGIE_[A-Z_]+_PORT):=(\d+)\}"')
    defaults = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = pattern.match(line.strip())
        if match:
            defaults[match.group(1)] = match.group(2)
    return defaults


@dataclasses.dataclass(frozen=True)
class Stack:
    state: Path
    ports: dict[str, int]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Stack:
        environ = dict(os.environ) if environ is None else environ
        ports = {}
        for name, default in read_port_defaults().items():
            value = environ.get(name, default)
            if not value.isdigit() or not 0 < int(value) < 65536:
                raise DrillError(f"{name}={value!r} is not a TCP port")
            ports[name] = int(value)
        state = Path(environ.get("VIGIE_STATE_DIR") or REPO / "var").resolve()
        return cls(state, ports)

    def url(self, port_name: str, path: str = "") -> str:
        return f"http://{HOST}:{self.ports[port_name]}{path}"

    def api(self, service: str) -> str:
        return self.url(f"VIGIE_{service.upper()}_PORT")

    def admin(self, service: str, path: str = "") -> str:
        return self.url(f"VIGIE_{service.upper()}_ADMIN_PORT", path)

    @property
    def prometheus(self) -> str:
        return self.url("VIGIE_PROMETHEUS_PORT")

    @property
    def alertmanager(self) -> str:
        return self.url("VIGIE_ALERTMANAGER_PORT")

    @property
    def maildir(self) -> Path:
        return self.state / "notifications" / "mail"

    @property
    def slack_file(self) -> Path:
        return self.state / "notifications" / "slack.jsonl"

    def supervisorctl(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        conf = self.state / "supervisor" / "supervisord.conf"
        return subprocess.run(
            ["supervisorctl", "-c", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def program_state(self, program: str) -> tuple[str, int | None]:
        """("RUNNING", pid) etc., from `supervisorctl status PROGRAM`."""
        out = self.supervisorctl("status", program, timeout=30).stdout
        match = re.match(rf"^{re.escape(program)}\s+(\S+)(?:\s+pid (\d+))?", out)
        if not match:
            return "UNKNOWN", None
        return match.group(1), int(match.group(2)) if match.group(2) else None


def http_json(method: str, url: str, body: object = None, timeout: float = 5.0) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"} if data is not None else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def http_ok(url: str, timeout: float = 3.0) -> bool:
    try:
        return http_json("GET", url, timeout=timeout)[0] == 200
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------------------------
# What Prometheus and the sinks say
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Notification:
    sink: str  # email | slack
    status: str  # firing | resolved
    alert: str
    service: str
    at: float  # epoch seconds


EMAIL_SUBJECT = re.compile(r"^\[Vigie (FIRING:\d+|RESOLVED)\] (\S+)(?: on (\S+))?")
SLACK_TITLE = re.compile(r"^\[(FIRING:\d+|RESOLVED)\] (\S+)(?: · (\S+))?")


def parse_email(raw: bytes, at: float) -> Notification | None:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    match = EMAIL_SUBJECT.match(str(message.get("Subject", "")))
    if not match:
        return None
    status = "resolved" if match.group(1) == "RESOLVED" else "firing"
    return Notification("email", status, match.group(2), match.group(3) or "", at)


def parse_slack(line: str, at: float) -> list[Notification]:
    try:
        payload = json.loads(line)
    except ValueError:
        return []
    found = []
    for attachment in payload.get("attachments") or []:
        match = SLACK_TITLE.match(str(attachment.get("title", "")))
        if match:
            status = "resolved" if match.group(1) == "RESOLVED" else "firing"
            found.append(Notification("slack", status, match.group(2), match.group(3) or "", at))
    return found


class Sinks:
    """New notifications since a baseline: Maildir files not seen before, Slack lines past the remembered offset."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._seen_mail: set[str] = set()
        self._slack_offset = 0
        self._partial = b""

    def baseline(self) -> None:
        self._seen_mail = set(self._mail_files())
        try:
            self._slack_offset = self._stack.slack_file.stat().st_size
        except FileNotFoundError:
            self._slack_offset = 0
        self._partial = b""

    def _mail_files(self) -> dict[str, Path]:
        files = {}
        for sub in ("new", "cur"):
            directory = self._stack.maildir / sub
            if directory.is_dir():
                for path in directory.iterdir():
                    # A message moved from new/ to cur/ keeps its unique name up to the ":2," info suffix.
                    files[path.name.split(":", 1)[0]] = path
        return files

    def poll(self) -> list[Notification]:
        now = time.time()
        found: list[Notification] = []
        for key, path in sorted(self._mail_files().items()):
            if key in self._seen_mail:
                continue
            try:
                raw, mtime = path.read_bytes(), path.stat().st_mtime
            except FileNotFoundError:
                continue  # moved between listing and reading: seen on the next poll
            self._seen_mail.add(key)
            notification = parse_email(raw, mtime)
            if notification:
                found.append(notification)
        try:
            with open(self._stack.slack_file, "rb") as f:
                f.seek(self._slack_offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        if data:
            self._slack_offset += len(data)
            data = self._partial + data
            lines = data.split(b"\n")
            self._partial = lines.pop()  # an incomplete last line waits for the next poll
            for line in lines:
                if line.strip():
                    found.extend(parse_slack(line.decode("utf-8", "replace"), now))
        return found


def prometheus_alerts(stack: Stack) -> list[dict]:
    status, body = http_json("GET", stack.prometheus + "/api/v1/alerts")
    if status != 200 or not isinstance(body, dict):
        raise DrillError(f"Prometheus answered {status} to /api/v1/alerts: {str(body)[:200]}")
    return body["data"]["alerts"]


def active_silences(stack: Stack) -> list[dict]:
    status, body = http_json("GET", stack.alertmanager + "/api/v2/silences")
    if status != 200 or not isinstance(body, list):
        raise DrillError(f"Alertmanager answered {status} to /api/v2/silences: {str(body)[:200]}")
    return [s for s in body if s.get("status", {}).get("state") == "active"]


def silences_alert(silence: dict, labels: dict[str, str]) -> bool:
    """True when every matcher of the silence matches these labels (equality and regex matchers, negated or not)."""
    for matcher in silence.get("matchers", []):
        value = labels.get(matcher["name"], "")
        hit = (
            (re.fullmatch(matcher["value"], value) is not None) if matcher.get("isRegex") else value == matcher["value"]
        )
        if hit == (not matcher.get("isEqual", True)):
            return False
    return True


def prometheus_query(stack: Stack, promql: str) -> list[dict]:
    status, body = http_json("GET", stack.prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    if status != 200 or not isinstance(body, dict):
        raise DrillError(f"Prometheus answered {status} to {promql!r}: {str(body)[:200]}")
    return body["data"]["result"]


def alert_rule(stack: Stack, name: str) -> dict | None:
    status, body = http_json("GET", stack.prometheus + "/api/v1/rules?type=alert")
    if status != 200 or not isinstance(body, dict):
        raise DrillError(f"Prometheus answered {status} to /api/v1/rules")
    for group in body["data"]["groups"]:
        for rule in group["rules"]:
            if rule.get("name") == name:
                return rule
    return None


# ---------------------------------------------------------------------------------------------------------------
# One drill
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    incident: str
    alert: str
    service: str
    severity: str
    sinks: tuple[str, ...]
    budget: float
    fault: str = ""
    fault_start: float | None = None  # epoch seconds
    fired: float | None = None
    notified: dict[str, float] = dataclasses.field(default_factory=dict)  # sink -> epoch
    recovered: float | None = None  # fault removed (or, for a kill, the service restarted)
    restarted: float | None = None  # the killed or stopped service answers /readyz again
    resolved: float | None = None  # alert no longer active in Prometheus
    resolved_notified: dict[str, float] = dataclasses.field(default_factory=dict)
    other_alerts: list[str] = dataclasses.field(default_factory=list)  # "Name/service" that fired meanwhile
    failures: list[str] = dataclasses.field(default_factory=list)
    rule_for: str = ""
    peak: float | None = None  # highest value of the incident's signal while the fault was on

    def after(self, moment: float | None, since: float | None = None) -> float | None:
        start = self.fault_start if since is None else since
        return None if moment is None or start is None else round(moment - start, 1)

    @property
    def firing_after(self) -> float | None:
        return self.after(self.fired)

    def notified_after(self, sink: str) -> float | None:
        return self.after(self.notified.get(sink))

    @property
    def resolved_after(self) -> float | None:
        """From the fault's removal to the last expected RESOLVED notification (None while one is missing)."""
        if self.recovered is None or any(sink not in self.resolved_notified for sink in self.sinks):
            return None
        return self.after(max(self.resolved_notified[s] for s in self.sinks), self.recovered)

    @property
    def within_budget(self) -> bool:
        return (
            all(sink in self.notified and self.notified[sink] - self.fault_start <= self.budget for sink in self.sinks)
            if self.fault_start is not None
            else False
        )

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict:
        def stamp(value: float | None) -> str | None:
            return None if value is None else iso(value)

        return {
            "incident": self.incident,
            "alert": self.alert,
            "service": self.service,
            "severity": self.severity,
            "expected_sinks": list(self.sinks),
            "budget_seconds": self.budget,
            "rule_for": self.rule_for,
            "fault": self.fault,
            "fault_start": stamp(self.fault_start),
            "firing_after_seconds": self.firing_after,
            "notified_after_seconds": {s: self.notified_after(s) for s in SINK_NAMES if s in self.notified},
            "recovered_after_seconds": self.after(self.recovered),
            "service_back_after_seconds": self.after(self.restarted),
            "resolved_in_prometheus_after_recovery_seconds": self.after(self.resolved, self.recovered),
            "resolved_notified_after_recovery_seconds": {
                s: self.after(t, self.recovered) for s, t in sorted(self.resolved_notified.items())
            },
            "signal_peak": self.peak,
            "within_budget": self.within_budget,
            "other_alerts": self.other_alerts,
            "failures": self.failures,
            "ok": self.ok,
        }


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-5] + "Z"


def load_loadgen():
    spec = importlib.util.spec_from_file_location("vigie_loadgen", LOADGEN)
    if spec is None or spec.loader is None:
        raise DrillError(f"cannot load {LOADGEN}")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("vigie_loadgen", module)
    spec.loader.exec_module(module)
    return module


class Drill:
    """One incident, in phases: prepare → inject → wait_notified → recover → wait_resolved; finish() always.

    run() does them in order. The phases are public so a caller can overlap a slow resolution (ServiceRestarted
    stays for its 5 minute window) with the next drills: resolve_in_background() then join_background().
    """

    def __init__(
        self,
        stack: Stack,
        incident: Incident,
        *,
        traffic_rate: float | None = None,
        poll: float = 1.0,
        settle_timeout: float = 360.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.stack = stack
        self.incident = incident
        self.traffic_rate = incident.traffic if traffic_rate is None else traffic_rate
        self.poll_interval = poll
        self.settle_timeout = settle_timeout
        self._log_fn = log or (lambda line: print(line, flush=True))
        self.sinks = Sinks(stack)
        self.result = Result(
            incident.name,
            incident.alert,
            incident.service,
            incident.severity,
            incident.sinks,
            incident.budget,
            fault=incident.describe_fault(),
        )
        self._active_before: set[str] = set()
        # Other alerts are recorded while this drill is the one running; not while its resolution is watched in the
        # background, when they belong to the next drills.
        self._record_others = True
        self._traffic = None
        self._traffic_thread: threading.Thread | None = None
        self._fault_on = False
        self._killed_pid: int | None = None
        self._frozen: list[int] = []
        self._background: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- logging ---------------------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        start = self.result.fault_start
        stamp = f"+{time.time() - start:6.1f}s" if start else " " * 8
        self._log_fn(f"[{self.incident.name} {stamp}] {message}")

    def fail(self, message: str) -> None:
        with self._lock:
            self.result.failures.append(message)
        self.log(f"FAILED: {message}")

    # -- phases ----------------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Checks the stack and the rule, waits until the alert is quiet, remembers what the sinks hold."""
        incident, stack = self.incident, self.stack
        for name, url in (
            ("Prometheus", stack.prometheus + "/-/ready"),
            ("Alertmanager", stack.alertmanager + "/-/ready"),
        ):
            if not http_ok(url):
                raise DrillError(f"{name} does not answer at {url}: is the stack up (make up)?")
        state, _ = stack.program_state(incident.program or incident.service)
        if state != "RUNNING":
            raise DrillError(
                f"{incident.program or incident.service} is {state} under supervisord "
                f"({stack.state}/supervisor): start the stack first (make up)"
            )
        rule = alert_rule(stack, incident.alert)
        if rule is None:
            raise DrillError(f"no alert rule {incident.alert} loaded in Prometheus")
        severity = rule.get("labels", {}).get("severity")
        if severity != incident.severity:
            raise DrillError(
                f"{incident.alert} has severity {severity!r} in the rules, the drill expects "
                f"{incident.severity!r}: one of them is wrong"
            )
        self.result.rule_for = f"{rule.get('duration', 0)}s"
        if incident.action == "fault":
            status, body = http_json("GET", stack.admin(incident.service, "/admin/faults"))
            if status != 200 or not isinstance(body, dict) or not body.get("enabled"):
                raise DrillError(
                    f"fault switches are off on {incident.service} ({status} {body}): the service "
                    "must run with FAULTS_ENABLED=true (deploy/local does)"
                )
            on = {k: v for k, v in body.items() if k != "enabled" and v}
            if on:
                raise DrillError(
                    f"a fault is already on in {incident.service}: {on}; clear it first: "
                    f"curl -X DELETE {stack.admin(incident.service, '/admin/faults')}"
                )
        if incident.action in ("stop", "kill") and incident.service != "postgres":
            if not http_ok(stack.admin(incident.service, "/readyz")):
                raise DrillError(f"{incident.service} is not ready ({stack.admin(incident.service, '/readyz')})")
        self._settle()
        # Pending ones too: an alert already on its way (a previous drill's after-effect) is not this drill's doing.
        self._active_before = {key(a) for a in prometheus_alerts(stack)}
        self.sinks.baseline()

    def _settle(self) -> None:
        deadline = time.monotonic() + self.settle_timeout
        said = False
        self._wait_for_silences(deadline)
        while True:
            alerts = prometheus_alerts(self.stack)
            mine = [a for a in alerts if self._matches(a)]
            blocking = [
                a
                for a in alerts
                if a["labels"].get("alertname") == "ServiceFlapping"
                and a["labels"].get("service") == self.incident.service
                and a.get("state") == "firing"
            ]
            if blocking and self.incident.alert == "ServiceRestarted":
                raise DrillError(
                    f"ServiceFlapping is firing for {self.incident.service} and inhibits "
                    "ServiceRestarted; wait until it clears (15 minute window)"
                )
            if not mine:
                return
            if time.monotonic() >= deadline:
                raise DrillError(
                    f"{self.incident.alert} for {self.incident.service} is still "
                    f"{mine[0].get('state')} after {self.settle_timeout:.0f} s: cannot time a new one"
                )
            if not said:
                self.log(
                    f"waiting for the current {self.incident.alert}/{self.incident.service} "
                    f"({mine[0].get('state')}) to clear first"
                )
                said = True
            time.sleep(2)

    def _wait_for_silences(self, deadline: float) -> None:
        """A silence over this alert (say, vigie-local's after a planned restart) would keep its notifications from
        the sinks: the drill waits until it expires rather than time a notification that cannot come."""
        labels = {
            "alertname": self.incident.alert,
            "service": self.incident.service,
            "severity": self.incident.severity,
        }
        said = False
        while covering := [s for s in active_silences(self.stack) if silences_alert(s, labels)]:
            ends = max(s["endsAt"] for s in covering)
            if time.monotonic() >= deadline:
                raise DrillError(
                    f"a silence covers {self.incident.alert}/{self.incident.service} until {ends} "
                    f"({covering[0].get('comment', '')!r}): run the drill after it ends"
                )
            if not said:
                self.log(
                    f"a silence covers {self.incident.alert}/{self.incident.service} until {ends} "
                    f"({covering[0].get('comment', '')!r}); waiting for it to end"
                )
                said = True
            time.sleep(5)

    def _matches(self, alert: dict) -> bool:
        labels = alert.get("labels", {})
        return labels.get("alertname") == self.incident.alert and labels.get("service") == self.incident.service

    def inject(self) -> None:
        incident, stack = self.incident, self.stack
        if incident.traffic > 0 and self.traffic_rate > 0:
            self._start_traffic()
        self.result.fault_start = time.time()
        self.log(f"injecting: {incident.summary} ({incident.describe_fault()})")
        if incident.action == "fault":
            self._fault_on = True
            status, body = http_json("POST", stack.admin(incident.service, "/admin/faults"), incident.fault)
            if status != 200:
                raise DrillError(f"POST /admin/faults answered {status}: {body}")
        elif incident.action == "stop":
            self._fault_on = True
            done = stack.supervisorctl("stop", incident.program or "")
            if "stopped" not in done.stdout:
                raise DrillError(f"supervisorctl stop {incident.program}: {done.stdout}{done.stderr}")
        elif incident.action == "kill":
            state, pid = stack.program_state(incident.program or "")
            if state != "RUNNING" or pid is None:
                raise DrillError(f"{incident.program} is {state}, not RUNNING: nothing to kill")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if comm != incident.program:
                raise DrillError(f"pid {pid} is {comm!r}, not {incident.program!r}: refusing to kill it")
            os.kill(pid, signal.SIGKILL)
            self._killed_pid = pid
        elif incident.action == "freeze":
            self._frozen = self._freeze_targets()
            self._fault_on = True
            for pid in self._frozen:
                os.kill(pid, signal.SIGSTOP)
            self.log(f"stopped {len(self._frozen)} process(es): {' '.join(map(str, self._frozen))}")
        self.log("fault is on")

    def _freeze_targets(self) -> list[int]:
        """The program's main process, and with freeze_tree its descendants, refusing a process that is not it."""
        incident = self.incident
        state, pid = self.stack.program_state(incident.program or "")
        if state != "RUNNING" or pid is None:
            raise DrillError(f"{incident.program} is {state}, not RUNNING: nothing to stop")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        if comm != incident.program:
            raise DrillError(f"pid {pid} is {comm!r}, not {incident.program!r}: refusing to stop it")
        pids = [pid]
        if incident.freeze_tree:
            children: dict[int, list[int]] = {}
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # the process ended meanwhile
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            index = 0
            while index < len(pids):
                pids.extend(children.get(pids[index], []))
                index += 1
        return pids

    def _thaw(self) -> None:
        for pid in reversed(self._frozen):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._frozen = []

    def _start_traffic(self) -> None:
        loadgen = load_loadgen()
        config = loadgen.Config(
            gateway=loadgen.parse_endpoint(self.stack.api("gateway")),
            user=loadgen.parse_endpoint(self.stack.api("user")),
            order=loadgen.parse_endpoint(self.stack.api("order")),
            route="direct",
            rate=self.traffic_rate,
            only=self.incident.service,
            concurrency=16,
            timeout=10.0,
            report_every=0,
            quiet=True,
        )
        self._traffic = loadgen.LoadGenerator(config, log=lambda line: self.log(line))
        self._traffic_thread = threading.Thread(target=self._traffic.run, name="drill-traffic", daemon=True)
        self._traffic_thread.start()
        self.log(
            f"driving {self.traffic_rate} req/s of {self.incident.service} traffic straight to "
            f"{self.stack.api(self.incident.service)}"
        )

    def _stop_traffic(self) -> None:
        if self._traffic is not None and self._traffic_thread is not None:
            self._traffic.stop.set()
            self._traffic_thread.join(timeout=30)
            summary = self._traffic.stats.snapshot()
            self.log(f"drill traffic: {summary['requests']} requests, {summary['by_class']}")
            self._traffic = None

    def observe(self) -> None:
        """One look at Prometheus and the sinks; records what is new."""
        now = time.time()
        r = self.result
        alerts = prometheus_alerts(self.stack)
        mine = [a for a in alerts if self._matches(a)]
        firing = any(a.get("state") == "firing" for a in mine)
        with self._lock:
            if firing and r.fired is None:
                r.fired = now
                self.log(f"{r.alert}/{r.service} is firing in Prometheus")
            # Resolved = no longer firing; a pending one (a new series on its way) is not an alert yet.
            if r.fired is not None and r.recovered is not None and not firing and r.resolved is None:
                r.resolved = now
                self.log(f"{r.alert}/{r.service} resolved in Prometheus")
            for a in alerts:
                k = key(a)
                if (
                    self._record_others
                    and a.get("state") == "firing"
                    and not self._matches(a)
                    and k not in self._active_before
                    and k not in r.other_alerts
                ):
                    r.other_alerts.append(k)
                    self.log(f"(also firing: {k})")
        for n in self.sinks.poll():
            if n.alert != r.alert or n.service != r.service or r.fault_start is None or n.at < r.fault_start:
                continue
            with self._lock:
                if n.status == "resolved" and (r.recovered is None or n.at < r.recovered):
                    # The RESOLVED of an earlier episode, still on its way when this drill began: not ours.
                    self.log(f"({n.sink}: ignoring a RESOLVED sent before this fault was removed)")
                elif n.status == "firing":
                    if n.sink not in r.notified:
                        r.notified[n.sink] = n.at
                        self.log(f"{n.sink} notification (firing) received")
                        if n.sink not in r.sinks:
                            r.failures.append(f"{n.sink} got {r.alert}, a {r.severity} alert: not expected there")
                elif n.sink not in r.resolved_notified:
                    r.resolved_notified[n.sink] = n.at
                    self.log(f"{n.sink} notification (resolved) received")

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.observe()
            except (DrillError, OSError) as e:
                self.log(f"(could not look: {e}; trying again)")  # e.g. Prometheus busy for a moment
            if done():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll_interval)

    def wait_notified(self) -> None:
        """Until the alert fires and reaches every expected sink; waits past the budget to report the real time."""
        r = self.result
        limit = r.budget * 2 + 60
        self._wait(lambda: r.fired is not None and all(s in r.notified for s in r.sinks), limit)
        self._record_peak()
        if r.fired is None:
            self.fail(
                f"{r.alert}/{r.service} did not fire in Prometheus within {limit:.0f} s"
                + (
                    f" (peak of {self.incident.signal}: {r.peak:.3g}, threshold {self.incident.threshold})"
                    if r.peak is not None
                    else ""
                )
            )
        for sink in r.sinks:
            after = r.notified_after(sink)
            if after is None:
                self.fail(f"no {sink} notification of {r.alert}/{r.service} within {limit:.0f} s")
            elif after > r.budget:
                self.fail(f"{sink} notification after {after} s, over the {r.budget:.0f} s budget")

    def _record_peak(self) -> None:
        if not self.incident.signal or self.result.fault_start is None:
            return
        window = max(10, int(time.time() - self.result.fault_start) + 5)
        try:
            result = prometheus_query(self.stack, f"max(max_over_time(({self.incident.signal})[{window}s:5s]))")
        except (DrillError, OSError) as e:
            self.log(f"(could not read the peak of {self.incident.signal}: {e})")
            return
        if result:
            self.result.peak = float(result[0]["value"][1])
            self.log(f"peak of {self.incident.signal}: {self.result.peak:.3g} (threshold {self.incident.threshold})")

    def recover(self) -> None:
        incident, stack = self.incident, self.stack
        if incident.action == "fault":
            status, body = http_json("DELETE", stack.admin(incident.service, "/admin/faults"))
            if status != 200:
                self.fail(f"DELETE /admin/faults answered {status}: {body}")
            self._fault_on = False
            self.result.recovered = time.time()
            self.log("fault removed")
        elif incident.action == "stop":
            done = stack.supervisorctl("start", incident.program or "")
            self._fault_on = False
            self.result.recovered = time.time()
            if "started" not in done.stdout and "already started" not in done.stdout:
                self.fail(f"supervisorctl start {incident.program}: {done.stdout}{done.stderr}")
            self.log(f"{incident.program} started again")
        elif incident.action == "freeze":
            self._thaw()
            self._fault_on = False
            self.result.recovered = time.time()
            self.log(f"{incident.program} continued (SIGCONT)")
        elif incident.action == "kill":
            # Nothing to undo: supervisord restarts the process; "recovered" is when it runs again.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state, pid = stack.program_state(incident.program or "")
                if state == "RUNNING" and pid not in (None, self._killed_pid):
                    break
                time.sleep(0.5)
            else:
                self.fail(f"supervisord did not restart {incident.program} within 60 s")
            self.result.recovered = time.time()
            self.log(f"{incident.program} restarted by supervisord")
        self._wait_service_back()

    def _wait_service_back(self) -> None:
        services = ["user", "order"] if self.incident.service == "postgres" else [self.incident.service]
        deadline = time.monotonic() + 90
        while not all(http_ok(self.stack.admin(s, "/readyz")) for s in services):
            if time.monotonic() >= deadline:
                self.fail(f"{', '.join(services)} not ready 90 s after recovery")
                return
            time.sleep(0.5)
        self.result.restarted = time.time()
        self.log(f"{' and '.join(services)} ready again")

    def wait_resolved(self) -> None:
        r = self.result
        if r.fired is None:
            return  # nothing to resolve; the failure is already recorded
        self._wait(
            lambda: r.resolved is not None and all(s in r.resolved_notified for s in r.sinks),
            self.incident.resolve_timeout,
        )
        if r.resolved is None:
            self.fail(f"{r.alert}/{r.service} still active {self.incident.resolve_timeout:.0f} s after recovery")
        for sink in r.sinks:
            if sink not in r.resolved_notified:
                self.fail(f"no RESOLVED {sink} notification within {self.incident.resolve_timeout:.0f} s of recovery")

    def finish(self) -> Result:
        """Always called: removes the fault if it is still on, stops the drill's traffic."""
        if self._fault_on:
            self.log("cleaning up: removing the fault")
            try:
                if self.incident.action == "fault":
                    http_json("DELETE", self.stack.admin(self.incident.service, "/admin/faults"))
                elif self.incident.action == "stop":
                    self.stack.supervisorctl("start", self.incident.program or "")
                elif self.incident.action == "freeze":
                    self._thaw()
            except OSError as e:
                self.log(f"cleanup failed: {e}")
            self._fault_on = False
        self._stop_traffic()
        return self.result

    def run(self) -> Result:
        try:
            self.prepare()
            self.inject()
            self.wait_notified()
            self.recover()
            self.wait_resolved()
        except (DrillError, OSError, subprocess.SubprocessError) as e:
            self.fail(str(e))
        finally:
            self.finish()
        return self.result

    # -- overlapping a slow resolution -----------------------------------------------------------------------------

    def run_until_recovered(self) -> None:
        """prepare, inject, wait_notified, recover; the caller then calls resolve_in_background() or wait_resolved."""
        try:
            self.prepare()
            self.inject()
            self.wait_notified()
            self.recover()
        except (DrillError, OSError, subprocess.SubprocessError) as e:
            self.fail(str(e))
            self.finish()

    def resolve_in_background(self) -> None:
        self._record_others = False

        def body() -> None:
            try:
                self.wait_resolved()
            except (DrillError, OSError) as e:
                self.fail(str(e))
            finally:
                self.finish()

        self._background = threading.Thread(target=body, name=f"resolve-{self.incident.name}", daemon=True)
        self._background.start()

    def join_background(self, timeout: float | None = None) -> Result:
        if self._background is not None:
            self._background.join(timeout)
            if self._background.is_alive():
                self.fail("the background resolution watch did not finish")
        return self.result


def key(alert: dict) -> str:
    labels = alert.get("labels", {})
    return f"{labels.get('alertname', '?')}/{labels.get('service', '-')}"


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def describe(result: Result) -> str:
    r = result
    lines = [
        f"{r.incident}: {r.alert} ({r.severity}, service {r.service}, rule for: {r.rule_for or '?'}, "
        f"budget {r.budget:.0f} s)",
        f"  fault            {r.fault}",
        f"  fault start      {iso(r.fault_start) if r.fault_start else '—'}",
        f"  firing after     {seconds(r.firing_after)}",
    ]
    for sink in SINK_NAMES:
        if sink in r.sinks:
            lines.append(f"  {sink + ' after':<16} {seconds(r.notified_after(sink))}")
        else:
            got = r.notified_after(sink)
            lines.append(
                f"  {sink + ' after':<16} not expected ({r.severity})"
                + (f" — but one came after {got} s" if got is not None else ", none came")
            )
    lines.append(f"  recovered after  {seconds(r.after(r.recovered))} (fault removed / service restarted)")
    lines.append(
        f"  resolved         Prometheus {seconds(r.after(r.resolved, r.recovered))}, notified "
        f"{seconds(r.resolved_after)} after recovery"
    )
    if r.peak is not None:
        lines.append(f"  signal peak      {r.peak:.3g} (alert threshold {INCIDENTS[r.incident].threshold})")
    lines.append(f"  within budget    {'yes' if r.within_budget else 'NO'}")
    if r.other_alerts:
        lines.append(f"  also fired       {', '.join(r.other_alerts)}")
    lines.append(f"  verdict          {'OK' if r.ok else 'FAILED: ' + '; '.join(r.failures)}")
    return "\n".join(lines)


def list_incidents() -> str:
    lines = [f"{'incident':<15} {'alert':<20} {'severity':<9} {'sinks':<12} {'budget':>6}  fault"]
    for i in INCIDENTS.values():
        lines.append(
            f"{i.name:<15} {i.alert:<20} {i.severity:<9} {'+'.join(i.sinks):<12} {i.budget:>5.0f}s  "
            f"{i.describe_fault()}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="incident.py",
        description="Inject one real incident into the running Vigie stack and time its alert and notifications.",
        epilog="Incidents:\n" + list_incidents() + "\n\nThe stack: VIGIE_STATE_DIR and VIGIE_*_PORT, as for "
        "deploy/local/vigie-local.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the incident (see below)")
    parser.add_argument("--list", action="store_true", help="list the incidents and exit")
    parser.add_argument(
        "--traffic-rate",
        type=float,
        help="req/s the drill sends to the faulted service, for the incidents that need traffic "
        "(default: the incident's, 1-4; 0: none, rely on the platform's load generator)",
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=360.0,
        help="seconds to wait for the same alert to clear before injecting (default 360)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.list:
        print(list_incidents())
        return 0
    if not args.name:
        parser.error("NAME is missing (e.g. make incident NAME=slow-api)")
    if args.name not in INCIDENTS:
        parser.error(f"unknown incident {args.name!r}; one of: {', '.join(INCIDENTS)}")
    if args.traffic_rate is not None and not 0 <= args.traffic_rate <= 50:
        parser.error("--traffic-rate must be in [0, 50]")
    if args.settle_timeout < 0:
        parser.error("--settle-timeout must be >= 0")
    try:
        stack = Stack.from_env()
    except DrillError as e:
        parser.error(str(e))
    # SIGTERM ends the drill like Ctrl-C does: through the finally blocks that remove the fault.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    drill = Drill(stack, INCIDENTS[args.name], traffic_rate=args.traffic_rate, settle_timeout=args.settle_timeout)
    try:
        result = drill.run()
    except KeyboardInterrupt:
        drill.finish()
        print("interrupted; the fault was removed", file=sys.stderr)
        return 130
    print()
    print(describe(result))
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
