#!/usr/bin/env python3
"""Administration of the centralised logs' OpenSearch (or Elasticsearch): the index template and the retention job.

  setup     --url URL [--wait SECONDS]
      waits until the cluster is yellow or green, then PUTs the composable index template
      platform/logging/opensearch/vigie-logs-template.json as _index_template/vigie-logs (idempotent).
  retention --url URL --days 30 [--today YYYY-MM-DD] [--dry-run] [--every SECONDS] [--metrics-file PATH]
      deletes the daily indices vigie-logs-YYYY.MM.DD older than DAYS days.

Retention, precisely: with D = DAYS and T = today (UTC, or --today), the index of day X is deleted when X < T - D and
kept when X >= T - D. With 30 days on 2025-03-31, vigie-logs-2025.03.01 (T - 30) stays and vigie-logs-2025.02.28
(T - 31) goes. The index of a day holds that day's lines from 00:00 to 24:00 UTC, so every line younger than D days
is kept (a line written 29 days 23 hours ago is in the index of T - 30 or T - 29), and a line is deleted once it is
between D and D + 1 days old. Only names matching exactly vigie-logs-YYYY.MM.DD with a real calendar date are ever
considered; any other index (other-2020.01.01, vigie-logs-notadate, vigie-logs-2025.02.30, system indices) is never
touched. Indices are deleted one by one by exact name (the server may set action.destructive_requires_name).

Each deletion (or, with --dry-run, each deletion that would happen) is one JSON line on stdout; so is the summary of
every run and every error. With --every SECONDS the job runs forever (a supervisord program): an unreachable or
failing server is logged and retried within a minute; SIGTERM or SIGINT ends it with status 0. Without --every, one
run: status 0 when it succeeded, 1 when it failed. Bad arguments: a message and status 2.

--metrics-file PATH is rewritten atomically after every run in the Prometheus text format, for node_exporter's
textfile collector:
  vigie_log_retention_last_success_timestamp_seconds   Unix time of the last successful run (0: none yet)
  vigie_log_retention_deleted_indices_total            indices deleted (dry runs delete none)
  vigie_log_retention_runs_total{result="ok|error"}    runs, by result
The counters continue from the values already in PATH, so one-shot runs (cron) accumulate like the loop does.

Python 3 standard library only. A URL may carry user:password@ for HTTP basic authentication.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

TEMPLATE_NAME = "vigie-logs"
TEMPLATE_FILE = Path(__file__).resolve().parent / "opensearch" / "vigie-logs-template.json"
INDEX_PREFIX = "vigie-logs-"
INDEX_PATTERN = re.compile(r"vigie-logs-(\d{4})\.(\d{2})\.(\d{2})")
SERVICE_NAME = "log-retention"


class AdminError(Exception):
    """A failure talking to the cluster, with a message fit for an operator."""


# ---------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------

# With --every: how soon a failed run is tried again.
RETRY_AFTER_FAILURE_SECONDS = 60.0


def parse_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"'{text}' is not an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"'{text}': {e}") from None
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"'{text}': no query or fragment expected")
    return text.rstrip("/")


def parse_day(text: str) -> dt.date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"'{text}': {e}") from None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def seconds(text: str, *, positive: bool) -> float:
    """A finite number of seconds, > 0 when `positive`, else >= 0 (argparse types below)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not (value > 0 if positive else value >= 0) or value == float("inf"):
        wanted = "a positive number of seconds" if positive else "a number of seconds >= 0"
        raise argparse.ArgumentTypeError(f"{text} is not {wanted}")
    return value


def positive_seconds(text: str) -> float:
    return seconds(text, positive=True)


def non_negative_seconds(text: str) -> float:
    return seconds(text, positive=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opensearch_admin.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{setup,retention}")

    setup = commands.add_parser("setup", help="wait for the cluster, install the vigie-logs index template")
    setup.add_argument("--url", type=parse_url, required=True, help="cluster URL, e.g. http://127.0.0.1:9200")
    setup.add_argument(
        "--wait",
        type=non_negative_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for a yellow or green cluster (default: 60)",
    )
    setup.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each HTTP request (default: 10)",
    )

    retention = commands.add_parser("retention", help="delete the daily vigie-logs indices older than --days")
    retention.add_argument("--url", type=parse_url, required=True, help="cluster URL, e.g. http://127.0.0.1:9200")
    retention.add_argument(
        "--days",
        type=positive_int,
        required=True,
        help="days kept: the index of day X is deleted when X < today - DAYS",
    )
    retention.add_argument(
        "--today",
        type=parse_day,
        metavar="YYYY-MM-DD",
        help="the day taken as today (default: the current UTC date, read at every run)",
    )
    retention.add_argument("--dry-run", action="store_true", help="log what would be deleted, delete nothing")
    retention.add_argument(
        "--every", type=positive_seconds, metavar="SECONDS", help="run forever, once every SECONDS (default: run once)"
    )
    retention.add_argument(
        "--metrics-file", type=Path, metavar="PATH", help="Prometheus textfile to rewrite after every run"
    )
    retention.add_argument(
        "--timeout",
        type=positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="deadline of each HTTP request (default: 10)",
    )
    return parser


