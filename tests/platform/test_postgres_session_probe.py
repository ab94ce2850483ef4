"""The fresh-session probe (blackbox module postgres_session, rendered by render.py) against a real PostgreSQL and
the real blackbox exporter: it logs in, runs its query and logs out cleanly; it fails on a wrong password and
while the postmaster is stopped (the case the exporter's long-lived connection cannot see), and recovers after.
"""

from __future__ import annotations

import os
import signal
import subprocess

import requests
from conftest import PG_BIN, RENDER, assert_ok, free_port, run, tool, wait_until

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"


def probe(port: int, target: str) -> bool:
    reply = requests.get(
        f"http://127.0.0.1:{port}/probe", params={"module": "postgres_session", "target": target}, timeout=10
    )
    reply.raise_for_status()
    return "\nprobe_success 1" in reply.text


def start_blackbox(config, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [tool(BLACKBOX), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/-/healthy", timeout=2).ok
        except requests.ConnectionError:
            return False

    wait_until(healthy, timeout=10, what="the blackbox exporter answering")
    return process


def render_with_password(tmp_path, name: str, password: str):
    secret = tmp_path / f"{name}.password"
    secret.write_text(password + "\n")
    out = tmp_path / name
    env = dict(os.environ, VIGIE_POSTGRES_PROBE_PASSWORD_FILE=str(secret))
    assert_ok(run(["/usr/bin/python3", str(RENDER), "--out-dir", str(out)], env=env))
    config = out / "blackbox.yml"
    assert oct(config.stat().st_mode & 0o777) == "0o600", "the module holds a password"
    assert_ok(run([tool(BLACKBOX), f"--config.file={config}", "--config.check"]))
    return config


def test_the_probe_opens_a_fresh_session_and_sees_a_stopped_postmaster(cluster, tmp_path):
    psql = tool(str(PG_BIN / "psql"))
    dsn = f"postgresql://postgres@127.0.0.1:{cluster['port']}/postgres"
    password = "a3f1c2d4e5b6a7980a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d"  # as vigie-local makes them: 24 random bytes, hex
    assert_ok(run([psql, dsn, "-c", f"create role vigie_probe login password '{password}' connection limit 2"]))
    # The rules vigie-local writes for the probe role: clear-text password over loopback, database postgres only.
    hba = cluster["data"] / "pg_hba.conf"
    hba.write_text(
        "host postgres vigie_probe 127.0.0.1/32 password\n"
        "host all vigie_probe 0.0.0.0/0 reject\n"
        "host all all 127.0.0.1/32 trust\n"
        "local all all trust\n"
    )
    assert_ok(run([psql, dsn, "-c", "select pg_reload_conf()"]))
    target = f"127.0.0.1:{cluster['port']}"
    good, bad = render_with_password(tmp_path, "good", password), render_with_password(tmp_path, "bad", "wrong")
    good_port, bad_port = free_port(), free_port()
    exporters = [start_blackbox(good, good_port), start_blackbox(bad, bad_port)]
    postmaster = int((cluster["data"] / "postmaster.pid").read_text().split()[0])
    try:
        assert all(probe(good_port, target) for _ in range(5))
        assert not probe(bad_port, target), "a wrong password must fail the probe"
        os.kill(postmaster, signal.SIGSTOP)
        try:
            assert not probe(good_port, target), "a stopped postmaster must fail the probe (within its 3 s timeout)"
        finally:
            os.kill(postmaster, signal.SIGCONT)
        wait_until(lambda: probe(good_port, target), timeout=15, interval=0.5, what="the probe succeeding again")
    finally:
        for process in exporters:
            process.terminate()
            process.wait(timeout=10)
    log = (cluster["data"].parent / "log").read_text()
    assert 'password authentication failed for user "vigie_probe"' in log
    # The probe ends its session with Terminate: the newline the prober appends is never read as a message.
    assert "invalid frontend message type" not in log, log
