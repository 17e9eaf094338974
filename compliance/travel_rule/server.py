"""`virtuoz trp`: the platform's TRP endpoints, one mutual-TLS listener per VASP identity.

Only peers with a certificate from the trusted CA get past the TLS handshake. Each listener
answers, for its identity:

- ``POST /inquiry/{account}``: a counterparty's inquiry for one of our customers' addresses. The
  policy decides at once: approve when the account is a deposit address we assigned and the
  originator is not on the sanctions list; reject otherwise. The inbound transfer is recorded with
  its decision (and its audit events) before the answer leaves; the same request identifier again
  gets the same answer.
- ``POST /callback/{request_identifier}``: a resolution for one of our outbound inquiries that the
  counterparty decided later, taken only with the certificate the inquiry went to (else 403
  ``trp_peer_mismatch``, recorded).
- ``POST /confirm/{request_identifier}``: the counterparty's ``txid`` (or ``canceled``) for an
  inbound transfer we approved, taken only with the certificate the inquiry came with.
- ``GET /identity``: the identity's name, LEI and certificate (TRP's discoverability extension).

Like the API, every answer carries the hardening headers (never cached), a body that stops arriving
or trickles is cut off (408), one over the cap is refused (413), and every refusal is a JSON error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from compliance.travel_rule import inbound, trp
from compliance.travel_rule.tls import identity_files, peer_certificate, server_context
from core.db import commit, create_engine, rollback, session_factory, unit_of_work
from core.errors import AppError
from core.http_guards import SETTINGS, add_security_headers, body_timeout_middleware, http_error
from core.settings import Settings, VaspIdentity
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from notifications.service import bind_publisher

log = logging.getLogger(__name__)

SESSIONS = web.AppKey("sessions", async_sessionmaker)
IDENTITY = web.AppKey("identity", VaspIdentity)
# An inquiry is a few kilobytes of IVMS101; a counterparty has no reason to send the API's larger bodies.
MAX_BODY_BYTES = 256 * 1024


def _json(status: int, body: str) -> web.Response:
    return web.Response(status=status, text=body, content_type=trp.JSON)


def _error(error: AppError) -> web.Response:
    response = _json(error.status, trp.dumps({"error": {"code": error.code, "message": error.message,
                                                         "details": error.details}}))
    response.headers.update(error.headers)  # a 405's Allow
    return response


Handler = Callable[[web.Request, str, dict[str, Any]], Awaitable[str]]

REQUESTS = Counter("virtuoz_trp_requests_total", "TRP requests answered, by our identity, route template and "
                   "status.", ["identity", "route", "status"])


@web.middleware
async def _counted(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    response = await handler(request)  # _errors, inside, turns every failure into a response
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    REQUESTS.labels(request.app[IDENTITY].name, route, str(response.status)).inc()
    return response


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    """Every refusal as TRP JSON (never a trace), the listener's own included: no route, a wrong
    method, a body over the cap (413) or too slow (408)."""
    try:
        return await handler(request)
    except AppError as error:
        return _error(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error(http_error(request, error))
    except Exception:
        log.exception("TRP request failed")
        return _json(500, trp.dumps({"error": {"code": "internal_error", "message": "Internal error."}}))


def _trp(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Headers and body checked, the peer named."""

    async def wrapped(request: web.Request) -> web.Response:
        identifier = trp.check_headers(request.headers)
        body = trp.loads(await request.read())
        return _json(200, await handler(request, identifier, body))

    return wrapped


def _peer(request: web.Request) -> tuple[str | None, str | None]:
    """(common name, fingerprint) of the client certificate the peer presented in the handshake."""
    transport = request.transport
    return peer_certificate(transport.get_extra_info("ssl_object") if transport else None)


@contextlib.asynccontextmanager
async def _recording(sessions: async_sessionmaker) -> AsyncIterator[AsyncSession]:
    """``unit_of_work``, except that a refusal which is itself a recorded fact (``keep_changes``: a
    callback from the wrong certificate) commits what it wrote, as the API's boundary does."""
    async with sessions() as session:
        try:
            yield session
        except AppError as error:
            await (commit(session) if error.keep_changes else rollback(session))
            raise
        except BaseException:
            await rollback(session)
            raise
        await commit(session)


