"""The devnet's SMTP server (aiosmtpd): every message it accepts becomes a ``.eml`` file.

``python -m devnet.smtp --port 8025 --maildir .devnet/mail`` runs it as a child process of the
devnet until SIGTERM or SIGINT; tests start it in-process with ``start_smtp_server``. Files are
named ``<UTC time>-<id>.eml`` and written atomically (temporary name, then rename), so a reader
polling the directory never sees half a message.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from core.time import utcnow

log = logging.getLogger(__name__)


class MaildirHandler:
    """aiosmtpd handler: accept every message and keep it on disk, unchanged."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        maildir.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        name = f"{utcnow().strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:12]}.eml"
        temporary = self.maildir / f".{name}.tmp"
        temporary.write_bytes(content)
        os.replace(temporary, self.maildir / name)
        log.info("stored message from %s to %s as %s", envelope.mail_from, ", ".join(envelope.rcpt_tos), name)
        return "250 Message accepted for delivery"


def start_smtp_server(host: str, port: int, maildir: Path, **options: Any) -> Controller:
    """Start the server in a thread of this process; ``controller.stop()`` stops it."""
    controller = Controller(MaildirHandler(maildir), hostname=host, port=port, **options)
    controller.start()
    return controller


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devnet.smtp", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s smtp %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    controller = start_smtp_server(args.host, args.port, args.maildir)
    log.info("SMTP on %s:%s, messages in %s", args.host, args.port, args.maildir)
    try:
        stop.wait()
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
