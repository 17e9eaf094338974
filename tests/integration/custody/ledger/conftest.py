"""Ledger fixtures: an engine on this worker's database, bare users, funding, and the books checked
after every test.

The database is shared by the tests of a pytest worker and never cleaned, so every test makes
its own users (fresh ids isolate them) and the whole ledger must verify after each one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory
from custody import ledger
from tests.factories import credit_user, make_user

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="session")
async def ledger_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    # Room for the races: 20 concurrent sessions each on its own connection.
    engine = create_engine(database_url, pool_size=16)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(ledger_engine: AsyncEngine) -> Sessions:
    return session_factory(ledger_engine)


@pytest.fixture
def make_user_id(sessions: Sessions) -> Callable[[], Awaitable[uuid.UUID]]:
    """A bare users row each call: what the ledger's foreign keys need."""
    return lambda: make_user(sessions, tag="ledger")


@pytest.fixture
def fund(sessions: Sessions) -> Callable[[uuid.UUID, str, int], Awaitable[ledger.Transfer]]:
    """Credit a user from the system ``test_funding`` account, in a committed unit of work."""
    return lambda user_id, currency, amount: credit_user(sessions, user_id, currency, amount, source="test_funding")


async def balance_of(sessions: Sessions, user_id: uuid.UUID, currency: str) -> tuple[int, int]:
    """(available, held) in minor units."""
    async with sessions() as session:
        for row in await ledger.balances(session, user_id):
            if row.currency.code == currency:
                return row.available, row.held
    return 0, 0


@pytest.fixture(autouse=True)
async def books_balance_after_each_test(sessions: Sessions) -> AsyncIterator[None]:
    yield
    async with sessions() as session:
        assert await ledger.verify_ledger(session) == []
