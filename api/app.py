"""The application factory: ``create_app(settings)`` builds the same app for `virtuoz api` and tests.

Operational routes (/health, /readiness, /metrics, /docs) live on the root app; the versioned
API is the ``/api/v1`` sub-application. Every resource is opened in a cleanup context.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from redis.asyncio import Redis

from api import docs
from api.address_book import routes as address_book_routes
from api.addresses import routes as address_routes
from api.admin import routes as admin_routes
from api.api_keys import routes as api_key_routes
from api.audit import routes as audit_routes
from api.auth import routes as auth_routes
from api.cms import routes as cms_routes
from api.compliance import routes as compliance_routes
from api.control import control_context
from api.deposits import routes as deposit_routes
from api.escrow import routes as escrow_routes
from api.freezes import routes as freeze_routes
from api.helpdesk import routes as helpdesk_routes
from api.i18n import routes as i18n_routes
from api.keys import (
    BROKER,
    CHAINS,
    ENGINE,
    FILE_STORE,
    IDENTITY_CACHE,
    METRICS,
    OPENAPI,
    PROBE_CACHE,
    READ_ENGINE,
    READ_SESSIONS,
    REDIS,
    REPORT_STORE,
    ROUTE_TABLES,
    SESSIONS,
    SETTINGS,
    STARTED_AT,
    STREAMS,
)
from api.metrics import HttpMetrics
from api.middleware import MIDDLEWARES
from api.notifications import routes as notification_routes
from api.openapi import build_openapi
from api.ops import routes as ops
from api.principal import IdentityCache, add_quota_headers, record_key_use
from api.probes import VERSION, ProbeCache
from api.registry import Routes
from api.reserves import routes as reserves_routes
from api.storage import routes as storage_routes
from api.stream import close_streams
from api.treasury import routes as treasury_routes
from api.verify_email_page import verify_email_page
from api.wallet import routes as wallet_routes
from api.webhooks import routes as webhook_routes
from api.withdrawals import routes as withdrawal_routes
from core.db import create_engine, session_factory
from core.file_stores import file_store
from core.http_guards import add_security_headers
from core.settings import Environment, Settings
from custody.chains import chain_for
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from notifications.service import bind_publisher

API_PREFIX = "/api/v1"


def route_tables(settings: Settings) -> tuple[list[Routes], list[Routes]]:
    """(root tables, /api/v1 tables): the one list every domain's routes are added to."""
    root = [ops.root] + ([docs.docs] if settings.docs_enabled else [])
    if settings.env is Environment.DEVNET:  # elsewhere the integrator's front end serves /verify-email
        root.append(verify_email_page)
    v1 = [
        ops.v1, auth_routes.auth, auth_routes.profile, api_key_routes.api_keys, admin_routes.admin_users,
        audit_routes.audit_events,
        notification_routes.notifications, escrow_routes.escrow, escrow_routes.escrow_admin, storage_routes.storage,
        address_routes.addresses, withdrawal_routes.withdrawals, deposit_routes.scanner_ingest, wallet_routes.wallet,
        address_book_routes.address_book,
        deposit_routes.deposits, helpdesk_routes.helpdesk, helpdesk_routes.helpdesk_platform, cms_routes.cms_public,
        cms_routes.cms_admin, cms_routes.email_templates,
        i18n_routes.platform_content, compliance_routes.kyc_routes, compliance_routes.compliance_routes,
        compliance_routes.admin_compliance_routes, compliance_routes.transaction_review_routes,
        freeze_routes.freezes, treasury_routes.treasury, reserves_routes.reserves, webhook_routes.webhooks,
    ]
    return root, v1


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # No pre-ping (three round trips per checkout): see core.db.create_engine and api.middleware.
    # No overflow: under more concurrent requests than pooled connections, an overflow connection
    # is opened and closed again for nearly every request (a new PostgreSQL process each time:
    # it halved the API's throughput under load). The pools keep as many connections as pool plus
    # overflow would have opened at most, and requests past them wait for one.
    pool = {"pool_size": 2 * settings.database_pool_size, "max_overflow": 0,
            "connect_timeout": settings.readiness.timeout_seconds, "pre_ping": False}
    engine = create_engine(settings.require_database_url(), **pool)
    read_engine = create_engine(settings.require_database_url(), read_only=True, **pool)
    app[ENGINE], app[READ_ENGINE] = engine, read_engine
    app[SESSIONS], app[READ_SESSIONS] = session_factory(engine), session_factory(read_engine)
    yield
    await read_engine.dispose()
    await engine.dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    timeout = app[SETTINGS].readiness.timeout_seconds
    client = Redis.from_url(app[SETTINGS].require_redis_url(), socket_timeout=timeout, socket_connect_timeout=timeout)
    app[REDIS] = client
    app[BROKER] = create_broker(app[SETTINGS].require_redis_url(), broker_url=app[SETTINGS].broker_url)
    bind_broker(app[SESSIONS], app[BROKER])  # so services can send_after_commit
    bind_publisher(app[SESSIONS], client)  # and notify users after commit
    yield
    close_broker(app[BROKER])
    await client.aclose()


async def _file_stores(app: web.Application) -> AsyncIterator[None]:
    """Evidence and KYC documents, and the reports the compliance worker writes: local directories,
    or the S3 bucket every replica shares (VIRTUOZ_FILE_STORE)."""
    evidence, reports = file_store(app[SETTINGS], "evidence"), file_store(app[SETTINGS], "reports")
    app[FILE_STORE], app[REPORT_STORE] = evidence, reports
    yield
    await evidence.close()
    await reports.close()


async def _chains(app: web.Application) -> AsyncIterator[None]:
    chains = [chain_for(chain) for chain in app[SETTINGS].chains]
    app[CHAINS] = chains
    yield
    for chain in chains:
        await chain.close()


def create_app(settings: Settings, *, extra_routes: Sequence[Routes] = (),
               metrics: HttpMetrics | None = None) -> web.Application:
    """Build the application. ``extra_routes`` mounts more tables under /api/v1 (tests use it to
    exercise the middleware with routes of their own); ``metrics``, the metrics of one worker of
    several (``cli.api_workers``), else this process's own."""
    settings.check()
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[METRICS] = metrics or HttpMetrics()
    app[STARTED_AT] = time.monotonic()
    app[IDENTITY_CACHE] = IdentityCache(session_ttl=settings.session_cache_seconds)
    app[STREAMS] = set()
    app[PROBE_CACHE] = ProbeCache(settings.probe_cache_seconds)
    app.on_shutdown.append(close_streams)
    app.on_response_prepare.extend([add_security_headers, add_quota_headers])
    app.cleanup_ctx.extend([_database, _redis, control_context, _chains, _file_stores,
                             record_key_use])

    root_tables, v1_tables = route_tables(settings)
    v1_tables = [*v1_tables, *extra_routes]
    api = web.Application(client_max_size=settings.max_body_bytes)
    for table in root_tables:
        table.mount(app)
    for table in v1_tables:
        table.mount(api)
    if settings.docs_enabled:
        docs.mount_assets(app)
    app.add_subapp(API_PREFIX, api)

    tables = [("", table) for table in root_tables] + [(API_PREFIX, table) for table in v1_tables]
    app[ROUTE_TABLES] = tables
    app[OPENAPI] = build_openapi(tables, version=VERSION, server_url=settings.public_url)
    return app
