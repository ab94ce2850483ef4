"""The postgres exporter with Vigie's custom queries, against a real throw-away PostgreSQL cluster.

Proves what the database alerts stand on: the long-running statement metrics exist (with a zero row per idle
database), see a real running statement, and pg_up drops to 0 when PostgreSQL stops. Also proves the environment
variable prometheus.yml.tmpl documents (PG_EXPORTER_EXTEND_QUERY_PATH) is the one exporter 0.11 reads.
"""

from __future__ import annotations

import os
import re
import subprocess

import requests
from conftest import PG_BIN, PLATFORM, as_cluster_owner, assert_ok, free_port, run, tool, wait_until

EXPORTER = "/usr/bin/prometheus-postgres-exporter"
QUERIES = PLATFORM / "prometheus" / "postgres-exporter-queries.yml"


def metrics(url: str) -> dict[str, float]:
    text = requests.get(url, timeout=5).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+) (\S+)$", text, re.MULTILINE)}


def test_custom_queries_report_long_running_statements_and_pg_up(cluster):
    psql = tool(str(PG_BIN / "psql"))
    dsn = f"postgresql://postgres@127.0.0.1:{cluster['port']}/postgres?sslmode=disable"
    assert_ok(run([psql, dsn, "-c", "create database users"]))
    exporter_port = free_port()
    env = dict(os.environ, DATA_SOURCE_NAME=dsn, PG_EXPORTER_EXTEND_QUERY_PATH=str(QUERIES))
    exporter = subprocess.Popen(
        [tool(EXPORTER), f"--web.listen-address=127.0.0.1:{exporter_port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sleeper = subprocess.Popen(
        [psql, dsn.replace("/postgres?", "/users?"), "-c", "select pg_sleep(30)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{exporter_port}/metrics"
    server = f'server="127.0.0.1:{cluster["port"]}"'
    running = f'pg_long_running_queries_max_seconds{{datname="users",{server}}}'
    idle = f'pg_long_running_queries_max_seconds{{datname="postgres",{server}}}'
    try:

        def scraped():
            try:
                values = metrics(url)
            except requests.ConnectionError:
                return None
            return values if values.get(running, 0) >= 1 else None

        values = wait_until(scraped, timeout=20, interval=0.5, what=f"{running} >= 1 s")
        assert values["pg_up"] == 1
        assert values[idle] == 0, "a database with nothing running reports 0, not no series"
        assert f'pg_long_running_queries_count{{datname="users",{server}}}' in values
        assert f'pg_long_running_queries_idle_in_transaction_max_seconds{{datname="users",{server}}}' in values
        # Template databases are not reported.
        assert not any(k.startswith("pg_long_running_queries") and 'datname="template' in k for k in values)

        run(as_cluster_owner([cluster["pg_ctl"], "-D", str(cluster["data"]), "-m", "immediate", "stop"]), timeout=30)
        wait_until(lambda: metrics(url).get("pg_up") == 0, timeout=15, interval=0.5, what="pg_up == 0")
    finally:
        sleeper.kill()
        sleeper.wait()
        exporter.terminate()
        exporter.wait(timeout=10)
