"""Request id, CORS, metrics, the error renderer, body timeouts and the transaction boundary.

Order (outermost first): request id → CORS → metrics → errors → body timeouts → transaction.
A route that writes runs in one transaction, committed here once; a read-only route (every GET
unless its registry entry says otherwise) runs on the read-only engine: no BEGIN/COMMIT round
trips, PostgreSQL refusing any write, and once more on a fresh connection when the first one
turns out dead (``retry_read``): nothing it ran can have changed anything.
Every error, aiohttp's own 404/405/413 included, leaves as the JSON body of DESIGN.md. The body
timeouts and the reading of aiohttp's own refusals are core.http_guards', shared with the TRP listener.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from api.http import json_response
from api.keys import (
    METRICS,
    READ_SESSIONS,
    REQUEST_ID,
    ROUTE_SPEC,
    SESSION,
    SESSIONS,
    SETTINGS,
)
from core.db import (
    DatabaseUnavailable,
    commit,
    connection_lost,
    database_unavailable,
    rollback,
)
from core.errors import AppError
from core.http_guards import body_timeout_middleware, http_error
from core.logging import request_id_var

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

Handler = Any
T = TypeVar("T")


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


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AppError as error:
        return error_response(request, error)
    except web.HTTPException as error:
        if error.status < 400:  # redirects and the like are responses, not errors
            raise
        return error_response(request, http_error(request, error))
    except Exception as error:
        if database_unavailable(error):
            # A restart or failover of PostgreSQL: the transaction rolled back, the client may retry.
            log.warning("database unavailable on %s %s: %s", request.method, request.path, error)
            return error_response(request, DatabaseUnavailable(headers={"Retry-After": "1"}))
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
        response.headers["Access-Control-Expose-Headers"] = "X-Request-ID, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
        response.headers.add("Vary", "Origin")
    return response


def db_session(request: web.Request) -> AsyncSession:
    """The request's session, opened on first use; the transaction middleware commits it once.
    A read-only route's session is on the read-only engine: it never opens a transaction."""
    session = request.get(SESSION)
    if session is None:
        spec = request.get(ROUTE_SPEC)
        sessions = READ_SESSIONS if spec is not None and spec.read_only else SESSIONS
        session = request[SESSION] = request.config_dict[sessions]()
    return session


async def retry_read(request: web.Request, run: Callable[[], Awaitable[T]]) -> T:
    """``run`` a read-only route's handler; if its connection is found dead under a statement
    (PostgreSQL restarted since the connection was pooled), once more on a fresh one. Only a
    route on the read-only engine comes here: nothing the first run did can have written."""
    try:
        return await run()
    except Exception as error:
        if not connection_lost(error):
            raise
        log.warning("connection lost on %s %s; running it once more: %s", request.method, request.path, error)
    if (session := request.pop(SESSION, None)) is not None:
        await session.close()  # gives the dead connection back to be discarded
    return await run()


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
