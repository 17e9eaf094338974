"""`virtuoz worker allocator` as a real process: fills a chain's pool from the xpub file, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from bip_utils import Bip32Secp256k1, Bip39SeedGenerator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory
from custody.addresses.models import DepositAddress
from custody.hd import deposit_address
from devnet.processes import ManagedProcess
from jobs.registry import registered_jobs
from signer.derivation import ChainKeys
from signer.exports import write_exports

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
# Bounds for a hung test, not performance limits.
REFILL_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0
MNEMONIC = "test test test test test test test test test test test junk"
BATCH = 12


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def xpub() -> str:
    root = Bip32Secp256k1.FromSeed(Bip39SeedGenerator(MNEMONIC).Generate(""))
    return root.DerivePath("m/44'/60'/3'").PublicKey().ToExtended()


@pytest.fixture
def allocator(database_url: str, redis_url: str, tmp_path: Path, xpub: str) -> Iterator[tuple[ManagedProcess, str]]:
    """`python -m cli worker allocator` configured like the devnet does it: env only, xpub file only."""
    chain = f"e2echain{uuid.uuid4().hex[:6]}"
    xpub_file, public_key_file = tmp_path / "xpubs.json", tmp_path / "signer-key.pub"
    # What `virtuoz signer init` exports: the signed xpub file and the signer public key.
    write_exports(xpub_file, public_key_file, Bip39SeedGenerator(MNEMONIC).Generate(""),
                  [ChainKeys.default(chain, 3)])
    env = {
        **os.environ,
        "VIRTUOZ_ENV": "test",
        "VIRTUOZ_DATA_DIR": str(tmp_path),
        "VIRTUOZ_DATABASE_URL": database_url,
        "VIRTUOZ_REDIS_URL": redis_url,
        "VIRTUOZ_CHAINS": json.dumps([{"name": chain, "chain_id": 31337, "rpc_url": "http://127.0.0.1:1",
                                       "native": "ETH", "account": 3}]),
        "VIRTUOZ_XPUB_FILE": str(xpub_file),
        "VIRTUOZ_SIGNER_PUBLIC_KEY_FILE": str(public_key_file),
        # No keystore exists anywhere: the allocator must not need one.
        "VIRTUOZ_SIGNER_KEYSTORE_DIR": str(tmp_path / "no-keystore-here"),
        "VIRTUOZ_ADDRESS_POOL_LOW_WATER": "5",
        "VIRTUOZ_ADDRESS_POOL_BATCH": str(BATCH),
        "VIRTUOZ_LOG_JSON": "false",
    }
    process = ManagedProcess("worker-allocator", [sys.executable, "-m", "cli", "worker", "allocator"], env=env,
                             log_path=tmp_path / "worker-allocator.log", cwd=REPO_ROOT).start()
    yield process, chain
    process.stop(timeout=EXIT_TIMEOUT)


async def pool(factory: async_sessionmaker[AsyncSession], chain: str) -> list[DepositAddress]:
    async with factory() as session:
        rows = await session.scalars(
            select(DepositAddress).where(DepositAddress.chain == chain).order_by(DepositAddress.derivation_index))
        return list(rows)


async def test_allocator_worker_refills_the_pool_and_exits_zero_on_sigterm(allocator, broker, factory,
                                                                             xpub) -> None:
    process, chain = allocator
    # What the scheduler sends every minute: the worker fans it out to one refill per chain.
    refill_all = next(spec for spec in registered_jobs() if spec.name == "allocator.refill_all")
    broker.enqueue(refill_all.message())

    deadline = asyncio.get_running_loop().time() + REFILL_TIMEOUT
    while len(rows := await pool(factory, chain)) < BATCH:
        assert process.alive(), f"the allocator exited early:\n{process.tail()}"
        assert asyncio.get_running_loop().time() < deadline, f"no refill in {REFILL_TIMEOUT}s:\n{process.tail()}"
        await asyncio.sleep(0.1)

    assert [row.derivation_index for row in rows] == list(range(BATCH))
    assert all(row.address == deposit_address(xpub, row.derivation_index) for row in rows)
    assert all(row.user_id is None for row in rows)

    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.process.wait, EXIT_TIMEOUT) == 0, process.tail()
