"""Structured JSON logs; every line written during a request carries its request id."""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# scheme://[user[:password]@]host[:port][/path?query#fragment]
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^\s/@'\"<>]*@)?([^\s/'\"<>?#]*)([^\s'\"<>]*)")


def redact_urls(text: str) -> str:
    """Every URL cut down to its scheme, host and port: RPC providers put their API key in the path
    or the query, database URLs carry a password."""
    return _URL.sub(lambda url: url[1] + url[2] + ("/…" if url[3] else ""), text)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str = "INFO", *, json: bool = True, process: str = "virtuoz") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"process": process},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates the metrics and can carry query strings: keep it quiet.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
