"""Typed keys for what the application holds; every resource is opened in a cleanup context."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dramatiq
from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

# The settings key is core's: the guards every app shares (the TRP listener's too) read it.
from core.http_guards import SETTINGS as SETTINGS

if TYPE_CHECKING:

    pass

ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
# Read-only routes and the authentication reads: autocommit connections PostgreSQL keeps read-only.
READ_ENGINE = web.AppKey("read_engine", AsyncEngine)
READ_SESSIONS = web.AppKey("read_sessions", async_sessionmaker[AsyncSession])
REDIS = web.AppKey("redis", Redis)
BROKER = web.AppKey("broker", dramatiq.Broker)
CHAINS = web.AppKey("chains", "list[EvmChain]")
METRICS = web.AppKey("metrics", "HttpMetrics")
ROUTE_TABLES = web.AppKey("route_tables", "list[tuple[str, Routes]]")
STARTED_AT = web.AppKey("started_at", float)
OPENAPI = web.AppKey("openapi", dict)
IDENTITY_CACHE = web.AppKey("identity_cache", "IdentityCache")
LIVE = web.AppKey("live", "LiveConfig")
FILE_STORE = web.AppKey("file_store", "FileStore")  # evidence and KYC documents
REPORT_STORE = web.AppKey("report_store", "FileStore")  # compliance reports, written by the compliance worker
STREAMS = web.AppKey("streams", "set[asyncio.Task[object]]")
PROBE_CACHE = web.AppKey("probe_cache", "ProbeCache")

# Per-request storage.
REQUEST_ID = web.RequestKey("request_id", str)
ROUTE_SPEC = web.RequestKey("route_spec", "RouteSpec")
SESSION = web.RequestKey("session", AsyncSession)
PRINCIPAL = web.RequestKey("principal", "Principal")
CALLER = web.RequestKey("caller", str)  # who signed or logged in, on routes open to service signatures
