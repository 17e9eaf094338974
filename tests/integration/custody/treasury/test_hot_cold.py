"""The hot wallet below its floor, the refills the cold custodian signs offline, and the wallets view —
on a real Anvil chain, real PostgreSQL and Redis.

The module has a database of its own, so `ledger verify` speaks of these tests' books only (the
worker's shared database holds other tests' deliberately partial rows). Each test has a chain name,
a hot wallet (a BIP44 account of the fixed seed) and a cold wallet (a key only the test holds, as
only the custodian would) of its own.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli import registry
from core import audit
from core.db import create_engine, session_factory, unit_of_work
from core.migrate import upgrade
from core.sanctions import SanctionsList
from core.settings import ChainSettings, HotWalletLevels, Settings, default_signer_fee_caps
from core.sign_requests import REFUSED_REPLY, erc20_transfer_data, sign_reply
from core.signing import load_public_key
from custody.addresses.models import DepositAddress
from custody.books.cli import verify as verify_books
from custody.chains import EvmChain
from custody.hd import signed_xpubs
from custody.ledger.models import LedgerAccount
from custody.treasury import hot_cold, refills
from custody.treasury.hot_cold_models import ColdTransfer, HotWalletLevel, Refill
from custody.withdrawals.authorization import ensure_request_key_pair
from custody.withdrawals import fillers
from custody.withdrawals.models import ReleasedNonce
from custody.withdrawals.nonces import release_nonce
from devnet.chains import deploy_usdc, fund_wallet
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from jobs.scheduler import build_scheduler
from signer.journal import Journal
from signer.policy import Policy
from signer.service import Refused, Signer
from tests import factories
from tests.chain_fixtures import anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401
from tests.factories import run_schedule_entry, wait_until
from tests.integration.custody.conftest import SEED, SIGNER_KEY, write_xpub_file

API = "/api/v1"
ETH = 10**18
USDC = 10**6
LEVELS = {"ETH": HotWalletLevels(hot_floor="2", hot_target="20", hot_ceiling="50"),
          "USDC": HotWalletLevels(hot_floor="1000", hot_target="20000", hot_ceiling="50000")}


@pytest.fixture(scope="module")
def treasury_database(postgres) -> str:
    name = f"treasury_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    url = postgres.url(name)
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def usdc(anvil_chain, usdc_artifact, tmp_path_factory) -> str:  # noqa: F811
    return deploy_usdc(anvil_chain.rpc_url, usdc_artifact, tmp_path_factory.mktemp("contracts") / "contracts.json")


@dataclass
class Treasury:
    settings: Settings
    chain: ChainSettings
    hot: str
    cold: LocalAccount
    factory: async_sessionmaker[AsyncSession]
    rpc_url: str
    artifact: dict[str, Any]

    def fund(self, address: str, *, eth: int, usdc: int = 0) -> None:
        """Top ``address`` up from the faucet to exactly ``eth`` wei and ``usdc`` minor units."""
        fund_wallet(self.rpc_url, address, self.artifact, self.chain.tokens["USDC"], native_wei=eth, usdc_minor=usdc)

    async def check(self) -> list[hot_cold.Level]:
        """``treasury.check_levels`` as the treasury worker runs it: one unit of work."""
        async with unit_of_work(self.factory) as session:
            return await hot_cold.check_levels(session, self.settings)

    async def refills(self) -> dict[str, Refill]:
        async with self.factory() as session:
            rows = await session.scalars(select(Refill).where(Refill.chain == self.chain.name))
            return {row.asset: row for row in rows if row.state in ("open", "submitted")}

    async def refill(self, refill_id: uuid.UUID) -> Refill:
        async with self.factory() as session:
            found = await session.get(Refill, refill_id)
            assert found is not None
            return found

    async def balance(self, address: str, token: str | None = None) -> int:
        async with EvmChain(self.chain.name, self.rpc_url) as chain:
            return (await chain.balances([address], [token] if token else [], await chain.head()))[(address, token)]


@pytest.fixture
async def treasury(settings: Settings, treasury_database: str, redis_url: str, anvil_chain, usdc: str,  # noqa: F811
                   usdc_artifact, tmp_path: Path) -> AsyncIterator[Treasury]:  # noqa: F811
    cold = Account.create()
    chain = ChainSettings(name=f"tr{uuid.uuid4().hex[:8]}", chain_id=31337, rpc_url=anvil_chain.rpc_url,
                          native="ETH", confirmations=1, tokens={"USDC": usdc},
                          account=random.randrange(1_000, 2**31 - 1), cold_wallet=cold.address)
    write_xpub_file(settings, [chain])
    ensure_request_key_pair(tmp_path / "request.pem", tmp_path / "request.pub")
    configured = settings.model_copy(update={
        "database_url": treasury_database, "chains": [chain], "treasury_hot_levels": {chain.name: LEVELS},
        "signer_fee_caps": {chain.name: default_signer_fee_caps()["ethereum"]},
        "custody_request_key": SecretStr((tmp_path / "request.pem").read_text())})
    registry.load()
    broker = create_broker(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    engine = create_engine(treasury_database, pool_size=2)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    yield Treasury(configured, chain, signed_xpubs(configured)[chain.name].hot_wallet, cold, factory,
                   anvil_chain.rpc_url, usdc_artifact)
    await engine.dispose()
    broker.flush_all()
    close_broker(broker)


@pytest.fixture
async def api(make_client, treasury: Treasury) -> TestClient:
    return await make_client(treasury.settings)


def signed(account: LocalAccount, transaction: dict[str, Any], **changes: Any) -> str:
    """The refill's transaction (as the API shows it) signed offline by ``account``, with ``changes``."""
    fields = {"type": 2, "chainId": transaction["chain_id"], "nonce": transaction["nonce"], "to": transaction["to"],
              "value": int(transaction["value"]), "data": transaction["data"], "gas": transaction["gas"],
              "maxFeePerGas": int(transaction["max_fee_per_gas"]),
              "maxPriorityFeePerGas": int(transaction["max_priority_fee_per_gas"]), "accessList": [], **changes}
    return account.sign_transaction(fields).raw_transaction.to_0x_hex()


