"""Compliance tests: the real app with the compliance route tables, a session factory, a worker, and
the check every projection must pass (its fold of the audit events equals its row)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import reduce

import pytest
from aiohttp.test_utils import TestClient
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import route_tables
from api.compliance.routes import (
    admin_compliance_routes,
    compliance_routes,
    kyc_routes,
    transaction_review_routes,
)
from core import audit
from core.db import create_engine, session_factory
from core.file_stores import file_store
from core.settings import Settings
from jobs.broker import DEFAULT_NAMESPACE, close_broker, create_broker
from jobs.context import using_settings
from jobs.registry import bind_broker
from jobs.worker import start_worker

JOIN_TIMEOUT_MS = 30_000
COMPLIANCE_TABLES = (kyc_routes, compliance_routes, admin_compliance_routes, transaction_review_routes)


@pytest.fixture
async def client(make_client, settings: Settings) -> TestClient:
    """The app with the compliance routes, whether or not api.app mounts them yet."""
    return await make_client(settings, extra_routes=unmounted(settings))


def unmounted(settings: Settings) -> list:
    """The compliance route tables that api.app does not mount (yet)."""
    _, mounted = route_tables(settings)
    return [table for table in COMPLIANCE_TABLES if table not in mounted]


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def app_broker(redis_url: str, database_url: str) -> Iterator[RedisBroker]:
    """A worker-side broker on the namespace the app sends to (this xdist worker's own Redis)."""
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=2, namespace=DEFAULT_NAMESPACE)
    yield broker
    close_broker(broker)


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def broker(redis_url, database_url, namespace) -> Iterator[RedisBroker]:
    """A broker on a namespace of its own: what a test enqueues (or a scheduler sends) is only its own."""
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=2, namespace=namespace)
    yield broker
    broker.flush_all()
    close_broker(broker)


@asynccontextmanager
async def running_worker(broker: RedisBroker, settings: Settings) -> AsyncIterator[None]:
    with using_settings(settings):
        worker = start_worker(broker, {"reports"}, worker_threads=2)
        try:
            yield
        finally:
            await asyncio.to_thread(worker.stop, timeout=JOIN_TIMEOUT_MS)


async def drain(broker: RedisBroker, settings: Settings) -> None:
    """Run the compliance worker until the reports queue is empty."""
    async with running_worker(broker, settings):
        await asyncio.to_thread(broker.join, "reports", timeout=JOIN_TIMEOUT_MS)


async def report_file(settings: Settings, key: str) -> bytes:
    """A report file as the worker stored it, read through the reports file store."""
    store = file_store(settings, "reports")
    try:
        return b"".join([chunk async for chunk in store.read(key)])
    finally:
        await store.close()


def bound(factory: async_sessionmaker[AsyncSession], broker: RedisBroker) -> async_sessionmaker[AsyncSession]:
    bind_broker(factory, broker)
    return factory


async def rebuilt(factory, aggregate_type, aggregate_id, reducer, loader):
    """(the fold of the aggregate's audit events, its stored row as the projection loads it)."""
    async with factory() as session:
        events = [audit.as_dict(event) for event in await audit.events_of(session, aggregate_type, aggregate_id)]
        return reduce(reducer, events, None), await loader(session, str(aggregate_id))