# ---------------------------------------------------------------------------------------------------------------
# The cluster's REST API
# ---------------------------------------------------------------------------------------------------------------


class Cluster:
    def __init__(self, url: str, timeout: float):
        parts = urllib.parse.urlsplit(url)
        self.headers = {"Accept": "application/json"}
        if parts.username is not None:
            credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            netloc = host + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        self.base = urllib.parse.urlunsplit(parts).rstrip("/")
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: object | None = None, ok: tuple[int, ...] = (200,)
    ) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        where = f"{method} {self.base}{path}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, text = response.status, response.read()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise AdminError(f"{where}: {reason}") from None
        if status not in ok:
            raise AdminError(f"{where}: HTTP {status}: {text[:500].decode(errors='replace')}")
        try:
            return status, json.loads(text) if text else None
        except ValueError:
            raise AdminError(f"{where}: HTTP {status} but the body is not JSON: {text[:200]!r}") from None

    def health(self) -> str:
        _, body = self.request("GET", "/_cluster/health")
        if not isinstance(body, dict) or "status" not in body:
            raise AdminError(f"GET {self.base}/_cluster/health: no status in {body!r}")
        return str(body["status"])

    def indices(self, pattern: str) -> list[str]:
        """Names of the indices matching pattern, open or closed, hidden or not."""
        _, body = self.request(
            "GET", f"/_cat/indices/{urllib.parse.quote(pattern)}?format=json&h=index&expand_wildcards=all"
        )
        if not isinstance(body, list):
            raise AdminError(f"GET {self.base}/_cat/indices: expected a list, got {body!r}")
        return sorted(str(row["index"]) for row in body)

    def delete_index(self, name: str) -> bool:
        """Deletes one index by exact name; False when it was already gone."""
        status, _ = self.request("DELETE", "/" + urllib.parse.quote(name, safe=""), ok=(200, 404))
        return status == 200


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------


def log(level: str, message: str, **fields: object) -> None:
    """One JSON line on stdout, in the services' ECS shape."""
    now = dt.datetime.now(dt.UTC)
    line = {
        "@timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "log.level": level,
        "service.name": SERVICE_NAME,
        "message": message,
        **fields,
    }
    print(json.dumps(line, separators=(",", ":")), flush=True)


class Metrics:
    """The job's counters, rendered atomically into a node_exporter textfile."""

    _sample = re.compile(r'^(vigie_log_retention_[a-z_]+)(\{result="(ok|error)"\})? ([0-9.eE+-]+)$')

    def __init__(self, path: Path | None):
        self.path = path
        self.last_success = 0.0
        self.deleted = 0
        self.runs = {"ok": 0, "error": 0}
        if path is not None:
            self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        except OSError as e:
            raise AdminError(f"cannot read {self.path}: {e}") from None
        for line in text.splitlines():
            match = self._sample.match(line)
            if not match:
                continue
            name, _, result, value = match.groups()
            try:
                number = float(value)
            except ValueError:
                continue
            if name == "vigie_log_retention_last_success_timestamp_seconds":
                self.last_success = number
            elif name == "vigie_log_retention_deleted_indices_total":
                self.deleted = int(number)
            elif name == "vigie_log_retention_runs_total" and result:
                self.runs[result] = int(number)

    def render(self) -> str:
        return "".join(
            [
                "# HELP vigie_log_retention_last_success_timestamp_seconds"
                " Unix time of the last retention run that succeeded (0: none yet).\n",
                "# TYPE vigie_log_retention_last_success_timestamp_seconds gauge\n",
                f"vigie_log_retention_last_success_timestamp_seconds {self.last_success:.3f}\n",
                "# HELP vigie_log_retention_deleted_indices_total Log indices deleted by the retention job.\n",
                "# TYPE vigie_log_retention_deleted_indices_total counter\n",
                f"vigie_log_retention_deleted_indices_total {self.deleted}\n",
                "# HELP vigie_log_retention_runs_total Retention runs, by result.\n",
                "# TYPE vigie_log_retention_runs_total counter\n",
                f'vigie_log_retention_runs_total{{result="ok"}} {self.runs["ok"]}\n',
                f'vigie_log_retention_runs_total{{result="error"}} {self.runs["error"]}\n',
            ]
        )

    def write(self) -> None:
        if self.path is None:
            return
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(self.render())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)  # the collector reads the old file or the new one, never half of one
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise


# ---------------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------------


def index_day(name: str) -> dt.date | None:
    """The day of a vigie-logs-YYYY.MM.DD index; None for any other name (those are never touched)."""
    match = INDEX_PATTERN.fullmatch(name)
    if not match:
        return None
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def expired(names: list[str], today: dt.date, days: int) -> list[tuple[str, dt.date]]:
    """The indices to delete: day < today - days. The index of today - days itself is kept."""
    cutoff = today - dt.timedelta(days=days)
    found = ((name, index_day(name)) for name in names)
    return sorted((name, day) for name, day in found if day is not None and day < cutoff)


def setup(args: argparse.Namespace) -> int:
    try:
        template = json.loads(TEMPLATE_FILE.read_text())
    except (OSError, ValueError) as e:
        print(f"opensearch_admin.py: error: cannot read the template {TEMPLATE_FILE}: {e}", file=sys.stderr)
        return 1
    cluster = Cluster(args.url, args.timeout)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            status = cluster.health()
            if status in ("yellow", "green"):
                break
            problem = f"cluster health is {status}"
        except AdminError as e:
            problem = str(e)
        if time.monotonic() >= deadline:
            print(
                f"opensearch_admin.py: error: the cluster was not yellow or green within {args.wait:g} s: {problem}",
                file=sys.stderr,
            )
            return 1
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())) or 0.1)
    try:
        cluster.request("PUT", f"/_index_template/{TEMPLATE_NAME}", template)
    except AdminError as e:
        print(f"opensearch_admin.py: error: installing the index template failed: {e}", file=sys.stderr)
        return 1
    log(
        "info",
        "index template installed",
        **{
            "event.action": "template-installed",
            "cluster.health": status,
            "template.name": TEMPLATE_NAME,
            "template.patterns": template.get("index_patterns"),
        },
    )
    return 0


def retention_run(cluster: Cluster, args: argparse.Namespace, metrics: Metrics) -> bool:
    today = args.today or dt.datetime.now(dt.UTC).date()
    try:
        names = cluster.indices(INDEX_PREFIX + "*")
        doomed = expired(names, today, args.days)
        deleted = 0
        for name, day in doomed:
            if args.dry_run:
                log(
                    "info",
                    "index would be deleted (dry run)",
                    **{
                        "event.action": "index-delete-dry-run",
                        "index.name": name,
                        "index.day": day.isoformat(),
                        "retention.days": args.days,
                        "retention.today": today.isoformat(),
                    },
                )
                continue
            if cluster.delete_index(name):
                deleted += 1
                metrics.deleted += 1
                log(
                    "info",
                    "index deleted",
                    **{
                        "event.action": "index-deleted",
                        "index.name": name,
                        "index.day": day.isoformat(),
                        "retention.days": args.days,
                        "retention.today": today.isoformat(),
                    },
                )
            else:
                log("info", "index already gone", **{"event.action": "index-absent", "index.name": name})
    except AdminError as e:
        metrics.runs["error"] += 1
        log(
            "error",
            "retention run failed",
            **{"event.action": "retention-run", "event.outcome": "failure", "error.message": str(e)},
        )
        return False
    metrics.runs["ok"] += 1
    metrics.last_success = time.time()
    log(
        "info",
        "retention run done",
        **{
            "event.action": "retention-run",
            "event.outcome": "success",
            "retention.days": args.days,
            "retention.today": today.isoformat(),
            "retention.cutoff": (today - dt.timedelta(days=args.days)).isoformat(),
            "indices.deleted": deleted,
            "indices.expired": len(doomed),
            "dry_run": args.dry_run,
        },
    )
    return True


def retention(args: argparse.Namespace) -> int:
    try:
        metrics = Metrics(args.metrics_file)
    except AdminError as e:
        print(f"opensearch_admin.py: error: {e}", file=sys.stderr)
        return 1
    cluster = Cluster(args.url, args.timeout)
    stop = threading.Event()
    if args.every:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    while True:
        ok = retention_run(cluster, args, metrics)
        try:
            metrics.write()
        except OSError as e:
            log("error", "metrics file not written", **{"error.message": f"{args.metrics_file}: {e}"})
            ok = False
        if not args.every:
            return 0 if ok else 1
        # A failed run (OpenSearch still starting, or away) is retried within a minute, not at the next tick.
        if stop.wait(args.every if ok else min(args.every, RETRY_AFTER_FAILURE_SECONDS)):
            log("info", "stopped", **{"event.action": "stopped"})
            return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "setup":
        return setup(args)
    return retention(args)


if __name__ == "__main__":
    sys.exit(main())
