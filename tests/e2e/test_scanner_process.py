"""The scanner and the deposits worker as real processes against Anvil, PostgreSQL and Redis.

Deposits are credited once after their confirmations; a scanner killed with SIGKILL while 50
blocks of deposits are mined resumes at its cursor and credits them all; a credit whose block is
reorged away is reversed and `virtuoz ledger verify` still passes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.models import User
from core.audit import AuditEvent
from core.db import create_engine, session_factory, unit_of_work
from core.migrate import upgrade
from core.settings import ChainSettings
from custody import ledger
from custody.addresses.pool import refill_pool
from custody.addresses.service import allocate
from custody.deposits.models import CREDITED, REORGED, Deposit
from devnet.chains import AnvilChain, deploy_usdc
from devnet.processes import ManagedProcess
from jobs.registry import bind_broker
from tests.chain_fixtures import anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401
from tests.chain_wallet import ChainWallet
from tests.integration.custody.conftest import account_xpub

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 40.0  # a bound for a hung test, not a performance limit
USDC = 10**6
ETH = 10**18


@pytest.fixture
def database_url(postgres) -> str:
    """A database of this test's own: `virtuoz ledger verify` proves all of it (withdrawals and deposits
    against the books too), and the worker's shared one holds other tests' deliberately partial rows."""
    name = f"virtuoz_e2e_scanner_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    url = postgres.url(name)
    upgrade(url)
    return url


@pytest.fixture
async def factory(database_url: str, broker: RedisBroker) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    factory = session_factory(engine)
    bind_broker(factory, broker)  # allocation asks the allocator for a refill after commit
    yield factory
    await engine.dispose()


@pytest.fixture
def chain(anvil_chain: AnvilChain, usdc_artifact: dict[str, Any], tmp_path: Path) -> tuple[ChainSettings, ChainWallet]:  # noqa: F811
    usdc = deploy_usdc(anvil_chain.rpc_url, usdc_artifact, tmp_path / "contracts.json")
    wallet = ChainWallet(anvil_chain.rpc_url, usdc, usdc_artifact["abi"])
    settings = ChainSettings(name=f"e2e{uuid.uuid4().hex[:8]}", chain_id=31337, rpc_url=anvil_chain.rpc_url,
                             native="ETH", confirmations=2, tokens={"USDC": usdc},
                             account=random.randrange(1_000, 2**31 - 1), start_height=wallet.head())
    return settings, wallet


@pytest.fixture
def processes(chain, database_url: str, redis_url: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    settings, _ = chain
    env = {
        **os.environ,
        "VIRTUOZ_ENV": "test",
        "VIRTUOZ_DATA_DIR": str(tmp_path),
        "VIRTUOZ_DATABASE_URL": database_url,
        "VIRTUOZ_REDIS_URL": redis_url,
        "VIRTUOZ_CHAINS": json.dumps([settings.model_dump()]),
        "VIRTUOZ_SCANNER_POLL_SECONDS": "0.05",
        "VIRTUOZ_SCANNER_MAX_BACKOFF_SECONDS": "1",
        "VIRTUOZ_WORKER_POLL_MS": "50",
        "VIRTUOZ_LOG_JSON": "false",
    }
    started: list[ManagedProcess] = []

    def start(name: str, *argv: str) -> ManagedProcess:
        process = ManagedProcess(name, [sys.executable, *argv], env=env, log_path=tmp_path / f"{name}.log",
                                 cwd=REPO_ROOT).start()
        started.append(process)
        return process

    yield {"start": start, "env": env, "started": started}
    for process in started:
        process.stop(timeout=10)


async def wait_for(condition, what: str, processes: list[ManagedProcess]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not await condition():
        for process in processes:
            assert process.alive(), f"{process.name} exited:\n{process.tail(40)}"
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n".join(f"--- {process.name}\n{process.tail(40)}" for process in processes)
            raise AssertionError(f"{what}: not within {TIMEOUT}s\n{logs}")
        await asyncio.sleep(0.1)


async def user_with_address(factory, settings: ChainSettings) -> tuple[uuid.UUID, str]:
    async with unit_of_work(factory) as session:
        user = User(email=f"e2e-{uuid.uuid4().hex[:12]}@example.com", display_name="Depositor", password_hash="-")
        session.add(user)
        await session.flush()
        await refill_pool(session, settings.name, account_xpub(settings.account), low_water=1, batch=2)
        allocation = await allocate(session, user.id, settings.name, "ETH", chains=[settings])
    return user.id, allocation.deposit_address.address


async def chain_deposits(factory, chain: str) -> list[Deposit]:
    async with factory() as session:
        return list(await session.scalars(select(Deposit).where(Deposit.chain == chain)))


async def available(factory, user_id: uuid.UUID, asset: str) -> int:
    async with factory() as session:
        return next((item.available for item in await ledger.balances(session, user_id)
                     if item.currency.code == asset), 0)


async def test_scanner_and_worker_processes_credit_once_resume_after_a_kill_and_reverse_a_reorg(
    chain, processes, factory
) -> None:
    settings, wallet = chain
    start = processes["start"]
    worker = start("worker-deposits", "-m", "cli", "worker", "deposits")
    scanner = start("scanner", "-m", "cli", "scanner", "--chain", settings.name)
    running = [worker, scanner]

    # 1. A native and a USDC deposit, each credited once after 2 confirmations.
    user, address = await user_with_address(factory, settings)
    native = await asyncio.to_thread(wallet.send_native, address, ETH // 2)
    await asyncio.to_thread(wallet.send_usdc, address, 99 * USDC)

    async def all_credited(count: int) -> bool:
        rows = await chain_deposits(factory, settings.name)
        return len(rows) == count and all(row.state == CREDITED for row in rows)

    await wait_for(lambda: all_credited(2), "the first two deposits credited", running)
    assert await available(factory, user, "ETH") == ETH // 2
    assert await available(factory, user, "USDC") == 99 * USDC
    async with factory() as session:
        credits = list(await session.scalars(select(AuditEvent).where(AuditEvent.type == "deposit.credited",
                                                                     AuditEvent.actor == "custody")))
        mine = [event for event in credits if event.data["chain"] == settings.name]
    assert len(mine) == 2 and all(event.data["confirmations"] >= 2 for event in mine)

    # 2. SIGKILL the scanner; 50 blocks with 10 deposits; a new scanner credits them all.
    assert scanner.process is not None
    scanner.process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(scanner.process.wait, 10)
    running.remove(scanner)
    for index in range(10):
        if index % 2:
            await asyncio.to_thread(wallet.send_native, address, ETH // 1000, wait=False)
        else:
            await asyncio.to_thread(wallet.send_usdc, address, USDC, wait=False)
        await asyncio.to_thread(wallet.mine, 5)
    scanner = start("scanner-restarted", "-m", "cli", "scanner", "--chain", settings.name)
    running.append(scanner)
    await wait_for(lambda: all_credited(12), "the 10 deposits mined while the scanner was down", running)
    assert await available(factory, user, "ETH") == ETH // 2 + 5 * (ETH // 1000)
    assert await available(factory, user, "USDC") == 104 * USDC

    # 3. The newest deposit's block is reorged away: its credit is reversed, the books still balance.
    newest = max(await chain_deposits(factory, settings.name), key=lambda row: row.block_number)
    await asyncio.to_thread(wallet.reorg_from, newest.block_number)

    async def newest_reversed() -> bool:
        rows = {row.id: row for row in await chain_deposits(factory, settings.name)}
        return rows[newest.id].state == REORGED and rows[newest.id].reversed_at is not None

    await wait_for(newest_reversed, "the reorged credit reversed", running)
    assert newest.asset == "ETH" and newest.amount == ETH // 1000
    assert await available(factory, user, "ETH") == ETH // 2 + 4 * (ETH // 1000)
    assert sum(row.state == CREDITED for row in await chain_deposits(factory, settings.name)) == 11
    verify = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "cli", "ledger", "verify"],
                                     env=processes["env"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("ledger OK")

    # 4. Both stop cleanly on SIGTERM.
    for process in running:
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
    for process in running:
        assert await asyncio.to_thread(process.process.wait, 25) == 0, process.tail(40)
