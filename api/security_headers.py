"""Browser-hardening headers on every answer, set just before the headers leave.

A response-prepare hook rather than a middleware: streamed answers (SSE, file downloads, the
static /docs assets) have sent their headers by the time a middleware sees them.
"""

from __future__ import annotations

from aiohttp import web

from api.keys import SETTINGS
from core.settings import Environment

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
