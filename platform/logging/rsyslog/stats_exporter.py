#!/usr/bin/python3
"""Turns rsyslog's impstats counters into Prometheus metrics for node_exporter's textfile collector.

rsyslog runs this program through omprog and writes one impstats JSON object per line on its stdin every interval
(see vigie-shipper.conf). After each line the latest value of every counter is written, atomically (temporary file
then rename), to METRICS_DIR/log_shipper.prom, which node_exporter serves (`--collector.textfile.directory`).
The community rsyslog_exporter does the same but cannot be fetched here (the Go proxy refuses it), hence this file.

Metrics (every counter is rsyslog's own, cumulative since the shipper started):
  rsyslog_lines_read_total{service}                   lines read from each service's log file (the dyn_stats
                                                      bucket lines_read of vigie-shipper.conf: Debian's imfile
                                                      reports no per-file counter)
  rsyslog_action_processed_total{action}              messages handed to an action (opensearch, stats)
  rsyslog_action_failed_total{action}                 messages an action failed on
  rsyslog_action_suspended_total{action}              times an action was suspended (its target unreachable)
  rsyslog_queue_size{queue}                           messages waiting in a queue now: the shipping lag
  rsyslog_queue_discarded_total{queue,reason}         messages a full queue threw away: lost lines
  rsyslog_opensearch_submitted_total                  lines sent to OpenSearch (a retried line counts again)
  rsyslog_opensearch_failed_requests_total{reason}    failed requests: http (no answer), checkConn (OpenSearch
                                                      unreachable while retrying), es (an error answer: refused
                                                      documents, kept in refused.jsonl)
  rsyslog_stats_last_timestamp_seconds                when rsyslog last reported (a stalled shipper stops it)

Stdlib only. Exits 0 when rsyslog closes its stdin (shipper stopping).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

OUTPUT_NAME = "log_shipper.prom"

# (metric, help, type) for every metric written; the label sets come from the stats themselves.
METRICS = {
    "rsyslog_lines_read_total": ("Lines read from each service's log file.", "counter"),
    "rsyslog_action_processed_total": ("Messages handed to each action.", "counter"),
    "rsyslog_action_failed_total": ("Messages each action failed on.", "counter"),
    "rsyslog_action_suspended_total": (
        "Times each action was suspended because its target was unreachable.",
        "counter",
    ),
    "rsyslog_queue_size": ("Messages waiting in each queue now.", "gauge"),
    "rsyslog_queue_discarded_total": ("Messages a full queue discarded.", "counter"),
    "rsyslog_opensearch_submitted_total": ("Lines sent to OpenSearch (a retried line counts again).", "counter"),
    "rsyslog_opensearch_failed_requests_total": ("Bulk requests to OpenSearch without a usable answer.", "counter"),
    "rsyslog_stats_last_timestamp_seconds": ("Unix time of rsyslog's last statistics report.", "gauge"),
}


def samples_of(stat: dict) -> list[tuple[str, dict[str, str], float]]:
    """The samples one impstats object gives: (metric, labels, value). Unknown origins give none."""
    origin, name = stat.get("origin", ""), str(stat.get("name", ""))

    def number(key: str) -> float:
        value = stat.get(key, 0)
        return float(value) if isinstance(value, (int, float)) else 0.0

    if origin == "dynstats.bucket" and name == "lines_read":
        values = stat.get("values", {})
        return [
            ("rsyslog_lines_read_total", {"service": str(service)}, float(count))
            for service, count in values.items()
            if isinstance(count, (int, float))
        ]
    if origin == "core.action":
        return [
            ("rsyslog_action_processed_total", {"action": name}, number("processed")),
            ("rsyslog_action_failed_total", {"action": name}, number("failed")),
            ("rsyslog_action_suspended_total", {"action": name}, number("suspended")),
        ]
    if origin == "core.queue":
        return [
            ("rsyslog_queue_size", {"queue": name}, number("size")),
            ("rsyslog_queue_discarded_total", {"queue": name, "reason": "full"}, number("discarded.full")),
            ("rsyslog_queue_discarded_total", {"queue": name, "reason": "not_fitting"}, number("discarded.nf")),
        ]
    if origin == "omelasticsearch":
        samples = [("rsyslog_opensearch_submitted_total", {}, number("submitted"))]
        for key in ("http", "httprequests", "checkConn", "es"):
            samples.append(("rsyslog_opensearch_failed_requests_total", {"reason": key}, number(f"failed.{key}")))
        return samples
    return []


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(latest: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> str:
    lines = []
    for metric, (help_text, kind) in METRICS.items():
        series = sorted((labels, value) for (name, labels), value in latest.items() if name == metric)
        if not series:
            continue
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        for labels, value in series:
            label_text = ",".join(f'{key}="{escape(val)}"' for key, val in labels)
            lines.append(f"{metric}{{{label_text}}} {value:.17g}" if label_text else f"{metric} {value:.17g}")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--metrics-dir",
        type=Path,
        default=os.environ.get("VIGIE_METRICS_DIR"),
        help="node_exporter's textfile directory (default: $VIGIE_METRICS_DIR)",
    )
    args = parser.parse_args()
    if args.metrics_dir is None or not args.metrics_dir.is_dir():
        parser.error(f"--metrics-dir must be an existing directory (got {args.metrics_dir})")
    output = args.metrics_dir / OUTPUT_NAME
    latest: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in sys.stdin:
        try:
            stat = json.loads(line)
        except json.JSONDecodeError:
            continue  # impstats writes only JSON; anything else is not ours to interpret
        if not isinstance(stat, dict):
            continue
        for metric, labels, value in samples_of(stat):
            latest[(metric, tuple(sorted(labels.items())))] = value
        latest[("rsyslog_stats_last_timestamp_seconds", ())] = time.time()
        write_atomically(output, render(latest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
