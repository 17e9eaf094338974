"""Request id, CORS, metrics, the error renderer, body timeouts and the transaction boundary.

Order (outermost first): request id → CORS → metrics → errors → body timeouts → transaction.
Every error, aiohttp's own 404/405/413 included, leaves as the JSON body of DESIGN.md.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from api.http import json_response
from api.keys import METRICS, REQUEST_ID, SESSION, SESSIONS, SETTINGS
from core.db import commit, rollback
from core.errors import AppError, MethodNotAllowed, NotFound, PayloadTooLarge
from core.logging import request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Handler = Any


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A client's id is kept only when it is short and plain: it ends up in logs and headers.
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _CLIENT_REQUEST_ID.match(offered) else str(uuid.uuid4())
    request[REQUEST_ID] = request_id
    token = request_id_var.set(request_id)
    try:
        response = await handler(request)
    finally:
        request_id_var.reset(token)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def error_response(request: web.Request, error: AppError) -> web.Response:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "details": error.details,
            "request_id": request.get(REQUEST_ID),
        }
    }
    return json_response(body, status=error.status, headers=error.headers)


def _from_http_exception(request: web.Request, error: web.HTTPException) -> AppError:
    if isinstance(error, web.HTTPNotFound):
        return NotFound("No route matches this path.")
    if isinstance(error, web.HTTPMethodNotAllowed):
        allowed = sorted(error.allowed_methods)
        return MethodNotAllowed(details={"allowed": allowed}, headers={"Allow": ", ".join(allowed)})
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge(details={"max_bytes": request.config_dict[SETTINGS].max_body_bytes})
    return AppError(error.reason, code=error.reason.lower().replace(" ", "_"), status=error.status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as error:
        return error_response(request, error)
    except web.HTTPException as error:
        if error.status < 400:  # redirects and the like are responses, not errors
            raise
        return error_response(request, _from_http_exception(request, error))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        internal = AppError("Internal error; quote the request id to support.", code="internal_error", status=500)
        return error_response(request, internal)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        request.config_dict[METRICS].observe(request, status, time.perf_counter() - started)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in request.config_dict[SETTINGS].cors_origins
    if allowed and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, Authorization, Idempotency-Key, X-Request-ID",
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )
    response = await handler(request)
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = origin  # type: ignore[assignment]
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After"
        response.headers.add("Vary", "Origin")
    return response


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


def db_session(request: web.Request) -> AsyncSession:
    """The request's session, opened on first use; the transaction middleware commits it once."""
    session = request.get(SESSION)
    if session is None:
        session = request[SESSION] = request.config_dict[SESSIONS]()
    return session


@web.middleware
async def transaction_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except BaseException as error:
        if (session := request.get(SESSION)) is not None:
            try:
                if isinstance(error, AppError) and error.keep_changes:
                    await commit(session)
                else:
                    await rollback(session)
            finally:
                await session.close()
        raise
    if (session := request.get(SESSION)) is not None:
        try:
            await commit(session)
        finally:
            await session.close()
    return response


MIDDLEWARES = [request_id_middleware, cors_middleware, metrics_middleware, error_middleware, body_timeout_middleware,
               transaction_middleware]
