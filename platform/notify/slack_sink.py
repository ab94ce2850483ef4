#!/usr/bin/python3
"""Slack sink: accepts Slack incoming-webhook POSTs and appends each payload as one JSON line to a file.

Alertmanager's `slack_configs` point at it (any path is accepted, like Slack's /services/T…/B…/… URLs), so Slack
notifications can be read back by people (`tail -f FILE | jq`) and by tests. Each line is the payload exactly as
received, re-serialised compactly; the line is flushed and fsynced before the sender gets its `ok`, so an
acknowledged notification is on disk. Invalid JSON or a payload that is not an object gets 400 and is not recorded.
`GET /healthz` answers `ok` for process managers and readiness checks.

Stdlib only; runs with /usr/bin/python3 like the SMTP sink. Exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import sys
import threading
from typing import BinaryIO

# Slack itself rejects payloads far below this; the limit stops a runaway client from filling the disk.
MAX_BODY_BYTES = 1024 * 1024
# A client that stalls mid-request is dropped after this long instead of pinning a thread.
REQUEST_TIMEOUT_SECONDS = 10.0


def parse_listen(value: str) -> tuple[str, int]:
    """Parses HOST:PORT (port 0 picks a free port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


class JsonLinesFile:
    """Appends one JSON document per line, durably, from any number of request threads."""

    def __init__(self, path: str) -> None:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 (kept open for the process lifetime)

    def append(self, document: object) -> None:
        line = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()


class WebhookHandler(http.server.BaseHTTPRequestHandler):
    server_version = "VigieSlackSink/1"
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_SECONDS
    sink: JsonLinesFile  # set on the subclass built by make_server

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        if self.path.split("?", 1)[0] == "/healthz":
            self._reply(200, "ok")
        else:
            self._reply(404, "not found")

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._reply(411, "length required")
            return
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._reply(413, "payload too large")
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._reply(400, "truncated body")
            return
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            self._reply(400, f"invalid_payload: {err}")
            return
        if not isinstance(payload, dict):
            self._reply(400, "invalid_payload: expected a JSON object")
            return
        try:
            self.sink.append(payload)
        except OSError as err:
            self._reply(500, f"cannot record payload: {err}")
            return
        # Slack answers a plain-text "ok" on success; Alertmanager only looks at the status code.
        self._reply(200, "ok")

    def _reply(self, status: int, text: str) -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server API)
        sys.stderr.write(f"slack_sink: {self.address_string()} {format % args}\n")
        sys.stderr.flush()


def make_server(host: str, port: int, out_path: str) -> tuple[http.server.ThreadingHTTPServer, JsonLinesFile]:
    sink = JsonLinesFile(out_path)
    handler = type("BoundWebhookHandler", (WebhookHandler,), {"sink": sink})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server, sink


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Receiver of Slack incoming-webhook posts that appends each payload as one JSON line "
        "(Vigie's Slack notification sink).",
    )
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 9095),
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:9095; port 0 picks a free port, printed on stdout)",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="JSON-lines file to append payloads to")
    args = parser.parse_args(argv)
    host, port = args.listen
    try:
        server, sink = make_server(host, port, args.out)
    except OSError as err:
        print(f"slack_sink: {err}", file=sys.stderr)
        return 1

    # serve_forever runs on a worker thread because shutdown() must be called from another thread than the one
    # serving; the main thread only waits for SIGTERM/SIGINT. The signals are blocked before any thread starts (threads
    # inherit the mask), so sigwait receives them at once.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    worker.start()
    bound_host, bound_port = server.server_address[:2]
    # The first stdout line is the address actually bound: callers that passed port 0 read it from there.
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    print(f"slack_sink: appending to {args.out}", file=sys.stderr, flush=True)
    signal.sigwait(stop_signals)
    server.shutdown()
    server.server_close()
    worker.join(timeout=5.0)
    sink.close()
    print("slack_sink: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
