#!/usr/bin/env python3
"""Vigie's Grafana dashboards: the one definition they are generated from.

Writes platform/grafana/dashboards/*.json (committed; Grafana loads them through provisioning/dashboards/vigie.yml):
  - one dashboard per service (gateway, user, order), all from `service_dashboard()` and the SERVICES table;
  - the overview (every service, SLO compliance and error budget left, firing alerts);
  - PostgreSQL (exporter's view and the services' view of their pools);
  - the host (node exporter: CPU, memory, disk, network);
  - the log and trace pipelines (shipper, OpenSearch delivery, retention job, span export, Jaeger).

Panels read the recording rules of platform/prometheus/rules/ wherever one exists, so a dashboard shows exactly what
the alerts evaluate. Built with grafana-foundation-sdk (pinned in tools/python-requirements.txt), whose typed
builders reject unknown options at generation time.

    .cache/venv/bin/python platform/grafana/dashboards.py          # regenerate
    .cache/venv/bin/python platform/grafana/dashboards.py --check  # exit 1 when the committed JSON is stale
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT_DIR = HERE / "dashboards"
VENV_PYTHON = REPO / ".cache" / "venv" / "bin" / "python"

try:
    from grafana_foundation_sdk.builders import common as cb
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.builders import heatmap, stat, statetimeline, table, timeseries
    from grafana_foundation_sdk.builders import prometheus as prom
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as cm
    from grafana_foundation_sdk.models import dashboard as dm
    from grafana_foundation_sdk.models import heatmap as hm
    from grafana_foundation_sdk.models import prometheus as pm
except ImportError:  # pragma: no cover - only without the venv
    # The SDK lives in the project venv; re-run there rather than ask every caller to remember it.
    if VENV_PYTHON.exists() and Path(sys.executable).resolve() != VENV_PYTHON.resolve():
        os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])
    sys.exit("dashboards.py: grafana-foundation-sdk is missing: run tools/install-deps.sh --python-only")

# ---------------------------------------------------------------------------------------------------------------
# What is supervised
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    role: str
    database: str | None  # the database it owns through its pool, None when it has none
    upstreams: tuple[str, ...]  # services it calls


SERVICES = (
    Service(
        "gateway",
        "Gateway",
        "the only public entry: routing, JWT verification, rate limiting, retries, circuit breaking, fan-out",
        None,
        ("user", "order"),
    ),
    Service("user", "User service", "users, sign-up and login (JWT issuer), argon2id password hashing", "users", ()),
    Service(
        "order",
        "Order service",
        "orders, their status state machine and idempotency keys; checks users through the user service",
        "orders",
        ("user",),
    ),
)
SERVICE_JOBS = "|".join(s.name for s in SERVICES)

# Thresholds shared with the alerting rules (platform/prometheus/rules/*.yml): a panel turns red where an alert fires.
LATENCY_P95_LIMIT = 1.0  # ApiLatencyHigh
ERROR_RATIO_LIMIT = 0.05  # ApiErrorRateHigh
CPU_LIMIT = 0.8  # ProcessCpuHigh, in cores
MEMORY_LIMIT = 500 * 1024 * 1024  # ProcessMemoryHigh
SLOW_QUERY_LIMIT = 0.5  # DatabaseSlowQueries
LONG_STATEMENT_LIMIT = 20  # DatabaseLongRunningQuery, seconds
DISK_FREE_WARNING, DISK_FREE_CRITICAL = 0.15, 0.05  # HostDiskSpaceLow / HostDiskSpaceCritical
SHIPPER_SILENT_LIMIT = 60  # LogShipperDown: seconds since rsyslog's last statistics report
RETENTION_STALE_LIMIT = 2 * 3600 + 600  # LogRetentionFailing: seconds since the retention job's last success

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["vigie"]

# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Q:
    """One PromQL target: a range query by default, instant for tables and single values."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False  # format as a table (instant tables)
    heatmap: bool = False  # format as heatmap buckets


def _target(q: Q, ref_id: str) -> prom.Dataquery:
    target = prom.Dataquery().expr(q.expr).ref_id(ref_id).datasource(DATASOURCE)
    if q.legend:
        target = target.legend_format(q.legend)
    target = target.instant() if q.instant else target.range()
    if q.table:
        target = target.format(pm.PromQueryFormat.TABLE)
    elif q.heatmap:
        target = target.format(pm.PromQueryFormat.HEATMAP)
    return target


def _with_targets(panel, queries: tuple[Q, ...]):
    for index, q in enumerate(queries):
        panel = panel.with_target(_target(q, chr(ord("A") + index)))
    return panel


def _thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


# Green below a limit, then orange, then red (value None is the base step).
def _rising(warning: float, critical: float) -> db.ThresholdsConfig:
    return _thresholds((None, "green"), (warning, "orange"), (critical, "red"))


def _falling(critical: float, warning: float) -> db.ThresholdsConfig:
    return _thresholds((None, "red"), (critical, "orange"), (warning, "green"))


def _legend() -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.TABLE)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max", "lastNotNull"])
    )


def ts(
    title: str,
    description: str,
    *queries: Q,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    limit: db.ThresholdsConfig | None = None,
    stack: bool = False,
    minimum: float | None = 0,
    maximum: float | None = None,
) -> timeseries.Panel:
    """A time series; `limit` draws the alert threshold as a dashed line."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .legend(_legend())
        .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if limit is not None:
        panel = panel.thresholds(limit).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    if stack:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)).fill_opacity(40)
    return _with_targets(panel, queries)


def single(
    title: str,
    description: str,
    q: Q,
    unit: str = "short",
    width: int = 4,
    height: int = 4,
    thresholds: db.ThresholdsConfig | None = None,
    mappings: list | None = None,
    decimals: float | None = None,
) -> stat.Panel:
    """A stat: the last value of each series, coloured by its thresholds."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(cm.BigValueGraphMode.AREA)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds or _thresholds((None, "blue")))
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return _with_targets(panel, (q,))


def states(
    title: str, description: str, *queries: Q, mapping: dict[str, tuple[str, str]], width: int = 12, height: int = 6
) -> statetimeline.Panel:
    """A state timeline for 0/1 gauges (up, ready, probes, fault switches)."""
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .line_width(0)
        .fill_opacity(80)
        .mappings([_value_map(mapping)])
        .thresholds(_thresholds((None, "blue")))
    )
    return _with_targets(panel, queries)


