#!/usr/bin/python3
"""`make drill`: every incident of ops/incidents/incident.py in turn on the running stack, then the drill table in
docs/operations-report.md (between its BEGIN/END markers; the rest of the report is left as it is).

    drill.py                                  # all incidents, table into docs/operations-report.md
    drill.py --only database-down,slow-api    # some of them
    drill.py --no-report --json results.json  # keep the report as it is

Incidents run one after another, each waiting for its own alert to be quiet first. One overlap: service-killed
runs first and its resolution (ServiceRestarted looks at a 5 minute window of process start times) is watched in
the background while the next drills run, which saves five idle minutes. Exit status 0 when every drill met its
contract, 1 otherwise, 2 for bad arguments. Takes about 20 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import incident as drills  # noqa: E402 (after the path tweak)

REPO = drills.REPO
REPORT = REPO / "docs" / "operations-report.md"
BEGIN = "<!-- BEGIN drill table: written by `make drill` (ops/incidents/drill.py); do not edit by hand -->"
END = "<!-- END drill table -->"
# service-killed first: its resolution is watched in the background while the others run. The outages last: the
# 503s they cause linger in the 1 minute error-ratio windows, and no later drill should have to wait for that.
ORDER = [
    "service-killed",
    "slow-api",
    "5xx-burst",
    "slow-queries",
    "memory-leak",
    "cpu-burn",
    "database-no-new-connections",
    "database-hung",
    "database-down",
    "service-down",
]
BACKGROUND_RESOLUTION = {"service-killed"}
PAUSE_BETWEEN = 5.0  # seconds: lets the previous drill's traffic and restarts settle


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = re.sub(r"\s+", " ", line.split(":", 1)[1].strip())
                break
    except OSError:
        pass
    ram = "? GiB"
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        ram = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores ({cpu}), {ram} RAM, Linux {platform.release()}"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()

    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"`{sha}`" + (" (with uncommitted changes in the working tree)" if dirty else "")


def cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def sink_cell(result: drills.Result, sink: str) -> str:
    if sink in result.sinks:
        return cell(result.notified_after(sink))
    got = result.notified_after(sink)
    return "not expected" if got is None else f"**unexpected** ({got:.1f} s)"


def table(results: list[drills.Result], started: float, loadgen: str) -> str:
    when = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    ok = sum(r.ok for r in results)
    lines = [
        BEGIN,
        f"Run of {when} on {machine()}; commit {commit()}. Stack: `make up` (deploy/local; Prometheus scrapes and "
        f"evaluates every 5 s, Alertmanager group_wait 5 s, group_interval 30 s); background traffic: {loadgen}. "
        f"Result: **{ok} of {len(results)} drills met their contract.**",
        "",
        "| incident | alert (severity, `for`) | fault start (UTC) | firing after | e-mail after | Slack after "
        "| resolved after | within budget? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        start = datetime.fromtimestamp(r.fault_start, UTC).strftime("%H:%M:%S") if r.fault_start else "—"
        verdict = ("yes" if r.within_budget else "**no**") + f" (< {r.budget:.0f} s)"
        if r.within_budget and not r.ok:
            verdict += ", but see below"
        lines.append(
            f"| {r.incident} | {r.alert} ({r.severity}, {r.rule_for or '?'}) | {start} "
            f"| {cell(r.firing_after)} | {sink_cell(r, 'email')} | {sink_cell(r, 'slack')} "
            f"| {cell(r.resolved_after)} | {verdict} |"
        )
    lines += [
        "",
        'Firing, e-mail and Slack times count from the start of the fault; "resolved after" counts from its '
        "removal (for service-killed: from the restart by supervisord) to the last RESOLVED notification. E-mail "
        "times are the Maildir file's mtime; Prometheus and Slack times were observed by polling every second.",
        "",
    ]
    details = []
    for r in results:
        notes = []
        resolved_prom = r.after(r.resolved, r.recovered)
        if resolved_prom is not None:
            notes.append(f"left Prometheus {resolved_prom:.1f} s after recovery")
        if r.other_alerts:
            notes.append("also fired: " + ", ".join(r.other_alerts))
        if r.failures:
            notes.append("**failed**: " + "; ".join(r.failures))
        if notes:
            details.append(f"- {r.incident}: " + "; ".join(notes) + ".")
    if details:
        lines += ["Per drill:", "", *details, ""]
    lines.append(END)
    return "\n".join(lines)


def write_report(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    path.write_text(text, encoding="utf-8")


def loadgen_state(stack: drills.Stack) -> str:
    state, _ = stack.program_state("loadgen")
    if state == "RUNNING":
        return "ops/loadgen/loadgen.py under supervisord (10 req/s mixed, through the gateway when it runs)"
    return "none from the platform (loadgen not running); each latency/error drill drove its own"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="drill.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated incidents (default: all, in the drill order)")
    parser.add_argument("--report", type=Path, default=REPORT, help=f"report to update (default {REPORT})")
    parser.add_argument("--no-report", action="store_true", help="do not touch the report")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every result as JSON")
    args = parser.parse_args(argv)
    names = ORDER
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in drills.INCIDENTS]
        if unknown or not names:
            parser.error(
                f"unknown incident(s) {', '.join(unknown) or '(none given)'}; one of: {', '.join(drills.INCIDENTS)}"
            )
        names = [n for n in ORDER if n in names]
    try:
        stack = drills.Stack.from_env()
    except drills.DrillError as e:
        parser.error(str(e))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.time()
    background_text = loadgen_state(stack)
    results: list[drills.Result] = []
    background: list[drills.Drill] = []
    current: drills.Drill | None = None
    try:
        for index, name in enumerate(names):
            if index:
                time.sleep(PAUSE_BETWEEN)
            current = drills.Drill(stack, drills.INCIDENTS[name])
            if name in BACKGROUND_RESOLUTION and len(names) > 1:
                current.run_until_recovered()
                if current.result.recovered is not None:
                    current.log("watching its resolution in the background while the next drills run")
                    current.resolve_in_background()
                background.append(current)
            else:
                results.append(current.run())
            current = None
        for drill in background:
            drill.log("waiting for the background resolution watch")
            drill.join_background(timeout=drill.incident.resolve_timeout + 60)
    except KeyboardInterrupt:
        if current is not None:
            current.finish()
        for drill in background:
            drill.finish()
        print("interrupted; faults removed, report not written", file=sys.stderr)
        return 130
    # The table follows the drill order, background ones included.
    by_name = {r.incident: r for r in results + [d.result for d in background]}
    ordered = [by_name[n] for n in names]
    print()
    for r in ordered:
        print(drills.describe(r))
        print()
    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in ordered], indent=2) + "\n", encoding="utf-8")
    if not args.no_report:
        write_report(args.report, table(ordered, started, background_text))
        print(f"drill table written to {args.report}")
    failed = [r.incident for r in ordered if not r.ok]
    print(
        f"{len(ordered) - len(failed)} of {len(ordered)} drills met their contract"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
