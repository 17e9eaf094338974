"""Deposits against real PostgreSQL, Redis and Anvil: the scanner loop in this process, a real
Dramatiq worker (threads of this process) crediting through the ledger.

Every test follows a chain of its own name (its own cursor, addresses and deposits) on the
session's Anvil chain, from the head at its start, with addresses of a BIP44 account of its own:
no test sees another's deposits, and only a test's own blocks are ever reorged.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory, unit_of_work
from notifications.service import bind_publisher
from core.settings import ChainSettings
from custody import ledger
from custody.addresses.pool import refill_pool
from custody.addresses.service import allocate
from custody.chains import EvmChain
from custody.deposits import tracking
from custody.deposits.models import Deposit
from custody.ledger.models import LedgerTransfer
from devnet.chains import AnvilChain, deploy_usdc
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from jobs.worker import start_worker
from scanner.follower import ScanConfig, Scanner
from tests.chain_fixtures import anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401
from tests.chain_wallet import ChainWallet
from tests.factories import make_user
from tests.integration.custody.conftest import account_xpub

# Fast enough for 0.2 s blocks; small batches so a test's few dozen blocks still span several.
FAST = ScanConfig(batch_blocks=8, concurrency=3, commit_blocks=40, reorg_window=64, poll_seconds=0.05,
                  max_backoff_seconds=0.5, resend_seconds=2.0, start_margin=0)
WAIT_TIMEOUT = 30.0  # a bound for a hung test, not a performance limit


@pytest.fixture(scope="session")
def usdc_address(anvil_chain: AnvilChain, usdc_artifact: dict[str, Any],  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    return deploy_usdc(anvil_chain.rpc_url, usdc_artifact, tmp_path_factory.mktemp("contracts") / "contracts.json")


@pytest.fixture(scope="session")
def wallet(anvil_chain: AnvilChain, usdc_address: str, usdc_artifact: dict[str, Any]) -> ChainWallet:  # noqa: F811
    return ChainWallet(anvil_chain.rpc_url, usdc_address, usdc_artifact["abi"])


@pytest.fixture
def chain_settings(anvil_chain: AnvilChain, usdc_address: str, wallet: ChainWallet) -> ChainSettings:  # noqa: F811
    return ChainSettings(name=f"dep{uuid.uuid4().hex[:8]}", chain_id=31337, rpc_url=anvil_chain.rpc_url,
                         native="ETH", confirmations=2, tokens={"USDC": usdc_address},
                         account=random.randrange(1_000, 2**31 - 1), start_height=wallet.head())


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def broker(redis_url: str, database_url: str, namespace: str) -> Iterator[RedisBroker]:
    """Sends and (with ``custody_worker``) consumes on a namespace of this test's own."""
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=4, namespace=namespace)
    yield broker
    broker.flush_all()
    close_broker(broker)


@pytest.fixture
async def factory(database_url: str, broker: RedisBroker,
                  redis_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=8)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    client = redis.asyncio.Redis.from_url(redis_url)
    bind_publisher(factory, client)
    yield factory
    await client.aclose()
    await engine.dispose()


@pytest.fixture
def custody_worker(broker: RedisBroker) -> Iterator[None]:
    """A real Dramatiq worker on the deposits queue (the credit and reversal jobs), as `virtuoz worker
    deposits` runs it; the fixture keeps the custody domain's name."""
    worker = start_worker(broker, ["deposits"], worker_threads=2, poll_ms=50)
    yield
    worker.stop(timeout=10_000)


@dataclass
class ScannerRun:
    scanner: Scanner
    task: asyncio.Task[None]
    stop: asyncio.Event

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        await self.scanner.chain.close()


@dataclass
class Deposits:
    """A test's view of its chain: users with addresses, and what the platform recorded."""

    chain: ChainSettings
    factory: async_sessionmaker[AsyncSession]
    xpub: str
    runs: list[ScannerRun] = field(default_factory=list)

    async def start_scanner(self, config: ScanConfig = FAST) -> ScannerRun:
        scanner = Scanner(EvmChain(self.chain.name, self.chain.rpc_url), self.chain, self.factory, config)
        stop = asyncio.Event()
        run = ScannerRun(scanner, asyncio.create_task(scanner.run(stop)), stop)
        self.runs.append(run)
        return run

    async def user_with_address(self) -> tuple[uuid.UUID, str]:
        user_id = await make_user(self.factory, tag="dep", display_name="Depositor")
        return user_id, await self.address_for(user_id)

    async def address_for(self, user_id: uuid.UUID) -> str:
        """The user's deposit address on this test's chain (taken from a pool filled from its xpub)."""
        async with unit_of_work(self.factory) as session:
            await refill_pool(session, self.chain.name, self.xpub, low_water=1, batch=2)
            allocation = await allocate(session, user_id, self.chain.name, "ETH", chains=[self.chain])
        return allocation.deposit_address.address

    async def deposits(self, user_id: uuid.UUID | None = None) -> list[Deposit]:
        async with self.factory() as session:
            query = select(Deposit).where(Deposit.chain == self.chain.name).order_by(Deposit.block_number)
            if user_id is not None:
                query = query.where(Deposit.user_id == user_id)
            return list(await session.scalars(query))

    async def available(self, user_id: uuid.UUID, asset: str) -> int:
        async with self.factory() as session:
            return next((balance.available for balance in await ledger.balances(session, user_id)
                         if balance.currency.code == asset), 0)

    async def transfers(self, reference_prefix: str) -> list[LedgerTransfer]:
        async with self.factory() as session:
            return list(await session.scalars(select(LedgerTransfer)
                                              .where(LedgerTransfer.reference.startswith(reference_prefix))
                                              .order_by(LedgerTransfer.created_at)))

    async def count(self, model: Any, *conditions: Any) -> int:
        async with self.factory() as session:
            return await session.scalar(select(func.count()).select_from(model).where(*conditions))

    async def wait_for(self, condition: Callable[[], Awaitable[bool]], what: str,
                       timeout: float = WAIT_TIMEOUT) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await condition():
            for run in self.runs:
                if run.task.done() and not run.stop.is_set():
                    raise AssertionError(f"the scanner stopped: {run.task.exception()!r}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s; deposits: {await self.deposits()}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def deposits(chain_settings: ChainSettings, factory: async_sessionmaker[AsyncSession],
                   tmp_path: Path) -> AsyncIterator[Deposits]:
    harness = Deposits(chain_settings, factory, account_xpub(chain_settings.account))
    yield harness
    for run in harness.runs:
        if not run.task.done():
            await run.halt()
    await tracking.drain_sends()  # before the broker closes
