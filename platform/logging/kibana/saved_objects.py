#!/usr/bin/env python3
"""Generates saved-objects.ndjson, Kibana 8.x's import format, from the one definition below.

    saved_objects.py            # rewrites saved-objects.ndjson beside this file
    saved_objects.py --check    # exit 1 when the committed file differs from what this script generates

The objects: the data view `vigie-logs` (vigie-logs-*, time field @timestamp); a saved search per service
(SERVICES), one for errors, one to follow a request by trace id (users put the id in the query:
docs/logging-and-tracing.md); two Lens charts (log lines over time by service and by level); the dashboard
"Vigie logs" with the charts and the searches. Imported by platform/logging/elasticsearch/setup.py through
POST /api/saved_objects/_import?overwrite=true. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "saved-objects.ndjson"
SERVICES = ("gateway", "user", "order")
DATA_VIEW = "vigie-logs"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
# Versions of the object formats written here. Kibana migrates older versions forward on import and refuses newer
# ones, so these are the oldest 8.x formats of each type (index-pattern 8.0.0, search 7.9.3, lens 8.9.0, dashboard
# 8.7.0): they import into every Kibana from 8.9 on (compose runs 8.15.3).
CORE_MIGRATION = "8.8.0"
TYPE_MIGRATION = {"index-pattern": "8.0.0", "search": "7.9.3", "lens": "8.9.0", "dashboard": "8.7.0"}
COLUMNS = [
    "service.name",
    "log.level",
    "message",
    "trace.id",
    "http.request.method",
    "url.path",
    "http.response.status_code",
    "event.duration",
]

SEARCHES = [
    *(
        {
            "id": f"vigie-logs-{name}",
            "title": f"Vigie logs: {name}",
            "query": f'service.name : "{name}"',
            "description": f"Every log line of the {name} service.",
            "columns": COLUMNS[1:],
        }
        for name in SERVICES
    ),
    {
        "id": "vigie-logs-errors",
        "title": "Vigie logs: errors",
        "query": 'log.level : "error"',
        "description": "Error lines of every service.",
        "columns": COLUMNS,
    },
    {
        "id": "vigie-logs-by-trace",
        "title": "Vigie logs: one request (by trace id)",
        "query": "trace.id : *",
        "description": 'Replace the query with trace.id : "<id>" (from Jaeger or a response\'s traceparent): every '
        "line of that request, across services, oldest first.",
        "columns": COLUMNS,
        "sort": [["@timestamp", "asc"]],
    },
]
CHARTS = [
    {"id": "vigie-logs-volume-by-service", "title": "Log lines by service", "field": "service.name"},
    {"id": "vigie-logs-volume-by-level", "title": "Log lines by level", "field": "log.level"},
]


def saved_object(kind: str, object_id: str, attributes: dict, references: list[dict]) -> dict:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION,
        "id": object_id,
        "managed": False,
        "references": references,
        "type": kind,
        "typeMigrationVersion": TYPE_MIGRATION[kind],
    }


def data_view() -> dict:
    return saved_object(
        "index-pattern",
        DATA_VIEW,
        {
            "fieldAttrs": "{}",
            "fieldFormatMap": "{}",
            "fields": "[]",
            "name": "Vigie logs",
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "timeFieldName": "@timestamp",
            "title": "vigie-logs-*",
            "typeMeta": "{}",
            "allowNoIndex": True,
        },
        [],
    )


def search(spec: dict) -> dict:
    source = {"query": {"query": spec["query"], "language": "kuery"}, "filter": [], "indexRefName": INDEX_REF}
    return saved_object(
        "search",
        spec["id"],
        {
            "title": spec["title"],
            "description": spec["description"],
            "columns": spec["columns"],
            "sort": spec.get("sort", [["@timestamp", "desc"]]),
            "grid": {},
            "hideChart": False,
            "isTextBasedQuery": False,
            "timeRestore": False,
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source, sort_keys=True)},
        },
        [{"id": DATA_VIEW, "name": INDEX_REF, "type": "index-pattern"}],
    )


def chart(spec: dict) -> dict:
    columns = {
        "x": {
            "dataType": "date",
            "isBucketed": True,
            "label": "@timestamp",
            "operationType": "date_histogram",
            "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
            "scale": "interval",
            "sourceField": "@timestamp",
        },
        "split": {
            "dataType": "string",
            "isBucketed": True,
            "label": spec["field"],
            "operationType": "terms",
            "params": {
                "size": 10,
                "orderBy": {"type": "column", "columnId": "count"},
                "orderDirection": "desc",
                "otherBucket": True,
                "missingBucket": True,
                "parentFormat": {"id": "terms"},
            },
            "scale": "ordinal",
            "sourceField": spec["field"],
        },
        "count": {
            "dataType": "number",
            "isBucketed": False,
            "label": "Log lines",
            "operationType": "count",
            "params": {"emptyAsNull": True},
            "scale": "ratio",
            "sourceField": "___records___",
        },
    }
    state = {
        "datasourceStates": {
            "formBased": {
                "layers": {
                    "layer1": {"columnOrder": ["split", "x", "count"], "columns": columns, "incompleteColumns": {}}
                }
            }
        },
        "filters": [],
        "internalReferences": [],
        "adHocDataViews": {},
        "query": {"query": "", "language": "kuery"},
        "visualization": {
            "legend": {"isVisible": True, "position": "right"},
            "valueLabels": "hide",
            "preferredSeriesType": "bar_stacked",
            "layers": [
                {
                    "layerId": "layer1",
                    "layerType": "data",
                    "seriesType": "bar_stacked",
                    "xAccessor": "x",
                    "splitAccessor": "split",
                    "accessors": ["count"],
                }
            ],
        },
    }
    return saved_object(
        "lens",
        spec["id"],
        {
            "title": spec["title"],
            "description": "",
            "visualizationType": "lnsXY",
            "state": state,
        },
        [{"id": DATA_VIEW, "name": "indexpattern-datasource-layer-layer1", "type": "index-pattern"}],
    )


def dashboard(panels: list[tuple[str, str, int, int, int, int]]) -> dict:
    """panels: (saved object type, id, x, y, w, h) on Kibana's 48-column grid."""
    panels_json, references = [], []
    for number, (kind, object_id, x, y, w, h) in enumerate(panels, start=1):
        index = f"p{number}"
        panels_json.append(
            {
                "type": kind,
                "panelIndex": index,
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": index},
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append({"id": object_id, "name": f"{index}:panel_{index}", "type": kind})
    return saved_object(
        "dashboard",
        "vigie-logs-dashboard",
        {
            "title": "Vigie logs",
            "description": "Log volume by service and level, errors, and each service's lines.",
            "panelsJSON": json.dumps(panels_json, sort_keys=True),
            "optionsJSON": json.dumps(
                {
                    "useMargins": True,
                    "syncColors": False,
                    "syncCursor": True,
                    "syncTooltips": False,
                    "hidePanelTitles": False,
                },
                sort_keys=True,
            ),
            "timeRestore": True,
            "timeFrom": "now-24h",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}, sort_keys=True
                )
            },
        },
        references,
    )


def objects() -> list[dict]:
    layout = [
        ("lens", CHARTS[0]["id"], 0, 0, 24, 12),
        ("lens", CHARTS[1]["id"], 24, 0, 24, 12),
        ("search", "vigie-logs-errors", 0, 12, 48, 15),
    ]
    layout += [("search", f"vigie-logs-{name}", 16 * i, 27, 16, 15) for i, name in enumerate(SERVICES)]
    return [data_view(), *map(search, SEARCHES), *map(chart, CHARTS), dashboard(layout)]


def render() -> str:
    return "".join(json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n" for obj in objects())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate Kibana saved objects for Vigie's logs.")
    parser.add_argument("--check", action="store_true", help="fail if the committed file is not up to date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
