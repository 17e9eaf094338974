"""Worker-level withdrawal tests: the pipeline's steps against real PostgreSQL and Redis, a stub chain.

Each step runs as the custody worker's job wrapper runs it: one unit of work, committed, then what
the step sent after commit is in Redis (a broker namespace of the test's own). Only the chain is
a stub (``StubChain``), installed where the pipeline looks its adapter up. The signer's part is
played by the test: its signatures are made with the hot wallet key of the fixed test mnemonic.

The database is shared by the tests of a worker and never cleaned: every test gets a chain name
and a BIP44 account of its own, so its hot wallet, nonces and transactions are its own. The test's
signer answers as the real one does: its replies are signed with the signer key of the fixed seed,
whose public half (and the signed xpub file) the settings point at.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

import dramatiq
import pytest
from bip_utils import Bip32Secp256k1, Bip39SeedGenerator
from dramatiq.brokers.redis import RedisBroker
from eth_account import Account
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli import registry
from core import audit
from core.db import create_engine, session_factory, unit_of_work
from core.settings import ChainSettings, Settings, default_hot_account, default_signer_fee_caps
from core.sign_requests import REFUSED_REPLY, SIGNED_REPLY, UnsignedTx, sign_reply
from core.signing import generate_keypair
from core.time import utcnow
from custody import ledger
from custody.chains.transactions import tx_hash
from custody.ledger.models import LedgerAccount, LedgerPosting, LedgerTransfer
from custody.withdrawals import fillers, pipeline
from custody.withdrawals.models import NonceFiller, ReleasedNonce, Withdrawal, WithdrawalAttempt
from jobs.broker import close_broker, create_broker
from jobs.context import using_settings
from jobs.registry import bind_broker, registered_jobs
from tests.factories import DESTINATION, make_approved_withdrawal
from tests.integration.custody.conftest import MNEMONIC, SIGNER_KEY, write_xpub_file
from tests.unit.custody.withdrawals.stub_chain import StubChain

ETH = 10**18
FEE = 5 * 10**14  # the platform's flat fee held with the amount: 0.0005 ETH
CHAIN_ID = 31337
CONFIRMATIONS = 2
STUCK_BLOCKS = 3
REBROADCAST_BLOCKS = 4  # longer than STUCK_BLOCKS: a nonce's last send (a fee bump) restarts the count
FEE_CAPS = default_signer_fee_caps()["ethereum"]  # what the devnet's ethereum allows; 6 replacements a nonce
QUEUES = ("custody", "signer", "notifications", "compliance")


@lru_cache(maxsize=1)
def _root() -> Bip32Secp256k1:
    return Bip32Secp256k1.FromSeed(Bip39SeedGenerator(MNEMONIC).Generate(""))


def hot_wallet_key(account: int) -> bytes:
    """What only the signer holds: the hot wallet's private key, m/44'/60'/{hot_account}'/0/0 of the
    chain whose deposit account is ``account`` (its hot account is the default one)."""
    return _root().DerivePath(f"m/44'/60'/{default_hot_account(account)}'/0/0").PrivateKey().Raw().ToBytes()


@lru_cache(maxsize=1)
def request_key_pem() -> str:
    return generate_keypair()[0]


@dataclass
class CustodyWorker:
    """The custody worker's steps, the signer's answers, and what they left in the database and queues."""

    settings: Settings
    chain: StubChain
    factory: async_sessionmaker[AsyncSession]
    broker: RedisBroker
    signer_key: bytes

    # --- rows ----------------------------------------------------------------------------------

    async def approved_withdrawal(self, amount: int = ETH, fee: int = FEE, credit: str = "ETH:10") -> uuid.UUID:
        """A customer with play money and an approved ETH withdrawal on the test's chain holding
        ``amount + fee``, as the service leaves it after the last approval."""
        return await make_approved_withdrawal(self.factory, self.chain.name, amount=amount, fee=fee, credit=credit,
                                              to_address=DESTINATION)

    # --- the custody worker's steps, one unit of work each -------------------------------------

    async def request_signature(self, withdrawal_id: uuid.UUID) -> None:
        async with unit_of_work(self.factory) as session:
            await pipeline.request_signature(session, self.settings, str(withdrawal_id))

    async def broadcast(self, withdrawal_id: uuid.UUID) -> None:
        async with unit_of_work(self.factory) as session:
            await pipeline.broadcast(session, self.settings, str(withdrawal_id))

    async def track(self, withdrawal_id: uuid.UUID) -> None:
        async with unit_of_work(self.factory) as session:
            await pipeline.track(session, self.settings, str(withdrawal_id))

    # --- the signer's answers ------------------------------------------------------------------

    def reply_signature(self, kind: str, withdrawal_id: uuid.UUID | str, digest: str, fields: tuple[str, str]) -> str:
        """The signer key's signature of a reply, as the signer makes it."""
        return sign_reply(SIGNER_KEY, kind, str(withdrawal_id), digest, fields)

    async def sign(self, withdrawal_id: uuid.UUID, attempt: int = 1, *, raw_tx: str | None = None) -> str:
        """The signer signs the attempt's transaction (or answers ``raw_tx``); returns the hash it names."""
        requested = await self.attempt(withdrawal_id, attempt)
        if raw_tx is None:
            raw_tx = Account.sign_transaction(UnsignedTx.parse(requested.unsigned_tx).for_signing(),
                                              self.signer_key).raw_transaction.to_0x_hex()
        fields = (raw_tx, tx_hash(raw_tx))
        async with unit_of_work(self.factory) as session:
            await pipeline.on_signed(session, self.settings, str(withdrawal_id), requested.request_digest, *fields,
                                     self.reply_signature(SIGNED_REPLY, withdrawal_id, requested.request_digest, fields))
        return tx_hash(raw_tx)

    async def refuse(self, withdrawal_id: uuid.UUID, reason: str, attempt: int = 1) -> None:
        requested = await self.attempt(withdrawal_id, attempt)
        fields = (reason, f"refused: {reason}")
        async with unit_of_work(self.factory) as session:
            await pipeline.on_refused(session, self.settings, str(withdrawal_id), requested.request_digest, *fields,
                                      self.reply_signature(REFUSED_REPLY, withdrawal_id, requested.request_digest,
                                                           fields))

    async def deliver(self, queue: str = "custody") -> None:
        """Run the messages waiting in ``queue`` as the worker does: each job in a unit of work of its own."""
        waiting = self.queued_messages(queue)
        self.broker.flush(queue)
        jobs_by_name = {spec.name: spec for spec in registered_jobs()}
        with using_settings(self.settings):
            for message in waiting:
                async with unit_of_work(self.factory) as session:
                    await jobs_by_name[message.actor_name].fn(session, *message.args, **message.kwargs)

    async def track_all(self) -> None:
        """A scheduler tick: ``custody.track_withdrawals``, then the messages it sent about this test's
        chain (the database holds other tests' withdrawals too; theirs are dropped)."""
        tick = next(spec for spec in registered_jobs() if spec.name == "custody.track_withdrawals")
        with using_settings(self.settings):
            async with unit_of_work(self.factory) as session:
                await tick.fn(session)
        async with self.factory() as session:
            ours = {str(row) for row in await session.scalars(select(Withdrawal.id).where(
                Withdrawal.chain == self.chain.name))}
            ours |= {str(row) for row in await session.scalars(select(NonceFiller.id).where(
                NonceFiller.chain == self.chain.name))}
        waiting = [message for message in self.queued_messages("custody") if message.args and message.args[0] in ours]
        self.broker.flush("custody")
        for message in waiting:
            self.broker.enqueue(message)
        await self.deliver("custody")

    async def to_broadcast(self) -> uuid.UUID:
        """An approved withdrawal taken through signing and broadcast (its transaction not mined)."""
        withdrawal_id = await self.approved_withdrawal()
        await self.request_signature(withdrawal_id)
        await self.sign(withdrawal_id)
        await self.broadcast(withdrawal_id)
        return withdrawal_id

    async def sign_request_unanswered_for_long(self, withdrawal_id: uuid.UUID) -> None:
        """Time is told, not waited for: the last sign request went out an hour ago."""
        async with unit_of_work(self.factory) as session:
            await session.execute(update(Withdrawal).where(Withdrawal.id == withdrawal_id).values(
                sign_requested_at=utcnow() - timedelta(hours=1)))

    # --- reads ---------------------------------------------------------------------------------

    async def withdrawal(self, withdrawal_id: uuid.UUID) -> Withdrawal:
        async with self.factory() as session:
            found = await session.get(Withdrawal, withdrawal_id)
            assert found is not None
            return found

    async def attempts(self, withdrawal_id: uuid.UUID) -> list[WithdrawalAttempt]:
        async with self.factory() as session:
            return list(await session.scalars(select(WithdrawalAttempt).where(
                WithdrawalAttempt.withdrawal_id == withdrawal_id).order_by(WithdrawalAttempt.attempt)))

    async def attempt(self, withdrawal_id: uuid.UUID, number: int) -> WithdrawalAttempt:
        return next(item for item in await self.attempts(withdrawal_id) if item.attempt == number)

    async def events(self, withdrawal_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
        async with self.factory() as session:
            return [(event.type, event.data) for event in await audit.events_of(session, "withdrawal", withdrawal_id)]

    async def hold(self, withdrawal_id: uuid.UUID) -> ledger.Hold:
        hold_id = (await self.withdrawal(withdrawal_id)).hold_id
        async with self.factory() as session:
            return await ledger.get_hold(session, hold_id)

    async def eth_balance(self, withdrawal_id: uuid.UUID) -> tuple[int, int]:
        """The owner's (available, held) ETH in wei."""
        user_id = (await self.withdrawal(withdrawal_id)).user_id
        async with self.factory() as session:
            eth = next(item for item in await ledger.balances(session, user_id) if item.currency.code == "ETH")
        return eth.available, eth.held

    async def legs(self, reference: str) -> dict[str, int]:
        """The postings of the ledger transfer ``reference``, by account kind (``held``, ``fees``…)."""
        async with self.factory() as session:
            rows = await session.execute(
                select(LedgerAccount.kind, LedgerPosting.amount)
                .join(LedgerPosting, LedgerPosting.account_id == LedgerAccount.id)
                .join(LedgerTransfer, LedgerTransfer.id == LedgerPosting.transfer_id)
                .where(LedgerTransfer.reference == reference))
            return {kind: amount for kind, amount in rows}

    async def released_nonces(self, wallet: str) -> list[int]:
        async with self.factory() as session:
            return list(await session.scalars(select(ReleasedNonce.nonce).where(
                ReleasedNonce.chain == self.chain.name, ReleasedNonce.address == wallet)))

    def queued(self, queue: str) -> list[tuple[str, tuple[Any, ...]]]:
        """(job name, args) of the messages waiting in ``queue``, oldest first."""
        return [(message.actor_name, tuple(message.args)) for message in self.queued_messages(queue)]

    def queued_messages(self, queue: str) -> list[dramatiq.Message[Any]]:
        """Dramatiq's Redis layout (its dispatch.lua, also read by ``jobs.broker.queue_depths``): the
        list ``<namespace>:<queue>`` of message ids, their bodies in the hash ``<queue>.msgs``."""
        key = f"{self.broker.namespace}:{queue}"
        ids = self.broker.client.lrange(key, 0, -1)
        bodies = self.broker.client.hmget(f"{key}.msgs", ids) if ids else []
        return list(map(dramatiq.Message.decode, bodies))

    def forget_queued(self) -> None:
        for queue in QUEUES:
            self.broker.flush(queue)


def counted(metric: str, **labels: str) -> float:
    """A Prometheus counter's value in this process (compare before and after: the registry is global)."""
    return REGISTRY.get_sample_value(metric, labels) or 0


@pytest.fixture
def account() -> int:
    return random.randrange(1_000, 2**31 - 1)


@pytest.fixture
def chain(account: int) -> StubChain:
    stub = StubChain(f"wd{uuid.uuid4().hex[:10]}", CHAIN_ID)
    hot_wallet = Account.from_key(hot_wallet_key(account)).address
    stub.mined_nonces[hot_wallet] = 7  # the wallet's history before VirtuOZ managed it
    return stub


@pytest.fixture
def stub_chain_adapter(monkeypatch: pytest.MonkeyPatch, chain: StubChain) -> StubChain:
    """Where the custody worker looks its adapter up (the pipeline, the fillers), the stub answers (for
    the test's chain only)."""

    def chain_for(chain_settings: Any, **_: Any) -> StubChain:
        assert chain_settings.name == chain.name, f"the pipeline asked for chain {chain_settings.name!r}"
        return chain

    for module in (pipeline, fillers):
        monkeypatch.setattr(module, "chain_for", chain_for)
    return chain


@pytest.fixture
def custody_settings(settings: Settings, chain: StubChain, account: int) -> Settings:
    """One chain of the test's own, what `signer init` exports for it (the signed xpub file and the
    signer's public key) and a request key."""
    stub_settings = ChainSettings(name=chain.name, chain_id=CHAIN_ID, rpc_url="http://127.0.0.1:1", native="ETH",
                                  confirmations=CONFIRMATIONS, account=account)
    write_xpub_file(settings, [stub_settings])
    return settings.model_copy(update={
        "chains": [stub_settings], "custody_request_key": SecretStr(request_key_pem()),
        "withdrawal_stuck_blocks": STUCK_BLOCKS, "withdrawal_fee_bump_percent": 25,
        "withdrawal_min_priority_fee_wei": 10**9, "withdrawal_rebroadcast_blocks": REBROADCAST_BLOCKS,
        "signer_fee_caps": {chain.name: FEE_CAPS},
    })


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    """A sending broker on a namespace of the test's own: its queues start empty."""
    registry.load()  # the process wiring, as every process loads it: each job name sent has its actor
    broker = create_broker(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    yield broker
    for queue in QUEUES:  # the signer queue is never declared here, so flush_all would miss it
        broker.flush(queue)
    close_broker(broker)


@pytest.fixture
async def worker(database_url: str, broker: RedisBroker, custody_settings: Settings, stub_chain_adapter: StubChain,
                 account: int) -> AsyncIterator[CustodyWorker]:
    engine = create_engine(database_url, pool_size=2)
    factory = session_factory(engine)
    bind_broker(factory, broker)  # as the worker's job wrapper does: follow-ups are sent after commit
    yield CustodyWorker(custody_settings, stub_chain_adapter, factory, broker, hot_wallet_key(account))
    await engine.dispose()
