"""Worker-level sweep tests: the treasury worker's steps against real PostgreSQL and Redis, a stub chain, and
the real signer's sweep logic (``signer.sweeps.SweepSigner``, its journal in a temporary file) answering
the requests the worker queued, with replies signed by the signer key of the fixed seed.

Each step runs as the worker's job wrapper runs it: one unit of work, committed, then what it sent after
commit is in Redis (a broker namespace of the test's own). Only the chain is a stub (``SweepChain``:
balances are told, transactions mined by hand), installed where the treasury looks its adapter up. The
database is shared by a worker's tests and never cleaned: every test has a chain name and a BIP44
account of its own.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.redis import RedisBroker
from eth_account import Account
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli import registry
from core import audit
from core.db import create_engine, session_factory, unit_of_work
from core.sanctions import SanctionsList
from core.settings import (
    ChainSettings,
    Settings,
    WithdrawalLimit,
    default_signer_fee_caps,
)
from core.sign_requests import UnsignedTx
from core.sweep_requests import SIGN_SWEEP_ACTOR
from core.time import utcnow
from custody.addresses.pool import refill_pool
from custody.addresses.service import allocate
from custody.deposits import crediting
from custody.deposits.models import Deposit
from custody.treasury import pipeline, service
from custody.treasury.models import Sweep, SweepTransaction
from custody.withdrawals.authorization import _parse
from custody.withdrawals.models import ReleasedNonce
from jobs.broker import close_broker, create_broker
from jobs.context import using_settings
from jobs.registry import bind_broker, registered_jobs
from signer.journal import Journal
from signer.policy import Policy
from signer.service import Signer
from signer.sweeps import SweepSigner, reply_for
from tests.factories import make_user
from tests.integration.custody.conftest import (
    SEED,
    SIGNER_KEY,
    account_xpub,
    write_xpub_file,
)
from tests.unit.custody.withdrawals.conftest import hot_wallet_key, request_key_pem
from tests.unit.custody.withdrawals.stub_chain import GWEI, StubChain

CHAIN_ID = 31337
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CONFIRMATIONS = 2
STUCK_BLOCKS = 3
REBROADCAST_BLOCKS = 4
FEE_CAPS = default_signer_fee_caps()["ethereum"]
QUEUES = ("treasury", "signer", "custody", "notifications")
ETH, USDC = 10**18, 10**6


class SweepChain(StubChain):
    """The stub chain, holding what the test says each address holds (``holdings``)."""

    def __init__(self, name: str, chain_id: int) -> None:
        super().__init__(name, chain_id)
        self.holdings: dict[tuple[str, str | None], int] = {}  # (address, token or None) → minor units

    async def balances(self, addresses: Sequence[str], tokens: Sequence[str], block: int,
                       chunk: int = 500) -> dict[tuple[str, str | None], int]:
        self._fail_if_told("balances")
        return {(address, token): self.holdings.get((address, token), 0) for address in addresses
                for token in (None, *tokens)}


@dataclass
class Treasury:
    settings: Settings
    chain: SweepChain
    chain_settings: ChainSettings
    factory: async_sessionmaker[AsyncSession]
    broker: RedisBroker
    signer: SweepSigner

    @property
    def hot_wallet(self) -> str:
        return self.signer.signer.hot_wallet(CHAIN_ID)

    # --- rows ----------------------------------------------------------------------------------

    async def address(self) -> tuple[uuid.UUID, str]:
        """A customer and their deposit address on the test's chain (from a pool of its xpub)."""
        user_id = await make_user(self.factory, tag="sweep", display_name="Depositor")
        async with unit_of_work(self.factory) as session:
            await refill_pool(session, self.chain.name, account_xpub(self.chain_settings.account), low_water=1,
                              batch=2)
            allocation = await allocate(session, user_id, self.chain.name, "ETH", chains=[self.chain_settings])
        return user_id, allocation.deposit_address.address

    async def credited(self, user_id: uuid.UUID, address: str, asset: str, amount: int, block: int = 50) -> None:
        """A deposit to ``address`` the scanner saw and the deposits worker credited; the chain holds it."""
        deposit_id = uuid.uuid4()
        async with unit_of_work(self.factory) as session:
            session.add(Deposit(id=deposit_id, chain=self.chain.name, tx_hash="0x" + uuid.uuid4().hex * 2,
                                log_index=-1 if asset == "ETH" else 0, tx_log_index=-1 if asset == "ETH" else 0,
                                block_number=block, block_hash="0x" + "ab" * 32, from_address=None,
                                to_address=address, user_id=user_id, asset=asset, amount=amount, state="confirming",
                                confirmations=CONFIRMATIONS, required_confirmations=CONFIRMATIONS, source="scanner"))
        async with unit_of_work(self.factory) as session:
            assert await crediting.credit(session, deposit_id)
        token = None if asset == "ETH" else TOKEN
        self.chain.holdings[(address, token)] = self.chain.holdings.get((address, token), 0) + amount

    # --- the worker's steps, one unit of work each ----------------------------------------------

    async def find(self) -> list[Sweep]:
        async with unit_of_work(self.factory) as session:
            return await service.find_sweeps(session, self.settings)

    async def drive(self, sweep_id: uuid.UUID) -> None:
        async with unit_of_work(self.factory) as session:
            await pipeline.drive(session, self.settings, str(sweep_id))

    async def run(self, job_name: str, *args: Any) -> None:
        """One treasury job, as the worker runs it."""
        spec = next(spec for spec in registered_jobs() if spec.name == job_name)
        assert spec.fn is not None
        with using_settings(self.settings):
            async with unit_of_work(self.factory) as session:
                await spec.fn(session, *args)

    async def signer_answers(self) -> list[Any]:
        """The signer takes every sign request waiting for it and answers on the treasury queue, then the
        worker runs those answers; the outcomes, in order."""
        waiting = [message for message in self.queued_messages("signer") if message.actor_name == SIGN_SWEEP_ACTOR]
        self.broker.flush("signer")
        outcomes = [self.signer.handle(*message.args) for message in waiting]
        for outcome in outcomes:
            reply = reply_for(outcome, SIGNER_KEY)
            await self.run(reply.actor_name, *reply.args)
        return outcomes

    def queued_messages(self, queue: str) -> list[dramatiq.Message[Any]]:
        key = f"{self.broker.namespace}:{queue}"
        ids = self.broker.client.lrange(key, 0, -1)
        bodies = self.broker.client.hmget(f"{key}.msgs", ids) if ids else []
        return list(map(dramatiq.Message.decode, bodies))

    def queued(self, queue: str) -> list[tuple[str, tuple[Any, ...]]]:
        return [(message.actor_name, tuple(message.args)) for message in self.queued_messages(queue)]

    def forget_queued(self) -> None:
        for queue in QUEUES:
            self.broker.flush(queue)

    # --- time and the chain -----------------------------------------------------------------------

    async def retry_due(self, sweep_id: uuid.UUID) -> None:
        """Time is told, not waited for: the sweep's retry time has come."""
        async with unit_of_work(self.factory) as session:
            await session.execute(update(Sweep).where(Sweep.id == sweep_id).values(retry_at=utcnow()))

    def mine(self, row: SweepTransaction, *, status: int = 1, gas_used: int = 21_000) -> None:
        """Mine ``row``'s transaction; its value moves (a top-up's native coin, a sweep's asset and gas)."""
        assert row.tx_hash is not None
        receipt = self.chain.mine(row.tx_hash, status=status, gas_used=gas_used, effective_gas_price=2 * GWEI)
        holdings = self.chain.holdings
        holdings[(row.sender, None)] = holdings.get((row.sender, None), 0) - receipt.gas_used * 2 * GWEI
        self.chain.mined_nonces[row.sender] = row.nonce + 1
        if status != 1:
            return
        unsigned = UnsignedTx.parse(row.unsigned_tx)
        moved = (row.sender, None) if unsigned.data == "0x" else (row.sender, TOKEN)
        destination = unsigned.to if unsigned.data == "0x" else None  # a token sweep pays the hot wallet
        holdings[moved] = holdings.get(moved, 0) - row.value
        if destination is not None:
            holdings[(destination, None)] = holdings.get((destination, None), 0) + row.value

    # --- reads ---------------------------------------------------------------------------------

    async def sweeps(self, address: str | None = None) -> list[Sweep]:
        async with self.factory() as session:
            query = select(Sweep).where(Sweep.chain == self.chain.name)
            if address is not None:
                query = query.where(Sweep.address == address)
            return list(await session.scalars(query.order_by(Sweep.created_at)))

    async def sweep(self, sweep_id: uuid.UUID) -> Sweep:
        async with self.factory() as session:
            found = await session.get(Sweep, sweep_id)
            assert found is not None
            return found

    async def transactions(self, sweep_id: uuid.UUID, kind: str | None = None) -> list[SweepTransaction]:
        async with self.factory() as session:
            query = select(SweepTransaction).where(SweepTransaction.sweep_id == sweep_id)
            if kind is not None:
                query = query.where(SweepTransaction.kind == kind)
            return list(await session.scalars(query.order_by(SweepTransaction.requested_at,
                                                             SweepTransaction.attempt)))

    async def events(self, sweep_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
        async with self.factory() as session:
            return [(event.type, event.data) for event in await audit.events_of(session, "sweep", sweep_id)]

    async def released_nonces(self, address: str) -> list[int]:
        async with self.factory() as session:
            return list(await session.scalars(select(ReleasedNonce.nonce).where(
                ReleasedNonce.chain == self.chain.name, ReleasedNonce.address == address)))


# --- fixtures (imported by the test modules that use them) -----------------------------------------

@pytest.fixture
def account() -> int:
    return random.randrange(1_000, 2**31 - 1)


@pytest.fixture
def chain(account: int) -> SweepChain:
    stub = SweepChain(f"sw{uuid.uuid4().hex[:10]}", CHAIN_ID)
    stub.mined_nonces[Account.from_key(hot_wallet_key(account)).address] = 7  # its history before VirtuOZ
    return stub


@pytest.fixture
def chain_settings(chain: SweepChain, account: int) -> ChainSettings:
    return ChainSettings(name=chain.name, chain_id=CHAIN_ID, rpc_url="http://127.0.0.1:1", native="ETH",
                         confirmations=CONFIRMATIONS, tokens={"USDC": TOKEN}, account=account)


@pytest.fixture
def treasury_settings(settings: Settings, chain_settings: ChainSettings) -> Settings:
    write_xpub_file(settings, [chain_settings])
    return settings.model_copy(update={
        "chains": [chain_settings], "custody_request_key": SecretStr(request_key_pem()),
        "signer_fee_caps": {chain_settings.name: FEE_CAPS}, "sweep_minimums": {"ETH": "0.01", "USDC": "10"},
        "withdrawal_stuck_blocks": STUCK_BLOCKS, "withdrawal_rebroadcast_blocks": REBROADCAST_BLOCKS,
        "withdrawal_min_priority_fee_wei": GWEI, "withdrawal_fee_bump_percent": 25, "sweep_retry_seconds": 300,
    })


@pytest.fixture
def stub_chain_adapter(monkeypatch: pytest.MonkeyPatch, chain: SweepChain) -> SweepChain:
    def chain_for(chain_settings: Any, **_: Any) -> SweepChain:
        assert chain_settings.name == chain.name, f"the treasury asked for chain {chain_settings.name!r}"
        return chain

    for module in (service, pipeline):
        monkeypatch.setattr(module, "chain_for", chain_for)
    return chain


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    registry.load()  # the process wiring, as every process loads it
    broker = create_broker(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    yield broker
    for queue in QUEUES:  # the signer queue is never declared here, so flush_all would miss it
        broker.flush(queue)
    close_broker(broker)


@pytest.fixture
def sweep_signer(tmp_path: Path, chain_settings: ChainSettings, treasury_settings: Settings) -> SweepSigner:
    sanctions = tmp_path / "signer-sanctions.txt"
    sanctions.write_text("# none\n")
    policy = Policy([chain_settings], {"ETH": WithdrawalLimit(decimals=18, single="1", daily="1")},
                    SanctionsList(sanctions), fee_caps={chain_settings.name: FEE_CAPS})
    public_key = _parse(request_key_pem()).public_key()
    signer = Signer(SEED, [chain_settings], policy, Journal(tmp_path / "journal.sqlite3"), public_key)
    return SweepSigner(signer, public_key, token_gas_limit=treasury_settings.withdrawal_gas_limit_token)


@pytest.fixture
async def treasury(database_url: str, broker: RedisBroker, treasury_settings: Settings, chain_settings: ChainSettings,
                   stub_chain_adapter: SweepChain, sweep_signer: SweepSigner) -> AsyncIterator[Treasury]:
    engine = create_engine(database_url, pool_size=2)
    factory = session_factory(engine)
    bind_broker(factory, broker)  # as the worker's job wrapper does: follow-ups are sent after commit
    yield Treasury(treasury_settings, stub_chain_adapter, chain_settings, factory, broker, sweep_signer)
    await engine.dispose()