async def submit(api: TestClient, headers: dict[str, str], refill_id: str, raw_tx: str) -> tuple[int, Any]:
    response = await api.post(f"{API}/admin/treasury/refills/{refill_id}/submit", json={"raw_tx": raw_tx},
                              headers=headers)
    return response.status, await response.json()


async def test_below_the_floor_a_refill_is_asked_for_once_and_round_trips_signed_outside_the_platform(
        treasury: Treasury, api: TestClient, treasury_database: str) -> None:
    treasury.fund(treasury.hot, eth=1 * ETH)  # below the floor of 2 ETH; no USDC at all (floor 1000)
    treasury.fund(treasury.cold.address, eth=100 * ETH, usdc=100_000 * USDC)

    levels = {level.asset: level for level in await treasury.check()}
    assert {asset: level.state for asset, level in levels.items()} == {"ETH": "below_floor", "USDC": "below_floor"}
    asked = await treasury.refills()
    assert {asset: (row.state, row.amount) for asset, row in asked.items()} == {
        "ETH": ("open", 19 * ETH), "USDC": ("open", 20_000 * USDC)}
    # One open refill per chain and asset, however often the check runs.
    await treasury.check()
    assert {row.id for row in (await treasury.refills()).values()} == {row.id for row in asked.values()}
    async with treasury.factory() as session:
        requested = await audit.events_of(session, refills.AGGREGATE, asked["ETH"].id)
    assert [event.type for event in requested] == ["treasury_refill.requested"]
    assert requested[0].data["amount"] == str(19 * ETH) and requested[0].actor == "treasury"

    # The gauge, where Prometheus scrapes: the API's /metrics.
    metrics = await (await api.get("/metrics")).text()
    assert f'virtuoz_treasury_hot_below_floor{{asset="ETH",chain="{treasury.chain.name}"}} 1.0' in metrics

    operator = await factories.login_as(api, treasury_database, "operator")
    customer = await factories.login_as(api, treasury_database)
    assert (await api.get(f"{API}/admin/treasury/refills", headers=customer.headers)).status == 403
    response = await api.get(f"{API}/admin/treasury/refills", params={"state": "open"}, headers=operator.headers)
    assert response.status == 200
    listed = {item["asset"]: item for item in (await response.json())["items"] if item["chain"] == treasury.chain.name}
    eth, usdc = listed["ETH"], listed["USDC"]
    assert eth["amount"] == "19" and eth["hot_balance"] == "1" and usdc["amount"] == "20000"
    assert eth["transaction"]["sender"] == treasury.cold.address == eth["cold_wallet"]
    assert eth["transaction"]["to"] == treasury.hot and eth["transaction"]["value"] == str(19 * ETH)
    assert eth["transaction"]["chain_id"] == 31337
    assert usdc["transaction"]["to"] == treasury.chain.tokens["USDC"] and usdc["transaction"]["value"] == "0"

    # Anything but exactly that transfer is refused, naming what differs; nothing is broadcast.
    stranger = Account.create()
    mismatches = {
        "destination": signed(treasury.cold, eth["transaction"], to=stranger.address),
        "amount": signed(treasury.cold, eth["transaction"], value=20 * ETH),
        "chain_id": signed(treasury.cold, eth["transaction"], chainId=31338),
        "sender": signed(stranger, eth["transaction"]),
    }
    for field, raw_tx in mismatches.items():
        status, body = await submit(api, operator.headers, eth["id"], raw_tx)
        assert status == 422 and body["error"]["code"] == "refill_transaction_mismatch", body
        assert list(body["error"]["details"]["differences"]) == [field], body
        assert field in body["error"]["message"]
    status, body = await submit(api, operator.headers, eth["id"], mismatches["chain_id"])
    assert body["error"]["details"]["differences"]["chain_id"] == {"expected": "31337", "got": "31338"}, body
    # A token refill's destination is inside its transfer call.
    status, body = await submit(api, operator.headers, usdc["id"], signed(
        treasury.cold, usdc["transaction"], data=erc20_transfer_data(stranger.address, 20_000 * USDC)))
    assert status == 422 and list(body["error"]["details"]["differences"]) == ["destination"], body
    for malformed in ("0xdeadbeef", "0x" + "00" * 120):
        status, body = await submit(api, operator.headers, eth["id"], malformed)
        assert status == 422 and body["error"]["code"] == "malformed_transaction", body
    assert (await treasury.refill(uuid.UUID(eth["id"]))).state == "open"

    good = signed(treasury.cold, eth["transaction"])
    status, body = await submit(api, operator.headers, eth["id"], good)
    assert status == 200 and body["state"] == "submitted" and body["submitted_by"] == str(operator.user_id), body
    status, again = await submit(api, operator.headers, eth["id"], good)
    assert status == 409 and again["error"]["code"] == "refill_already_submitted", again
    async with treasury.factory() as session:
        events = await audit.events_of(session, refills.AGGREGATE, eth["id"])
    assert [event.type for event in events] == ["treasury_refill.requested", "treasury_refill.submitted"]
    assert events[1].actor == str(operator.user_id)

    async def confirmed() -> bool:
        async with unit_of_work(treasury.factory) as session:
            await refills.track(session, treasury.settings, eth["id"])
        return (await treasury.refill(uuid.UUID(eth["id"]))).state == "confirmed"

    await wait_until(confirmed, timeout=30, interval=0.2, what="the refill to be confirmed")
    assert await treasury.balance(treasury.hot) == 20 * ETH
    refill = await treasury.refill(uuid.UUID(eth["id"]))
    assert refill.gas_cost and refill.gas_cost > 0
    levels = {level.asset: level for level in await treasury.check()}
    assert levels["ETH"].state == "ok" and levels["USDC"].state == "below_floor"
    assert await verify_books(treasury_database) == 0