def grid(
    title: str,
    description: str,
    *queries: Q,
    width: int = 24,
    height: int = 6,
    transformations: list[dm.DataTransformerConfig] | None = None,
) -> table.Panel:
    """A table of instant results, one row per series."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(width)
        .height(height)
        .show_header(True)
    )
    for transformation in transformations or []:
        panel = panel.with_transformation(transformation)
    return _with_targets(panel, queries)


def _value_map(mapping: dict[str, tuple[str, str]]) -> dm.ValueMap:
    return dm.ValueMap(
        options={
            value: dm.ValueMappingResult(text=text, color=color, index=index)
            for index, (value, (text, color)) in enumerate(mapping.items())
        }
    )


UP_DOWN = {"0": ("down", "red"), "1": ("up", "green")}
READY = {"0": ("not ready", "red"), "1": ("ready", "green")}
ON_OFF = {"0": ("off", "green"), "1": ("on", "orange")}


def new_dashboard(uid: str, title: str, description: str, *, tags: list[str], alerts: str) -> db.Dashboard:
    """The common frame: data source variable, links to the other Vigie dashboards, firing alerts as annotations."""
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS + tags)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .link(
            db.DashboardLink("Vigie")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(False)
            .keep_time(True)
        )
        .annotation(
            db.AnnotationQuery()
            .name("Firing alerts")
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color("red")
            .expr(alerts)
        )
    )


def finish(builder: db.Dashboard) -> dm.Dashboard:
    """Builds the dashboard and numbers its panels in layout order (Grafana wants unique ids)."""
    model = builder.build()
    for index, panel in enumerate(model.panels or [], start=1):
        panel.id_val = index
    return model


# ---------------------------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------------------------


def service_dashboard(s: Service) -> dm.Dashboard:
    sel = f'service="{s.name}"'
    d = new_dashboard(
        f"vigie-service-{s.name}",
        f"Vigie / {s.title}",
        f"The {s.name} service: {s.role}. Requests, errors, latency, saturation"
        f"{', database pool and queries' if s.database else ''}"
        f"{', upstream calls' if s.upstreams else ''} and the process.",
        tags=["service", s.name],
        alerts=f'ALERTS{{alertstate="firing", {sel}}}',
    )

    d = d.with_row(db.Row("Now"))
    d = d.with_panel(
        single(
            "Requests / s",
            "Requests answered per second over the last minute.",
            Q(f"service:http_server_requests:rate1m{{{sel}}}", s.name),
            unit="reqps",
        )
    )
    d = d.with_panel(
        single(
            "5xx ratio",
            f"Share of requests answered with a server error over the last minute; "
            f"ApiErrorRateHigh fires above {ERROR_RATIO_LIMIT:.0%}.",
            Q(f"service:http_server_requests_5xx:ratio_rate1m{{{sel}}}", s.name),
            unit="percentunit",
            decimals=2,
            thresholds=_rising(0.01, ERROR_RATIO_LIMIT),
        )
    )
    d = d.with_panel(
        single(
            "p95 latency",
            f"95th percentile of request duration over the last minute; "
            f"ApiLatencyHigh fires above {LATENCY_P95_LIMIT:g} s.",
            Q(f"service:http_server_request_duration_seconds:p95_rate1m{{{sel}}}", s.name),
            unit="s",
            thresholds=_rising(0.5, LATENCY_P95_LIMIT),
        )
    )
    d = d.with_panel(
        single(
            "Readiness",
            "The service's own readiness (its dependencies and drain state).",
            Q(f"service:service_ready:min{{{sel}}}", s.name),
            thresholds=_thresholds((None, "red"), (1, "green")),
            mappings=[_value_map(READY)],
        )
    )
    d = d.with_panel(
        single(
            "Restarts",
            "Process starts within the dashboard's time range (the process manager "
            "restarted it); ServiceRestarted fires on each.",
            Q(f"sum(changes(process_start_time_seconds{{{sel}}}[$__range]))", "restarts"),
            thresholds=_rising(1, 3),
        )
    )
    d = d.with_panel(
        single(
            "Uptime",
            "Time since the oldest instance started.",
            Q(f"max(service:process_uptime:seconds{{{sel}}})", "uptime"),
            unit="s",
        )
    )

    d = d.with_row(db.Row("Traffic and errors"))
    d = d.with_panel(
        ts(
            "Request rate by route",
            "Requests per second by route template and method.",
            Q(f"service_route:http_server_requests:rate1m{{{sel}}}", "{{method}} {{route}}"),
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Responses by status class",
            "Requests per second by status class (2xx, 4xx, 5xx).",
            Q(f"service_status_class:http_server_requests:rate1m{{{sel}}}", "{{status_class}}"),
            unit="reqps",
            width=8,
            stack=True,
        )
    )
    d = d.with_panel(
        ts(
            "Error ratios",
            f"Server errors (5xx, ApiErrorRateHigh above {ERROR_RATIO_LIMIT:.0%}) "
            "and client errors (4xx: bad input, auth failures, rate limiting) as a share of requests.",
            Q(f"service:http_server_requests_5xx:ratio_rate1m{{{sel}}}", "5xx"),
            Q(
                f'(sum(rate(http_server_requests_total{{{sel}, status_class="4xx"}}[$__rate_interval]))'
                f" or vector(0))\n/ sum(rate(http_server_requests_total{{{sel}}}[$__rate_interval]))",
                "4xx",
            ),
            unit="percentunit",
            width=8,
            limit=_thresholds((None, "transparent"), (ERROR_RATIO_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "5xx ratio by route",
            "Which route fails: server errors per route over the last minute.",
            Q(f"service_route:http_server_requests_5xx:ratio_rate1m{{{sel}}}", "{{method}} {{route}}"),
            unit="percentunit",
            width=24,
            height=7,
        )
    )

    d = d.with_row(db.Row("Latency"))
    d = d.with_panel(
        ts(
            "Latency percentiles",
            f"p50, p95 and p99 of request duration over the last minute; "
            f"ApiLatencyHigh fires when p95 stays above {LATENCY_P95_LIMIT:g} s.",
            Q(f"service:http_server_request_duration_seconds:p50_rate1m{{{sel}}}", "p50"),
            Q(f"service:http_server_request_duration_seconds:p95_rate1m{{{sel}}}", "p95"),
            Q(f"service:http_server_request_duration_seconds:p99_rate1m{{{sel}}}", "p99"),
            unit="s",
            width=8,
            limit=_thresholds((None, "transparent"), (LATENCY_P95_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "p95 latency by route",
            "Which route is slow.",
            Q(f"service_route:http_server_request_duration_seconds:p95_rate1m{{{sel}}}", "{{method}} {{route}}"),
            unit="s",
            width=8,
        )
    )
    d = d.with_panel(
        heatmap.Panel()
        .title("Latency distribution")
        .description("Requests per histogram bucket: where the bulk of requests sits and how long the tail is.")
        .datasource(DATASOURCE)
        .span(8)
        .height(8)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit("s"))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(hm.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
        )
        .with_target(
            _target(
                Q(
                    f"sum by (le) (increase(http_server_request_duration_seconds_bucket{{{sel}}}[$__rate_interval]))",
                    "{{le}}",
                    heatmap=True,
                ),
                "A",
            )
        )
    )

    d = d.with_row(db.Row("Saturation and process"))
    d = d.with_panel(
        ts(
            "In-flight requests",
            "Requests being served right now, all instances.",
            Q(f"service:http_server_active_requests:sum{{{sel}}}", "in flight"),
            width=6,
        )
    )
    d = d.with_panel(
        ts(
            "CPU",
            f"CPU used, in cores (100 % = one full core); ProcessCpuHigh fires above {CPU_LIMIT:.0%} for 30 s.",
            Q(f"service:process_cpu_seconds:rate1m{{{sel}}}", "{{instance}}"),
            unit="percentunit",
            width=6,
            limit=_thresholds((None, "transparent"), (CPU_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Resident memory",
            "Resident set size; ProcessMemoryHigh fires above 500 MiB for 1 min.",
            Q(f"process_resident_memory_bytes{{{sel}}}", "{{instance}}"),
            unit="bytes",
            width=6,
            limit=_thresholds((None, "transparent"), (MEMORY_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Open file descriptors",
            "Open descriptors as a share of the process limit (sockets, database connections, files).",
            Q(f"service:process_open_fds:ratio{{{sel}}}", "{{instance}}"),
            unit="percentunit",
            width=6,
            maximum=1,
        )
    )

    if s.database:
        d = d.with_row(db.Row(f"Database pool and queries ({s.database})"))
        d = d.with_panel(
            ts(
                "Pool connections",
                "Connections by state, and the pool's maximum.",
                Q(f"sum by (pool, state) (db_pool_connections{{{sel}}})", "{{pool}} {{state}}"),
                Q(f"sum by (pool) (db_pool_max_connections{{{sel}}})", "{{pool}} max"),
                width=6,
            )
        )
        d = d.with_panel(
            ts(
                "Pool utilisation",
                "Connections in use over the maximum; DatabasePoolSaturated "
                "fires at 90 % on average over a minute with requests waiting.",
                Q(f"service_pool:db_pool_utilisation:ratio{{{sel}}}", "{{pool}}"),
                unit="percentunit",
                width=6,
                maximum=1,
                limit=_thresholds((None, "transparent"), (0.9, "red")),
            )
        )
        d = d.with_panel(
            ts(
                "Waiting for a connection",
                "Requests queued for a connection, and the p95 time "
                "spent acquiring one (every acquisition counts, waiting or not).",
                Q(f"sum by (pool) (db_pool_waiting{{{sel}}})", "{{pool}} waiting"),
                Q(f"service_pool:db_pool_wait_duration_seconds:p95_rate1m{{{sel}}}", "{{pool}} p95 wait (s)"),
                width=6,
            )
        )
        d = d.with_panel(
            ts(
                "Connection errors",
                "Failed attempts to open a database connection per second.",
                Q(f"service_pool:db_connect_errors:rate1m{{{sel}}}", "{{pool}}"),
                unit="ops",
                width=6,
            )
        )
        d = d.with_panel(
            ts(
                "Query rate by query",
                "Statements per second by named query.",
                Q(f"service_query:db_queries:rate1m{{{sel}}}", "{{query}}"),
                unit="ops",
                width=8,
            )
        )
        d = d.with_panel(
            ts(
                "Query latency p95 by query",
                f"95th percentile per named query; DatabaseSlowQueries "
                f"fires above {SLOW_QUERY_LIMIT * 1000:.0f} ms for 1 min.",
                Q(f"service_query:db_query_duration_seconds:p95_rate1m{{{sel}}}", "{{query}}"),
                unit="s",
                width=8,
                limit=_thresholds((None, "transparent"), (SLOW_QUERY_LIMIT, "red")),
            )
        )
        d = d.with_panel(
            ts(
                "Query error ratio by query",
                "Statements that failed or timed out, per named query.",
                Q(f"service_query:db_query_errors:ratio_rate1m{{{sel}}}", "{{query}}"),
                unit="percentunit",
                width=8,
            )
        )

    if s.upstreams:
        d = d.with_row(db.Row(f"Calls to {', '.join(s.upstreams)}"))
        d = d.with_panel(
            ts(
                "Outbound request rate",
                "Calls per second to each upstream service.",
                Q(f"service_upstream:http_client_requests:rate1m{{{sel}}}", "{{upstream}}"),
                unit="reqps",
                width=8,
            )
        )
        d = d.with_panel(
            ts(
                "Outbound error ratio",
                "Calls answered 5xx or failed in transport (timeouts, refused "
                "connections, open circuit), per upstream.",
                Q(f"service_upstream:http_client_requests_errors:ratio_rate1m{{{sel}}}", "{{upstream}}"),
                unit="percentunit",
                width=8,
            )
        )
        d = d.with_panel(
            ts(
                "Outbound p95 latency",
                "95th percentile of calls to each upstream, as this service waits for them.",
                Q(f"service_upstream:http_client_request_duration_seconds:p95_rate1m{{{sel}}}", "{{upstream}}"),
                unit="s",
                width=8,
            )
        )

    d = d.with_row(db.Row("Availability and lifecycle"))
    d = d.with_panel(
        states(
            "Up, ready and probes",
            "Scraped (up), self-reported readiness, and the black-box "
            "probes: GET /readyz on the admin port and a TCP connect on the public port.",
            Q(f"service:up:min{{{sel}}}", "scraped"),
            Q(f"service:service_ready:min{{{sel}}}", "ready"),
            Q(f"service:probe_success:min{{{sel}}}", "probe {{probe}}"),
            mapping=UP_DOWN,
        )
    )
    d = d.with_panel(
        states(
            "Fault switches",
            "Admin fault switches (incident drills); FaultInjectionActive fires while one is on.",
            Q(f"max by (fault) (faults_active{{{sel}}})", "{{fault}}"),
            mapping=ON_OFF,
        )
    )
    d = d.with_panel(
        ts(
            "Process starts",
            "Restarts within the last 5 minutes (the window of ServiceRestarted); "
            "three in 15 minutes is ServiceFlapping.",
            Q(f"changes(process_start_time_seconds{{{sel}}}[5m])", "{{instance}}"),
            width=12,
            height=6,
        )
    )
    d = d.with_panel(
        grid(
            "Build",
            "Version and revision of each running instance.",
            Q(f"build_info{{{sel}}}", instant=True, table=True),
            width=12,
            transformations=[_organize(["Time", "Value", "__name__", "job"])],
        )
    )

    # Without a collector configured (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT empty) a service has no exporter and no
    # otel_* series: "or vector(0)" shows that as nothing exported rather than as a broken panel.
    d = d.with_row(db.Row("Tracing"))
    d = d.with_panel(
        ts(
            "Spans exported and dropped",
            "Spans accepted by the OTLP collector and spans dropped "
            "(queue full, export failed, shutdown); requests never wait for the exporter. Zero when "
            "no collector is configured.",
            Q(f"sum(rate(otel_spans_exported_total{{{sel}}}[$__rate_interval])) or vector(0)", "exported"),
            Q(
                f"sum by (reason) (rate(otel_spans_dropped_total{{{sel}}}[$__rate_interval])) or vector(0)",
                "dropped {{reason}}",
            ),
            unit="ops",
            width=24,
            height=6,
        )
    )
    return finish(d)


def _organize(hidden: list[str]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val="organize", options={"excludeByName": {name: True for name in hidden}})


def overview_dashboard() -> dm.Dashboard:
    services = f'service=~"{SERVICE_JOBS}"'
    d = new_dashboard(
        "vigie-overview",
        "Vigie / Overview",
        "All services at a glance: traffic, errors, latency, SLO compliance and error budget left, "
        "and the alerts firing now.",
        tags=["overview"],
        alerts='ALERTS{alertstate="firing"}',
    )

    d = d.with_row(db.Row("Alerts"))
    d = d.with_panel(
        single(
            "Firing alerts",
            "Alerts firing now, all severities.",
            Q('count(ALERTS{alertstate="firing"}) or vector(0)', "firing"),
            thresholds=_rising(1, 1),
        )
    )
    d = d.with_panel(
        single(
            "Critical",
            "Critical alerts firing now (they page by e-mail and Slack).",
            Q('count(ALERTS{alertstate="firing", severity="critical"}) or vector(0)', "critical"),
            thresholds=_thresholds((None, "green"), (1, "red")),
        )
    )
    d = d.with_panel(
        single(
            "Monitoring targets down",
            "Exporters, Prometheus or Alertmanager that cannot be scraped: part of the supervision is blind.",
            Q(f'count(up{{job!~"{SERVICE_JOBS}"}} == 0) or vector(0)', "down"),
            thresholds=_thresholds((None, "green"), (1, "red")),
        )
    )
    d = d.with_panel(
        grid(
            "Firing alerts",
            "Every alert firing now, with its labels.",
            Q('ALERTS{alertstate="firing"}', instant=True, table=True),
            width=12,
            height=8,
            transformations=[_organize(["Time", "Value", "__name__", "alertstate"])],
        )
    )

    d = d.with_row(db.Row("Services"))
    d = d.with_panel(
        single(
            "Up",
            "Prometheus can scrape the service.",
            Q(f"service:up:min{{{services}}}", "{{service}}"),
            width=6,
            thresholds=_thresholds((None, "red"), (1, "green")),
            mappings=[_value_map(UP_DOWN)],
        )
    )
    d = d.with_panel(
        single(
            "Ready",
            "The service reports itself ready.",
            Q(f"service:service_ready:min{{{services}}}", "{{service}}"),
            width=6,
            thresholds=_thresholds((None, "red"), (1, "green")),
            mappings=[_value_map(READY)],
        )
    )
    d = d.with_panel(
        single(
            "5xx ratio",
            "Server errors over the last minute.",
            Q(f"service:http_server_requests_5xx:ratio_rate1m{{{services}}}", "{{service}}"),
            width=6,
            unit="percentunit",
            decimals=2,
            thresholds=_rising(0.01, ERROR_RATIO_LIMIT),
        )
    )
    d = d.with_panel(
        single(
            "p95 latency",
            "95th percentile of request duration over the last minute.",
            Q(f"service:http_server_request_duration_seconds:p95_rate1m{{{services}}}", "{{service}}"),
            width=6,
            unit="s",
            thresholds=_rising(0.5, LATENCY_P95_LIMIT),
        )
    )
    d = d.with_panel(
        ts(
            "Request rate",
            "Requests per second by service.",
            Q(f"service:http_server_requests:rate1m{{{services}}}", "{{service}}"),
            unit="reqps",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "5xx ratio",
            "Server errors as a share of requests, by service.",
            Q(f"service:http_server_requests_5xx:ratio_rate1m{{{services}}}", "{{service}}"),
            unit="percentunit",
            width=8,
            limit=_thresholds((None, "transparent"), (ERROR_RATIO_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "p95 latency",
            "95th percentile of request duration, by service.",
            Q(f"service:http_server_request_duration_seconds:p95_rate1m{{{services}}}", "{{service}}"),
            unit="s",
            width=8,
            limit=_thresholds((None, "transparent"), (LATENCY_P95_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "CPU",
            "CPU used by each service, in cores (100 % = one core).",
            Q(f"sum by (service) (service:process_cpu_seconds:rate1m{{{services}}})", "{{service}}"),
            unit="percentunit",
            width=12,
            limit=_thresholds((None, "transparent"), (CPU_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Resident memory",
            "Resident memory of each service.",
            Q(f"sum by (service) (process_resident_memory_bytes{{{services}}})", "{{service}}"),
            unit="bytes",
            width=12,
            limit=_thresholds((None, "transparent"), (MEMORY_LIMIT, "red")),
        )
    )

    slo = "{{sloth_service}} {{sloth_slo}}"
    d = d.with_row(db.Row("Service level objectives (30 days)"))
    d = d.with_panel(
        single(
            "Error budget left",
            "Share of the 30-day error budget not yet spent, per service "
            "and SLO (availability: no 5xx; latency: under 500 ms). Below 0 the objective is missed.",
            Q("slo:period_error_budget_remaining:ratio", slo),
            width=12,
            height=6,
            unit="percentunit",
            decimals=1,
            thresholds=_falling(0, 0.25),
        )
    )
    d = d.with_panel(
        single(
            "SLO compliance",
            "Good events over the 30-day window, against the objective (99.5 % availability, 99 % latency).",
            Q("1 - slo:sli_error:ratio_rate30d", slo),
            width=12,
            height=6,
            unit="percentunit",
            decimals=3,
            thresholds=_falling(0.99, 0.995),
        )
    )
    d = d.with_panel(
        ts(
            "Burn rate",
            "How fast each error budget burns now (5-minute error ratio over the "
            "budget): 1 spends it in exactly 30 days; the page alerts fire at 14.4 and 6.",
            Q("slo:current_burn_rate:ratio", slo),
            width=12,
            limit=_thresholds((None, "transparent"), (6, "orange"), (14.4, "red")),
        )
    )
    d = d.with_panel(
        grid(
            "Objectives",
            "Each SLO: objective, compliance over 30 days, budget left.",
            Q("slo:objective:ratio", instant=True, table=True),
            Q("1 - slo:sli_error:ratio_rate30d", instant=True, table=True),
            Q("slo:period_error_budget_remaining:ratio", instant=True, table=True),
            width=12,
            height=8,
            transformations=[
                dm.DataTransformerConfig(id_val="merge", options={}),
                dm.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {"Time": True, "platform": True, "sloth_id": True, "sloth_window": True},
                        "renameByName": {
                            "sloth_service": "Service",
                            "sloth_slo": "SLO",
                            "Value #A": "Objective",
                            "Value #B": "Compliance (30 d)",
                            "Value #C": "Budget left",
                        },
                    },
                ),
            ],
        )
    )
    return finish(d)


def postgres_dashboard() -> dm.Dashboard:
    pg = 'job="postgres"'
    db_sel = f'{pg}, datname=~"$datname"'
    d = new_dashboard(
        "vigie-postgres",
        "Vigie / PostgreSQL",
        "PostgreSQL as postgres_exporter sees it (connections, transactions, cache, locks, "
        "long-running statements) and as the services see it (pools, slowest queries).",
        tags=["postgres"],
        alerts='ALERTS{alertstate="firing"}',
    )
    d = d.with_variable(
        db.QueryVariable("datname")
        .label("Database")
        .datasource(DATASOURCE)
        .query(f"label_values(pg_stat_database_numbackends{{{pg}}}, datname)")
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(text="All", value="$__all"))
    )

    d = d.with_row(db.Row("Now"))
    d = d.with_panel(
        single(
            "PostgreSQL",
            "The exporter can connect to PostgreSQL (DatabaseDown when not).",
            Q(f"pg_up{{{pg}}}", "up"),
            thresholds=_thresholds((None, "red"), (1, "green")),
            mappings=[_value_map(UP_DOWN)],
        )
    )
    d = d.with_panel(
        single(
            "Active statements",
            "Client backends running a statement right now.",
            Q(f'sum(pg_stat_activity_count{{{pg}, state="active"}})', "active"),
        )
    )
    d = d.with_panel(
        single(
            "Connections used",
            "Client connections over max_connections.",
            Q(f"sum(pg_stat_activity_count{{{pg}}}) / max(pg_settings_max_connections{{{pg}}})", "used"),
            unit="percentunit",
            thresholds=_rising(0.75, 0.9),
        )
    )
    d = d.with_panel(
        single(
            "Transactions / s",
            "Commits and rollbacks per second, all databases.",
            Q(
                f"sum(rate(pg_stat_database_xact_commit{{{pg}}}[$__rate_interval]))"
                f" + sum(rate(pg_stat_database_xact_rollback{{{pg}}}[$__rate_interval]))",
                "tps",
            ),
            unit="ops",
        )
    )
    d = d.with_panel(
        single(
            "Oldest statement",
            f"Age of the oldest active client statement; "
            f"DatabaseLongRunningQuery fires above {LONG_STATEMENT_LIMIT} s.",
            Q(f"max(pg_long_running_queries_max_seconds{{{pg}}})", "oldest"),
            unit="s",
            thresholds=_rising(5, LONG_STATEMENT_LIMIT),
        )
    )
    d = d.with_panel(
        single(
            "Exporter errors",
            "1 when the exporter's last scrape of PostgreSQL failed.",
            Q(f"max(pg_exporter_last_scrape_error{{{pg}}})", "error"),
            thresholds=_thresholds((None, "green"), (1, "red")),
        )
    )

    d = d.with_row(db.Row("Activity"))
    d = d.with_panel(
        ts(
            "Connections by database and state",
            "Backends per database and state (active, idle, idle in transaction), and max_connections.",
            Q(f"sum by (datname, state) (pg_stat_activity_count{{{db_sel}}}) > 0", "{{datname}} {{state}}"),
            Q(f"max(pg_settings_max_connections{{{pg}}})", "max_connections"),
            width=12,
        )
    )
    d = d.with_panel(
        ts(
            "Transactions by database",
            "Commits and rollbacks per second.",
            Q(
                f"sum by (datname) (rate(pg_stat_database_xact_commit{{{db_sel}}}[$__rate_interval]))",
                "{{datname}} commit",
            ),
            Q(
                f"sum by (datname) (rate(pg_stat_database_xact_rollback{{{db_sel}}}[$__rate_interval]))",
                "{{datname}} rollback",
            ),
            unit="ops",
            width=12,
        )
    )
    d = d.with_panel(
        ts(
            "Rows",
            "Rows fetched, inserted, updated and deleted per second.",
            *(
                Q(f"sum(rate(pg_stat_database_tup_{kind}{{{db_sel}}}[$__rate_interval]))", kind)
                for kind in ("fetched", "inserted", "updated", "deleted")
            ),
            unit="rowsps",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Cache hit ratio",
            "Blocks found in shared buffers over blocks needed, per database.",
            Q(
                f"sum by (datname) (rate(pg_stat_database_blks_hit{{{db_sel}}}[$__rate_interval]))\n/ ("
                f"sum by (datname) (rate(pg_stat_database_blks_hit{{{db_sel}}}[$__rate_interval]))\n"
                f"+ sum by (datname) (rate(pg_stat_database_blks_read{{{db_sel}}}[$__rate_interval])))",
                "{{datname}}",
            ),
            unit="percentunit",
            width=8,
            minimum=None,
            maximum=1,
        )
    )
    d = d.with_panel(
        ts(
            "Locks, deadlocks and conflicts",
            "Locks held by mode, and deadlocks and recovery conflicts detected.",
            Q(f"sum by (mode) (pg_locks_count{{{db_sel}}})", "{{mode}}"),
            Q(f"sum(increase(pg_stat_database_deadlocks{{{db_sel}}}[$__rate_interval]))", "deadlocks"),
            Q(f"sum(increase(pg_stat_database_conflicts{{{db_sel}}}[$__rate_interval]))", "conflicts"),
            width=8,
        )
    )

    d = d.with_row(db.Row("Long-running statements"))
    d = d.with_panel(
        ts(
            "Oldest active statement",
            f"Per database, from pg_stat_activity (client backends, not "
            f"backups); DatabaseLongRunningQuery fires above {LONG_STATEMENT_LIMIT} s.",
            Q(f"pg_long_running_queries_max_seconds{{{db_sel}}}", "{{datname}}"),
            unit="s",
            width=8,
            limit=_thresholds((None, "transparent"), (LONG_STATEMENT_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Statements running over 5 s",
            "Client statements active for more than 5 seconds.",
            Q(f"pg_long_running_queries_count{{{db_sel}}}", "{{datname}}"),
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Oldest idle-in-transaction session",
            "A session idle inside an open transaction holds its locks and blocks vacuum.",
            Q(f"pg_long_running_queries_idle_in_transaction_max_seconds{{{db_sel}}}", "{{datname}}"),
            unit="s",
            width=8,
        )
    )

    d = d.with_row(db.Row("Size"))
    d = d.with_panel(
        ts(
            "Database size",
            "On-disk size of each database.",
            Q(f"pg_database_size_bytes{{{db_sel}}}", "{{datname}}"),
            unit="bytes",
            width=24,
            height=6,
        )
    )

    services = f'service=~"{SERVICE_JOBS}"'
    d = d.with_row(db.Row("From the services"))
    d = d.with_panel(
        ts(
            "Pool utilisation by service",
            "Connections in use over each service pool's maximum.",
            Q(f"service_pool:db_pool_utilisation:ratio{{{services}}}", "{{service}} {{pool}}"),
            unit="percentunit",
            width=8,
            maximum=1,
        )
    )
    d = d.with_panel(
        ts(
            "Slowest queries (p95)",
            "The five named queries with the highest p95 over the last minute, all services.",
            Q(f"topk(5, service_query:db_query_duration_seconds:p95_rate1m{{{services}}})", "{{service}} {{query}}"),
            unit="s",
            width=8,
            limit=_thresholds((None, "transparent"), (SLOW_QUERY_LIMIT, "red")),
        )
    )
    d = d.with_panel(
        ts(
            "Connection errors by service",
            "Failed connection attempts per second, as the services see them (DatabaseDown's second view).",
            Q(f"service_pool:db_connect_errors:rate1m{{{services}}}", "{{service}} {{pool}}"),
            unit="ops",
            width=8,
        )
    )
    return finish(d)


def host_dashboard() -> dm.Dashboard:
    node = 'job="node", instance=~"$instance"'
    d = new_dashboard(
        "vigie-host",
        "Vigie / Host",
        "The machine the platform runs on, from node_exporter: CPU, memory, disk, network.",
        tags=["host"],
        alerts='ALERTS{alertstate="firing"}',
    )
    d = d.with_variable(
        db.QueryVariable("instance")
        .label("Host")
        .datasource(DATASOURCE)
        .query('label_values(node_uname_info{job="node"}, instance)')
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )

    d = d.with_row(db.Row("Now"))
    d = d.with_panel(
        single(
            "CPU busy",
            "Share of all cores not idle over the last minute.",
            Q(f"instance:node_cpu_utilisation:ratio_rate1m{{{node}}}", "{{instance}}"),
            unit="percentunit",
            thresholds=_rising(0.7, 0.9),
        )
    )
    d = d.with_panel(
        single(
            "Load per core",
            "1-minute load average divided by the number of cores.",
            Q(f"instance:node_load1_per_cpu:ratio{{{node}}}", "{{instance}}"),
            decimals=2,
            thresholds=_rising(1, 2),
        )
    )
    d = d.with_panel(
        single(
            "Memory used",
            "Memory not available to new work (total minus MemAvailable).",
            Q(f"instance:node_memory_utilisation:ratio{{{node}}}", "{{instance}}"),
            unit="percentunit",
            thresholds=_rising(0.8, 0.95),
        )
    )
    d = d.with_panel(
        single(
            "Least free disk",
            "Free space of the fullest writable filesystem; HostDiskSpaceLow "
            "below 15 %, HostDiskSpaceCritical below 5 %.",
            Q(f"min(instance_mountpoint:node_filesystem_avail:ratio{{{node}}})", "free"),
            unit="percentunit",
            thresholds=_falling(DISK_FREE_CRITICAL, DISK_FREE_WARNING),
        )
    )
    d = d.with_panel(
        single("Cores", "CPUs the kernel reports.", Q(f'count(node_cpu_seconds_total{{{node}, mode="idle"}})', "cores"))
    )
    d = d.with_panel(
        single(
            "Uptime",
            "Time since the machine booted.",
            Q(f"time() - node_boot_time_seconds{{{node}}}", "uptime"),
            unit="s",
        )
    )

    d = d.with_row(db.Row("CPU and memory"))
    d = d.with_panel(
        ts(
            "CPU by mode",
            "Share of all cores per mode (user, system, iowait, steal, …).",
            Q(
                f'sum by (mode) (rate(node_cpu_seconds_total{{{node}, mode!="idle"}}[$__rate_interval]))'
                f'\n/ scalar(count(node_cpu_seconds_total{{{node}, mode="idle"}}))',
                "{{mode}}",
            ),
            unit="percentunit",
            width=8,
            stack=True,
            maximum=1,
        )
    )
    d = d.with_panel(
        ts(
            "Load average",
            "Runnable and uninterruptible tasks, averaged over 1, 5 and 15 minutes.",
            Q(f"node_load1{{{node}}}", "1 min"),
            Q(f"node_load5{{{node}}}", "5 min"),
            Q(f"node_load15{{{node}}}", "15 min"),
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Memory",
            "Used (total minus available), page cache and buffers, and the total.",
            Q(f"node_memory_MemTotal_bytes{{{node}}} - node_memory_MemAvailable_bytes{{{node}}}", "used"),
            Q(f"node_memory_Cached_bytes{{{node}}} + node_memory_Buffers_bytes{{{node}}}", "cache and buffers"),
            Q(f"node_memory_MemTotal_bytes{{{node}}}", "total"),
            unit="bytes",
            width=8,
        )
    )

    fs = f'{node}, fstype!~"tmpfs|ramfs|devtmpfs|squashfs|nsfs|fuse.lxcfs"'
    d = d.with_row(db.Row("Disk"))
    d = d.with_panel(
        ts(
            "Free space by mountpoint",
            "Free share of each writable filesystem (the alerts' view).",
            Q(f"instance_mountpoint:node_filesystem_avail:ratio{{{node}}}", "{{mountpoint}}"),
            unit="percentunit",
            width=8,
            maximum=1,
            limit=_thresholds((None, "transparent"), (DISK_FREE_WARNING, "orange")),
        )
    )
    d = d.with_panel(
        ts(
            "Space used",
            "Bytes used per filesystem.",
            Q(f"node_filesystem_size_bytes{{{fs}}} - node_filesystem_avail_bytes{{{fs}}}", "{{mountpoint}}"),
            unit="bytes",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Disk throughput",
            "Bytes read and written per second, per device.",
            Q(f"rate(node_disk_read_bytes_total{{{node}}}[$__rate_interval])", "{{device}} read"),
            Q(f"rate(node_disk_written_bytes_total{{{node}}}[$__rate_interval])", "{{device}} written"),
            unit="Bps",
            width=8,
        )
    )

    net = f'{node}, device!="lo"'
    d = d.with_row(db.Row("Network"))
    d = d.with_panel(
        ts(
            "Network throughput",
            "Bytes received and sent per second, per interface.",
            Q(f"rate(node_network_receive_bytes_total{{{net}}}[$__rate_interval])", "{{device}} received"),
            Q(f"rate(node_network_transmit_bytes_total{{{net}}}[$__rate_interval])", "{{device}} sent"),
            unit="Bps",
            width=12,
        )
    )
    d = d.with_panel(
        ts(
            "Network errors and drops",
            "Receive and transmit errors and dropped packets per second.",
            Q(
                f"sum by (device) (rate(node_network_receive_errs_total{{{net}}}[$__rate_interval])"
                f" + rate(node_network_transmit_errs_total{{{net}}}[$__rate_interval]))",
                "{{device}} errors",
            ),
            Q(
                f"sum by (device) (rate(node_network_receive_drop_total{{{net}}}[$__rate_interval])"
                f" + rate(node_network_transmit_drop_total{{{net}}}[$__rate_interval]))",
                "{{device}} drops",
            ),
            unit="pps",
            width=12,
        )
    )
    return finish(d)


def pipelines_dashboard() -> dm.Dashboard:
    """What the alerts of rules/pipelines.yml watch, drawn: the shipper's metrics come from node_exporter's textfile
    collector (platform/logging/rsyslog/stats_exporter.py, opensearch_admin.py), the spans' from the services and
    Jaeger's own exporter."""
    node = 'job="node"'
    services = f'job=~"{SERVICE_JOBS}"'
    jaeger = 'job="jaeger"'
    d = new_dashboard(
        "vigie-pipelines",
        "Vigie / Log and trace pipelines",
        "Are the logs and traces getting through? Log lines read, shipped to OpenSearch, waiting or "
        "lost; the 30-day retention job; spans exported by the services and stored by Jaeger.",
        tags=["pipelines", "logs", "traces"],
        alerts='ALERTS{alertstate="firing"}',
    )

    d = d.with_row(db.Row("Now"))
    d = d.with_panel(
        single(
            "Shipper last report",
            "Seconds since rsyslog last reported its statistics (every 10 s); "
            f"LogShipperDown past {SHIPPER_SILENT_LIMIT} s.",
            Q(f"time() - max(rsyslog_stats_last_timestamp_seconds{{{node}}})", "age"),
            unit="s",
            thresholds=_rising(30, SHIPPER_SILENT_LIMIT),
        )
    )
    d = d.with_panel(
        single(
            "Lines waiting",
            "Log lines queued for OpenSearch now (memory and disk): the shipping "
            "lag. It grows while OpenSearch is away and empties when it is back.",
            Q(f'sum(rsyslog_queue_size{{{node}, queue=~"opensearch.*"}})', "waiting"),
            thresholds=_rising(1000, 100000),
        )
    )
    d = d.with_panel(
        single(
            "Lines lost (1 h)",
            "Lines a full queue discarded plus documents OpenSearch refused, "
            "over the last hour (LogsDropped, critical, on any).",
            Q(
                f"sum(increase(rsyslog_queue_discarded_total{{{node}}}[1h]))"
                f' + (sum(increase(rsyslog_opensearch_failed_requests_total{{{node}, reason="es"}}[1h]))'
                " or vector(0))",
                "lost",
            ),
            decimals=0,
            thresholds=_thresholds((None, "green"), (1, "red")),
        )
    )
    d = d.with_panel(
        single(
            "Retention last success",
            "Time since the 30-day retention job last succeeded (it runs hourly); LogRetentionFailing past 2 h 10 min.",
            Q(f"time() - max(vigie_log_retention_last_success_timestamp_seconds{{{node}}})", "age"),
            unit="s",
            thresholds=_rising(3600 + 600, RETENTION_STALE_LIMIT),
        )
    )
    d = d.with_panel(
        single(
            "Spans dropped",
            "Spans per second the services dropped before Jaeger had them (SpansDropped when it lasts 3 minutes).",
            Q(f"sum(rate(otel_spans_dropped_total{{{services}}}[5m]))", "dropped"),
            unit="ops",
            decimals=2,
            thresholds=_thresholds((None, "green"), (0.001, "orange")),
        )
    )
    d = d.with_panel(
        single(
            "Spans stored",
            "Spans per second Jaeger wrote to its storage.",
            Q(f"sum(rate(otelcol_exporter_sent_spans_total{{{jaeger}}}[5m]))", "stored"),
            unit="ops",
            decimals=1,
        )
    )

    d = d.with_row(db.Row("Logs"))
    d = d.with_panel(
        ts(
            "Lines read",
            "Lines the shipper read from each service's log file, per second.",
            Q(f"sum by (service) (rate(rsyslog_lines_read_total{{{node}}}[$__rate_interval]))", "{{service}}"),
            unit="ops",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Sent to OpenSearch",
            "Lines sent in bulk requests (a retried line counts again), and "
            "requests without a usable answer by reason (http: no answer; es: documents refused).",
            Q(f"sum(rate(rsyslog_opensearch_submitted_total{{{node}}}[$__rate_interval]))", "lines sent"),
            Q(
                f"sum by (reason) (rate(rsyslog_opensearch_failed_requests_total{{{node}}}[$__rate_interval]))",
                "failed: {{reason}}",
            ),
            unit="ops",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Queues",
            "Messages waiting in each rsyslog queue; the OpenSearch queue spills to disk (1 GB) rather than drop.",
            Q(f"rsyslog_queue_size{{{node}}}", "{{queue}}"),
            width=8,
        )
    )

    d = d.with_row(db.Row("Retention"))
    d = d.with_panel(
        ts(
            "Retention runs",
            "Runs of the retention job by result, per hour.",
            Q(f"sum by (result) (increase(vigie_log_retention_runs_total{{{node}}}[1h]))", "{{result}}"),
            width=12,
        )
    )
    d = d.with_panel(
        ts(
            "Indices deleted",
            "Daily log indices older than 30 days deleted, per hour.",
            Q(f"sum(increase(vigie_log_retention_deleted_indices_total{{{node}}}[1h]))", "deleted"),
            width=12,
        )
    )

    d = d.with_row(db.Row("Traces"))
    d = d.with_panel(
        ts(
            "Spans exported",
            "Spans each service handed to Jaeger, per second.",
            Q(f"sum by (service) (rate(otel_spans_exported_total{{{services}}}[$__rate_interval]))", "{{service}}"),
            unit="ops",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Spans dropped",
            "Spans dropped per second, by service and reason (queue_full: the "
            "export cannot keep up; export_failed: Jaeger refused or unreachable; shutdown).",
            Q(
                f"sum by (service, reason) (rate(otel_spans_dropped_total{{{services}}}[$__rate_interval]))",
                "{{service}} {{reason}}",
            ),
            unit="ops",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Export latency p95",
            "95th percentile of the services' successful OTLP export requests.",
            Q(
                "histogram_quantile(0.95, sum by (service, le) (rate(otel_export_duration_seconds_bucket"
                f'{{{services}, outcome="success"}}[$__rate_interval])))',
                "{{service}}",
            ),
            unit="s",
            width=8,
        )
    )
    d = d.with_panel(
        ts(
            "Jaeger: received",
            "Spans Jaeger's OTLP receiver accepted and refused, per second.",
            Q(f"sum(rate(otelcol_receiver_accepted_spans_total{{{jaeger}}}[$__rate_interval]))", "accepted"),
            Q(f"sum(rate(otelcol_receiver_refused_spans_total{{{jaeger}}}[$__rate_interval]))", "refused"),
            unit="ops",
            width=12,
        )
    )
    d = d.with_panel(
        ts(
            "Jaeger: stored",
            "Spans written to Jaeger's storage, and writes that failed (TraceStoreFailing), per second.",
            Q(f"sum(rate(otelcol_exporter_sent_spans_total{{{jaeger}}}[$__rate_interval]))", "stored"),
            Q(f"sum(rate(otelcol_exporter_send_failed_spans_total{{{jaeger}}}[$__rate_interval]))", "failed"),
            unit="ops",
            width=12,
        )
    )
    return finish(d)


