"""One signed POST to an integrator's endpoint, and what came of it.

The destination is checked and pinned first (``ssrf``); redirects are not followed (a 3xx is a failure:
following one would send the signed body to a URL nobody checked); no proxy from the environment is
used. At most ``EXCERPT_BYTES`` of the answer are read, whatever it announces, and the whole attempt
(connection, TLS, request, answer) lives within the timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from notifications.webhooks import ssrf

EXCERPT_BYTES = 1024
ERROR_CHARS = 300  # the column's width


@dataclass(frozen=True)
class Answer:
    """What one attempt gave: a status (None if no answer came), its latency, or an error; an excerpt of the body."""

    status: int | None
    latency_ms: int
    error: str | None = None
    excerpt: str | None = None

    @property
    def delivered(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


async def post(url: str, body: bytes, headers: dict[str, str], *, timeout_seconds: float,
               allow_private: bool) -> Answer:
    """POST ``body`` to ``url``; never raises for anything the endpoint or the network does."""
    started = time.monotonic()

    def elapsed_ms() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        async with asyncio.timeout(timeout_seconds):
            destination = await ssrf.resolve(url, allow_private=allow_private)
            connector = aiohttp.TCPConnector(resolver=ssrf.PinnedResolver(destination), use_dns_cache=False,
                                             force_close=True)
            async with (aiohttp.ClientSession(connector=connector, trust_env=False,
                                              skip_auto_headers=("Accept-Encoding",)) as http,
                        http.post(destination.url, data=body, headers=headers, allow_redirects=False) as answer):
                latency = elapsed_ms()
                excerpt = await _excerpt(answer)
                answer.close()  # drop the connection: the rest of the body is never read
            error = None if 200 <= answer.status < 300 else _status_error(answer.status)
            return Answer(answer.status, latency, error, excerpt)
    except ssrf.RefusedDestination as refused:
        return Answer(None, elapsed_ms(), _cut(f"refused: {refused}"))
    except TimeoutError:
        return Answer(None, elapsed_ms(), f"timeout after {timeout_seconds:g}s")
    except aiohttp.ClientResponseError as error:
        return Answer(error.status or None, elapsed_ms(), _cut(f"invalid answer: {error.message}"))
    except (aiohttp.ClientError, OSError) as error:
        return Answer(None, elapsed_ms(), _cut(_connection_error(error)))


async def _excerpt(answer: aiohttp.ClientResponse) -> str | None:
    """At most EXCERPT_BYTES of the body, as text."""
    collected = b""
    try:
        while len(collected) < EXCERPT_BYTES:
            chunk = await answer.content.read(EXCERPT_BYTES - len(collected))
            if not chunk:
                break
            collected += chunk
    except aiohttp.ClientPayloadError:
        pass  # a body cut short is still an answer: keep what came
    if not collected:
        return None
    # PostgreSQL text holds no NUL; replacement characters keep the excerpt within 1024 characters.
    return collected.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _status_error(status: int) -> str:
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed"
    return f"HTTP {status}"


def _connection_error(error: BaseException) -> str:
    # The class names the failure (refused, reset, TLS, DNS) without echoing anything the server sent
    # or the URL (which may carry the integrator's token in its query).
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate verification failed"
    if isinstance(error, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"connection failed: {error.os_error.strerror or error.os_error.__class__.__name__}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    return f"connection failed: {error.__class__.__name__}"


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"