async def test_an_open_refill_whose_nonce_the_cold_wallet_used_expires_and_is_asked_again(
        treasury: Treasury) -> None:
    treasury.fund(treasury.hot, eth=1 * ETH, usdc=5_000 * USDC)  # ETH below its floor; USDC between floor and ceiling
    treasury.fund(treasury.cold.address, eth=10 * ETH)
    await treasury.check()
    first = (await treasury.refills())["ETH"]
    assert set(await treasury.refills()) == {"ETH"}
    # The custodian spends the nonce on something else: that refill can never be mined.
    raw = treasury.cold.sign_transaction({"type": 2, "chainId": 31337, "nonce": first.nonce,
                                          "to": treasury.cold.address,
                                          "value": 0, "gas": 21_000, "maxFeePerGas": first.max_fee_per_gas,
                                          "maxPriorityFeePerGas": first.max_priority_fee_per_gas})
    async with EvmChain(treasury.chain.name, treasury.rpc_url) as chain:
        mined = await chain.broadcast(raw.raw_transaction)

        async def used() -> bool:
            return await chain.receipt(mined) is not None

        await wait_until(used, timeout=30, interval=0.2, what="the cold wallet's own transaction")
    await treasury.check()
    assert (await treasury.refill(first.id)).state == "expired"
    second = (await treasury.refills())["ETH"]
    assert second.id != first.id and second.nonce == first.nonce + 1


