"""Conditional GET for published content: a strong ETag over the exact JSON bytes, and 304.

The ETag is a hash of the body, so it changes exactly when what a reader gets changes (a new
publication, another locale answering, an archive). ``Vary: Accept-Language`` because the locale
may come from that header.
"""

from __future__ import annotations

import hashlib

from aiohttp import web
from pydantic import BaseModel


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def cached_json(request: web.Request, payload: BaseModel, *, max_age: int) -> web.Response:
    body = payload.model_dump_json().encode()
    headers = {
        "ETag": etag_of(body),
        "Cache-Control": f"public, max-age={max_age}",
        "Vary": "Accept-Language",
    }
    if _matches(request.headers.get("If-None-Match"), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/json", headers=headers)