def dashboards() -> dict[str, dm.Dashboard]:
    """File name → dashboard, for every dashboard Vigie ships."""
    result = {f"service-{s.name}.json": service_dashboard(s) for s in SERVICES}
    result["overview.json"] = overview_dashboard()
    result["postgres.json"] = postgres_dashboard()
    result["host.json"] = host_dashboard()
    result["pipelines.json"] = pipelines_dashboard()
    return result


def render(model: dm.Dashboard) -> str:
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a committed dashboard differs from the definition",
    )
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help=f"where the JSON goes (default {OUT_DIR})")
    args = parser.parse_args()

    wanted = {name: render(model) for name, model in dashboards().items()}
    present = {p.name for p in args.out_dir.glob("*.json")} if args.out_dir.is_dir() else set()
    stale = sorted(
        name
        for name, text in wanted.items()
        if not (args.out_dir / name).is_file() or (args.out_dir / name).read_text("utf-8") != text
    )
    extra = sorted(present - wanted.keys())
    if args.check:
        for name in stale:
            print(f"stale: {args.out_dir / name}", file=sys.stderr)
        for name in extra:
            print(f"not generated (remove it): {args.out_dir / name}", file=sys.stderr)
        if stale or extra:
            print("run: .cache/venv/bin/python platform/grafana/dashboards.py", file=sys.stderr)
            return 1
        return 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out_dir / name).write_text(wanted[name], encoding="utf-8")
        print(f"wrote {args.out_dir / name}")
    for name in extra:
        (args.out_dir / name).unlink()
        print(f"removed {args.out_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