async def test_the_wallets_route_shows_liabilities_and_on_chain_totals(
        treasury: Treasury, api: TestClient, treasury_database: str) -> None:
    customer = await factories.make_user(treasury.factory, tag="treasury")
    await factories.credit_user(treasury.factory, customer, "ETH", 3 * ETH)
    await factories.credit_user(treasury.factory, customer, "USDC", 1_500 * USDC)
    deposit = Account.create().address
    async with unit_of_work(treasury.factory) as session:
        session.add(DepositAddress(chain=treasury.chain.name, derivation_index=0, address=deposit, user_id=customer,
                                   assigned_at=func.now()))
    treasury.fund(deposit, eth=3 * ETH, usdc=1_500 * USDC)
    treasury.fund(treasury.hot, eth=30 * ETH, usdc=25_000 * USDC)
    treasury.fund(treasury.cold.address, eth=7 * ETH, usdc=400_000 * USDC)

    admin = await factories.login_as(api, treasury_database, "admin")
    customer_login = await factories.login_as(api, treasury_database)
    assert (await api.get(f"{API}/admin/treasury/wallets", headers=customer_login.headers)).status == 403
    response = await api.get(f"{API}/admin/treasury/wallets", headers=admin.headers)
    assert response.status == 200, await response.text()
    body = await response.json()

    [chain] = body["chains"]
    assert (chain["chain"], chain["hot_wallet"], chain["cold_wallet"]) == (treasury.chain.name, treasury.hot,
                                                                           treasury.cold.address)
    assert chain["error"] is None and isinstance(chain["block"], int)
    assert (chain["deposit_addresses_assigned"], chain["deposit_addresses_read"]) == (1, 1)
    by_asset = {item["asset"]: item for item in chain["assets"]}
    assert by_asset["ETH"] == {"asset": "ETH", "hot": "30", "cold": "7", "deposit_addresses": "3", "total": "40"}
    assert by_asset["USDC"] == {"asset": "USDC", "hot": "25000", "cold": "400000", "deposit_addresses": "1500",
                                "total": "426500"}

    # Liabilities: every customer account of the books (available + held), whoever else this database holds.
    async with treasury.factory() as session:
        owed = {currency: int(total) for currency, total in await session.execute(
            select(LedgerAccount.currency, func.sum(LedgerAccount.balance))
            .where(LedgerAccount.owner_type == "user").group_by(LedgerAccount.currency))}
    assets = {item["asset"]: item for item in body["assets"]}
    eth = assets["ETH"]
    assert Decimal(eth["liabilities"]["total"]) == Decimal(owed["ETH"]).scaleb(-18) >= 3
    assert Decimal(eth["liabilities"]["available"]) + Decimal(eth["liabilities"]["held"]) == \
        Decimal(eth["liabilities"]["total"])
    assert eth["on_chain"] == {"hot": "30", "cold": "7", "deposit_addresses": "3", "total": "40"}
    assert Decimal(eth["difference"]) == 40 - Decimal(eth["liabilities"]["total"])
    assert Decimal(assets["USDC"]["difference"]) == 426_500 - Decimal(owed["USDC"]).scaleb(-6)
    assert body["complete"] is True


async def test_the_levels_are_recorded_per_chain_and_asset(treasury: Treasury) -> None:
    treasury.fund(treasury.hot, eth=60 * ETH, usdc=30_000 * USDC)
    # No cold wallet configured: above the ceiling is watched and recorded, but nothing can move.
    treasury.settings = treasury.settings.model_copy(update={
        "chains": [treasury.chain.model_copy(update={"cold_wallet": None})]})
    levels = {level.asset: level.state for level in await treasury.check()}
    assert levels == {"ETH": "above_ceiling", "USDC": "ok"}
    async with treasury.factory() as session:
        rows = {row.asset: row for row in await session.scalars(select(HotWalletLevel).where(
            HotWalletLevel.chain == treasury.chain.name))}
        transfers = await session.scalar(select(func.count()).select_from(ColdTransfer).where(
            ColdTransfer.chain == treasury.chain.name))
    assert rows["ETH"].balance == 60 * ETH and rows["ETH"].ceiling == 50 * ETH and rows["ETH"].state == "above_ceiling"
    assert transfers == 0



