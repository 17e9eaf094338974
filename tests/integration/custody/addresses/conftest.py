"""Fixtures for the deposit address tests: an xpub file from the fixed mnemonic, a chain of one's own.

The deposit_addresses table is shared by every test of a worker and never cleaned, so every test
gets a chain name of its own: its pool starts empty and no other test takes from it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory, unit_of_work
from core.settings import ChainSettings, Settings
from custody.addresses.models import DepositAddress
from custody.addresses.pool import refill_pool
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from tests.integration.custody.conftest import XPUB, write_xpub_file

USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def chain_name() -> str:
    return f"testchain{uuid.uuid4().hex[:6]}"


@pytest.fixture
def custody_settings(settings: Settings, chain_name: str) -> Settings:
    """Settings with one chain of this test's own and its xpub file (what `signer init` would write)."""
    chain = ChainSettings(name=chain_name, chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                          tokens={"USDC": USDC})
    write_xpub_file(settings, [chain])
    return settings.model_copy(update={"chains": [chain]})


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def broker(redis_url: str, namespace: str) -> Iterator[RedisBroker]:
    """A sending broker on a namespace of this test's own: its queues start empty."""
    broker = create_broker(redis_url, namespace=namespace)
    yield broker
    broker.flush_all()
    close_broker(broker)


@pytest.fixture
async def factory(database_url: str, broker: RedisBroker) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    # Large enough for the races: every concurrent allocation holds a connection.
    engine = create_engine(database_url, pool_size=30)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    yield factory
    await engine.dispose()


async def fill_pool(factory: async_sessionmaker[AsyncSession], chain: str, size: int) -> None:
    """Exactly ``size`` unassigned addresses on a fresh chain."""
    async with unit_of_work(factory) as session:
        await refill_pool(session, chain, XPUB, low_water=size - 1, batch=size)


async def pool_rows(factory: async_sessionmaker[AsyncSession], chain: str) -> list[DepositAddress]:
    async with factory() as session:
        result = await session.scalars(
            select(DepositAddress).where(DepositAddress.chain == chain).order_by(DepositAddress.derivation_index))
        return list(result)


async def unassigned(factory: async_sessionmaker[AsyncSession], chain: str) -> int:
    async with factory() as session:
        return await session.scalar(select(func.count()).select_from(DepositAddress).where(
            DepositAddress.chain == chain, DepositAddress.user_id.is_(None)))
