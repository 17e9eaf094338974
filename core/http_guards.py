"""What every aiohttp app of the platform puts around its handlers: the API and each Travel Rule
(TRP) listener alike, so that neither answers without them.

- ``add_security_headers``: browser-hardening headers on every answer.
- ``body_timeout_middleware``: a request body that stops arriving, or takes too long, is a 408.
- ``http_error``: aiohttp's own refusals (no route, a wrong method, a body over the app's
  ``client_max_size``) as typed errors, for the app's error renderer.

They live here, below every domain, because the TRP listener (compliance) may not import the API
layer. They read the app's settings under ``SETTINGS`` (``api.keys`` names the same key).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from core.errors import AppError, MethodNotAllowed, NotFound, PayloadTooLarge
from core.settings import Environment, Settings

SETTINGS = web.AppKey("settings", Settings)

Handler = Any

FRAME_ANCESTORS = "frame-ancestors 'none'"
DEFAULTS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Only what a JSON API needs: no scripts, no styles, never framed. A page of its own (/docs)
# or a download sets its own policy; it still gets frame-ancestors.
API_POLICY = "default-src 'none'; " + FRAME_ANCESTORS
HSTS = "max-age=63072000; includeSubDomains"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """A response-prepare hook rather than a middleware: streamed answers (SSE, file downloads, the
    static /docs assets) have sent their headers by the time a middleware sees them."""
    headers = response.headers
    for name, value in DEFAULTS.items():
        headers.setdefault(name, value)
    policy = headers.get("Content-Security-Policy")
    if policy is None:
        headers["Content-Security-Policy"] = API_POLICY
    elif "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy}; {FRAME_ANCESTORS}"
    # Tokens, balances and personal data must never sit in a shared or browser cache: an answer is
    # stored only where its route said so (public CMS content) or it is a static asset.
    if "Cache-Control" not in headers and not isinstance(response, web.FileResponse):
        headers["Cache-Control"] = "no-store"
    settings = request.config_dict[SETTINGS]
    if settings.env not in (Environment.DEVNET, Environment.TEST):
        headers.setdefault("Strict-Transport-Security", HSTS)


def http_error(request: web.Request, error: web.HTTPException) -> AppError:
    """aiohttp's own refusal as the typed error the app renders."""
    if isinstance(error, web.HTTPNotFound):
        return NotFound("No route matches this path.")
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = sorted(error.allowed_methods)
        return MethodNotAllowed(details={"allowed": allowed}, headers={"Allow": ", ".join(allowed)})
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(details={"max_bytes": request.client_max_size})
    return AppError(error.reason, code=error.reason.lower().replace(" ", "_"), status=error.status)


class RequestTimeout(AppError):
    status, code, message = 408, "request_timeout", "The request body did not arrive in time."


@web.middleware
async def body_timeout_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stop reading a body that stops arriving (idle) or takes too long in all (read timeout).

    aiohttp waits for a body as long as the client keeps the connection open, and whatever the
    handler holds meanwhile stays held. The handler runs as a task watched here; once the client
    has sent everything, the handler goes on at its own pace. Progress is the bytes received, so a
    handler that stops reading for longer than the idle timeout, leaving the client blocked on a
    full buffer, is cut off too (a handler reads its body before slow work, never after).
    """
    body = request.content
    if not request.body_exists or body.is_eof():
        return await handler(request)
    settings = request.config_dict[SETTINGS]
    loop = asyncio.get_running_loop()
    idle, deadline = settings.body_idle_timeout_seconds, loop.time() + settings.body_read_timeout_seconds
    work = asyncio.ensure_future(handler(request))
    received, progressed = body.total_bytes, loop.time()
    try:
        while True:
            now = loop.time()
            await asyncio.wait({work}, timeout=max(0.0, min(progressed + idle, deadline) - now))
            if work.done() or body.is_eof():
                return await work  # everything arrived: the handler's own pace from here on
            now = loop.time()
            if body.total_bytes != received:
                received, progressed = body.total_bytes, now
            if now >= deadline or now - progressed >= idle:
                raise RequestTimeout(details={"received_bytes": body.total_bytes, "idle_timeout_seconds": idle,
                                              "read_timeout_seconds": settings.body_read_timeout_seconds})
    finally:
        if not work.done():
            work.cancel()  # its transaction rolls back and what it staged is discarded
            await asyncio.gather(work, return_exceptions=True)