async def test_a_cold_transfer_the_signer_refuses_gives_its_nonce_back(treasury: Treasury, tmp_path: Path) -> None:
    """The signer of this test is the real one (``signer.service``, the fixed seed's keys) whose own
    configuration names another cold wallet: it refuses, and the refusal — signed by the signer key —
    gives the hot wallet's nonce back for the next withdrawal."""
    treasury.fund(treasury.hot, eth=60 * ETH, usdc=30_000 * USDC)
    # An approved withdrawal of 5 ETH will be paid from the hot wallet: those 5 are not surplus.
    await factories.make_approved_withdrawal(treasury.factory, treasury.chain.name, amount=5 * ETH)
    await treasury.check()
    async with treasury.factory() as session:
        [transfer] = await session.scalars(select(ColdTransfer).where(ColdTransfer.chain == treasury.chain.name))
    assert transfer.state == "pending" and transfer.cold_wallet == treasury.cold.address
    # 60 less the 5 owed, less the target, less the gas of the transfer at today's fees.
    assert 34 * ETH < transfer.amount < 35 * ETH
    async with unit_of_work(treasury.factory) as session:
        await hot_cold.request_signature(session, treasury.settings, str(transfer.id))
    async with treasury.factory() as session:
        transfer = await session.get(ColdTransfer, transfer.id)
    assert transfer.state == "signing" and transfer.nonce is not None and transfer.unsigned_tx

    sanctions = tmp_path / "sanctions.txt"
    sanctions.write_text("")
    # The platform's settings name the cold wallet; the signer's own configuration names another.
    policy = Policy([treasury.chain], {}, SanctionsList(sanctions), fee_caps=treasury.settings.signer_fee_caps,
                    cold_wallets={treasury.chain.name: Account.create().address})
    real_signer = Signer(SEED, [treasury.chain], policy, Journal(tmp_path / "journal.sqlite3"),
                         load_public_key((tmp_path / "request.pub").read_text().strip()))
    assert real_signer.hot_wallet(31337) == treasury.hot
    outcome = real_signer.handle_cold_transfer(str(transfer.id), transfer.unsigned_tx, transfer.authorization)
    assert isinstance(outcome, Refused) and outcome.reason == "not_cold_wallet"

    fields = (outcome.reason, outcome.message)
    async with unit_of_work(treasury.factory) as session:
        assert await hot_cold.COLD_TRANSFER_REQUESTER.owns(session, str(transfer.id))
        await hot_cold.COLD_TRANSFER_REQUESTER.on_refused(
            session, treasury.settings, str(transfer.id), outcome.request_digest, *fields,
            sign_reply(SIGNER_KEY, REFUSED_REPLY, str(transfer.id), outcome.request_digest, fields))
    async with treasury.factory() as session:
        transfer = await session.get(ColdTransfer, transfer.id)
        released = list(await session.scalars(select(ReleasedNonce.nonce).where(
            ReleasedNonce.chain == treasury.chain.name, ReleasedNonce.address == treasury.hot)))
        events = [event.type for event in await audit.events_of(session, hot_cold.AGGREGATE, transfer.id)]
    assert (transfer.state, transfer.reason) == ("refused", "not_cold_wallet")
    assert released == [transfer.nonce]
    assert events == ["cold_transfer.requested", "cold_transfer.signing", "cold_transfer.refused"]


async def test_the_scheduler_sends_the_check_to_the_treasury_queue(redis_url: str, settings: Settings) -> None:
    registry.load()
    namespace = f"test-{uuid.uuid4().hex}"
    broker = create_broker(redis_url, namespace=namespace)
    try:
        assert await run_schedule_entry(broker, redis_url, namespace, "treasury-hot-levels", "treasury") == 1
        job = build_scheduler(settings.model_copy(update={"treasury_check_seconds": 7}), broker).get_job(
            "treasury-hot-levels")
        assert "0:00:07" in str(job.trigger)
    finally:
        broker.flush_all()
        close_broker(broker)


async def test_a_nonce_given_back_below_a_cold_transfer_is_filled_at_once(treasury: Treasury) -> None:
    """The hot wallet's nonces are one sequence: a withdrawal refused at nonce 4 while a hot → cold
    transfer is signed at 5 leaves a gap the transfer would wait behind for ever, so a filler takes it."""
    async with unit_of_work(treasury.factory) as session:
        session.add(ColdTransfer(id=uuid.uuid4(), chain=treasury.chain.name, asset="ETH", hot_wallet=treasury.hot,
                                 cold_wallet=treasury.cold.address, amount=ETH, state="signing", nonce=5))
        await session.flush()
        await release_nonce(session, treasury.chain.name, treasury.hot, 4)
        filler = await fillers.fill_if_blocking(session, treasury.chain.name, treasury.hot, 4)
    assert filler is not None and filler.nonce == 4