@_trp
async def trp_inquiry(request: web.Request, identifier: str, body: dict[str, Any]) -> str:
    app = request.app
    inquiry = trp.parse_inquiry(identifier, body)
    name, fingerprint = _peer(request)
    async with unit_of_work(app[SESSIONS]) as session:
        resolution = await inbound.receive(session, app[SETTINGS], app[IDENTITY], inquiry,
                                           account=request.match_info["account"], peer=name, fingerprint=fingerprint)
    return trp.resolution_body(resolution)


@_trp
async def trp_callback(request: web.Request, identifier: str, body: dict[str, Any]) -> str:
    if request.match_info["request_identifier"] != identifier:
        raise trp.TrpError("The path and the request-identifier header differ.")
    name, fingerprint = _peer(request)
    async with _recording(request.app[SESSIONS]) as session:
        await inbound.resolved(session, identifier, trp.parse_resolution(body), peer=name, fingerprint=fingerprint)
    return trp.dumps({})


@_trp
async def trp_confirm(request: web.Request, identifier: str, body: dict[str, Any]) -> str:
    if request.match_info["request_identifier"] != identifier:
        raise trp.TrpError("The path and the request-identifier header differ.")
    name, fingerprint = _peer(request)
    async with _recording(request.app[SESSIONS]) as session:
        await inbound.confirmed(session, identifier, txid=body.get("txid"), canceled=body.get("canceled"),
                                peer=name, fingerprint=fingerprint)
    return trp.dumps({})


async def trp_identity(request: web.Request) -> web.Response:
    identity, settings = request.app[IDENTITY], request.app[SETTINGS]
    assert settings.travel_rule_pki_dir is not None
    certificate = identity_files(settings.travel_rule_pki_dir, identity.name).cert.read_text()
    return _json(200, trp.dumps({"name": identity.legal_name, "lei": identity.lei, "x509": certificate}))


def create_trp_app(settings: Settings, identity: VaspIdentity, sessions: async_sessionmaker) -> web.Application:
    # The API's guards, in the API's order: errors outermost, so a body timeout is rendered too.
    app = web.Application(middlewares=[_counted, _errors, body_timeout_middleware],
                          client_max_size=min(MAX_BODY_BYTES, settings.max_body_bytes))
    app.on_response_prepare.append(add_security_headers)
    app[SETTINGS], app[IDENTITY], app[SESSIONS] = settings, identity, sessions
    app.router.add_post("/inquiry/{account}", trp_inquiry)
    app.router.add_post("/callback/{request_identifier}", trp_callback)
    app.router.add_post("/confirm/{request_identifier}", trp_confirm)
    app.router.add_get("/identity", trp_identity)
    return app


async def serve(settings: Settings, names: list[str] | None = None, stop: asyncio.Event | None = None) -> None:
    """Serve every configured identity (or the named ones) until ``stop`` or SIGTERM/SIGINT."""
    identities = [settings.vasp(name) for name in names] if names else list(settings.travel_rule_identities)
    assert settings.travel_rule_pki_dir is not None
    engine = create_engine(settings.require_database_url(), pool_size=4)
    sessions = session_factory(engine)
    # Like every process: the broker (which loads every domain's jobs and models) for jobs sent
    # after commit, and Redis for the notifications a decision sends.
    broker = create_broker(settings.require_redis_url(), broker_url=settings.broker_url)
    bind_broker(sessions, broker)
    redis = Redis.from_url(settings.require_redis_url())
    bind_publisher(sessions, redis)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    runners = []
    try:
        for identity in identities:
            runner = web.AppRunner(create_trp_app(settings, identity, sessions), access_log=None)
            await runner.setup()
            context = server_context(identity_files(settings.travel_rule_pki_dir, identity.name))
            await web.TCPSite(runner, identity.host, identity.port, ssl_context=context).start()
            runners.append(runner)
            log.info("TRP identity %s (%s) listening on %s", identity.name, identity.legal_name, identity.base_url)
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        close_broker(broker)
        await redis.aclose()
        await engine.dispose()
