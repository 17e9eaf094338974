"""Factories for the helpdesk tests: an app with the helpdesk routes, customers, staff, tickets.

The database is shared by every test of a worker and never cleaned: each test makes its own
users and tickets and asserts only about them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import route_tables
from api.helpdesk.routes import helpdesk, helpdesk_platform
from core import audit
from core.db import create_engine, session_factory
from notifications.service import Notification
from core.settings import Settings
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker

API = "/api/v1"
TICKETS = f"{API}/helpdesk/tickets"


def unmounted_helpdesk_tables(settings: Settings) -> list[Any]:
    """The helpdesk tables the app does not mount yet (none once api/app.py wires them)."""
    _, v1 = route_tables(settings)
    return [table for table in (helpdesk, helpdesk_platform) if all(table is not mounted for mounted in v1)]


@pytest.fixture
async def app_client(make_client, settings: Settings) -> TestClient:
    return await make_client(settings, extra_routes=unmounted_helpdesk_tables(settings))


@pytest.fixture
async def db(database_url: str, redis_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory of our own, for service calls with a chosen clock and for reading rows.
    Its sessions send jobs after commit like the API's (a staff reply emails the customer)."""
    engine = create_engine(database_url, pool_size=2)
    broker = create_broker(redis_url)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    yield factory
    close_broker(broker)
    await engine.dispose()


async def open_ticket(client: TestClient, user, **fields: Any) -> dict[str, Any]:
    payload = {"subject": "Withdrawal stuck", "body": "My withdrawal has been pending for a day.", **fields}
    response = await client.post(TICKETS, json=payload, headers=user.headers)
    body = await response.json()
    assert response.status == 201, body
    return body


async def error_of(response, status: int) -> dict[str, Any]:
    body = await response.json()
    assert response.status == status, body
    return body["error"]


async def notifications_of(db: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> list[Notification]:
    async with db() as session:
        return list(await session.scalars(
            select(Notification).where(Notification.user_id == user_id).order_by(Notification.seq)
        ))


async def ticket_events(db: async_sessionmaker[AsyncSession], ticket_id: str | uuid.UUID) -> list[dict[str, Any]]:
    async with db() as session:
        return [audit.as_dict(event) for event in await audit.events_of(session, "ticket", ticket_id)]
