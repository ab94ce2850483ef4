#!/usr/bin/python3
"""SMTP sink: a real SMTP server on loopback that delivers every message it accepts into a Maildir.

Alertmanager's `email_configs` point at it, so e-mail notifications can be read back by people (any MUA that opens a
Maildir, or `ls DIR/new`) and by tests. Each message gets the headers a delivering MTA adds (`Return-Path`,
`Delivered-To`, `Received` with the delivery date) and lands through `mailbox.Maildir`, which writes into `tmp/` and
moves the file into `new/`, so a reader never sees a half-written mail.

Runs with Debian's /usr/bin/python3 (aiosmtpd comes from the python3-aiosmtpd package). Exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import mailbox
import signal
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session

# Alertmanager mails are a few kB; the limit only stops a runaway client from filling the disk.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# An idle or stuck client is dropped after this long, so a connection never pins the sink forever.
SESSION_TIMEOUT_SECONDS = 30.0
HOSTNAME = "vigie-smtp-sink"


def parse_listen(value: str) -> tuple[str, int]:
    """Parses HOST:PORT (port 0 picks a free port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


class MaildirHandler:
    """aiosmtpd handler: every accepted message becomes one file in the Maildir's new/ directory."""

    def __init__(self, maildir: mailbox.Maildir) -> None:
        self._maildir = maildir

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd API)
        received = email.utils.format_datetime(email.utils.localtime())
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        trace = (
            f"Return-Path: <{envelope.mail_from}>\r\n"
            f"Delivered-To: {', '.join(envelope.rcpt_tos)}\r\n"
            f"Received: from {session.host_name or 'unknown'} ([{peer}])\r\n"
            f"\tby {HOSTNAME} (Vigie SMTP sink); {received}\r\n"
        ).encode()
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        try:
            key = self._maildir.add(trace + content)
        except OSError as err:
            print(f"smtp_sink: cannot deliver: {err}", file=sys.stderr, flush=True)
            return "451 Requested action aborted: local error in processing"
        print(
            f"smtp_sink: delivered {key} from <{envelope.mail_from}> to {','.join(envelope.rcpt_tos)}",
            file=sys.stderr,
            flush=True,
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, maildir_path: str) -> None:
    maildir = mailbox.Maildir(maildir_path, create=True)
    handler = MaildirHandler(maildir)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname=HOSTNAME,
            data_size_limit=MAX_MESSAGE_BYTES,
            timeout=SESSION_TIMEOUT_SECONDS,
        ),
        host=host,
        port=port,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    # The first stdout line is the address actually bound: callers that passed port 0 read it from there.
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    print(f"smtp_sink: delivering into {maildir_path}", file=sys.stderr, flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()
    print("smtp_sink: stopped", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="SMTP server that delivers every message into a Maildir (Vigie's e-mail notification sink).",
    )
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 2525),
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:2525; port 0 picks a free port, printed on stdout)",
    )
    parser.add_argument("--maildir", required=True, metavar="DIR", help="Maildir to deliver into (created if missing)")
    args = parser.parse_args(argv)
    host, port = args.listen
    try:
        asyncio.run(serve(host, port, args.maildir))
    except OSError as err:
        print(f"smtp_sink: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
