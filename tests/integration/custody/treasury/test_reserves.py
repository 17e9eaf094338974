"""Proof of reserves against real PostgreSQL, Redis and Anvil: an epoch over real customers and ledger
balances, each customer's proof checked by `virtuoz reserves verify` in a process of its own, the daily
job, and the reserves read at one block of a real chain.

The database is shared by every test of a pytest worker: an epoch covers every customer in it, so the
tests compare an epoch with the ledger as a whole, and look only at their own customers' proofs.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dramatiq.brokers.redis import RedisBroker
from eth_account import Account
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.db import create_engine, session_factory, unit_of_work
from core.settings import ChainSettings, Settings
from custody import ledger
from custody.addresses.models import DepositAddress
from custody.hd import retired_hot_wallet_address, signed_xpubs
from custody.ledger.models import LedgerAccount
from custody.treasury import reserves
from custody.treasury.reserves_actors import build_reserves
from custody.treasury.reserves_models import ReserveBlock, ReserveEpoch, ReserveHolding, ReserveNode, ReserveNonce
from jobs.broker import close_broker, create_broker
from jobs.context import using_settings
from jobs.scheduler import build_scheduler
from jobs.worker import start_worker
from tests.chain_fixtures import anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401
from tests.factories import LoggedIn, credit_user, make_funded_user, run_schedule_entry
from tests.integration.custody.conftest import account_xpub, write_xpub_file
from tests.integration.custody.deposits.conftest import usdc_address, wallet  # noqa: F401

API = "/api/v1"
REPO_ROOT = Path(__file__).resolve().parents[4]
ETH = 10**18
USDC = 10**6
JOIN_TIMEOUT_MS = 60_000


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def broker(redis_url: str, database_url: str) -> Iterator[RedisBroker]:
    """A broker on a namespace of its own: what this test enqueues, and only that, its worker runs."""
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=2,
                           namespace=f"test-{uuid.uuid4().hex}")
    yield broker
    broker.flush_all()
    close_broker(broker)


async def owed(factory: async_sessionmaker[AsyncSession], currency: str, user_id: uuid.UUID | None = None) -> int:
    """What the ledger owes customers (one, or all) in ``currency``: available + held."""
    query = select(func.coalesce(func.sum(LedgerAccount.balance), 0)).where(
        LedgerAccount.owner_type == "user", LedgerAccount.currency == currency)
    if user_id is not None:
        query = query.where(LedgerAccount.user_id == user_id)
    async with factory() as session:
        return int(await session.scalar(query))


async def verify_with_cli(tmp_path: Path, proof: dict[str, Any], *options: str) -> subprocess.CompletedProcess[str]:
    """`python -m cli reserves verify`, in a process of its own, as a customer would run it."""
    path = tmp_path / f"proof-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(proof))
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cli", "reserves", "verify", str(path), *options],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


async def publish(client, admin: LoggedIn) -> dict[str, Any]:
    response = await client.post(f"{API}/admin/treasury/reserves", json={}, headers=admin.headers)
    body = await response.json()
    assert response.status == 201, body
    return body


async def test_every_customers_proof_verifies_against_the_published_root_with_the_cli(
        client, login_as, factory, tmp_path) -> None:
    admin = await login_as(client, "admin")
    alice, bob, carol = [await login_as(client) for _ in range(3)]
    await credit_user(factory, alice.user_id, "USDC", 1_250 * USDC)
    await credit_user(factory, bob.user_id, "USDC", 7 * USDC + 1)
    await credit_user(factory, bob.user_id, "ETH", 3 * ETH // 2)
    async with unit_of_work(factory) as session:  # held money is still owed: it is in the leaf
        await ledger.hold(session, f"test:{uuid.uuid4()}", bob.user_id, "USDC", 2 * USDC, type="withdrawal_hold")
    # More customers than the three who ask for a proof: bare users with play money.
    for credit in ("ETH:0.25", "ETH:1"):
        await make_funded_user(factory, credit)

    published = await publish(client, admin)
    latest = await client.get(f"{API}/reserves/latest")  # public: no login
    assert latest.status == 200 and await latest.json() == published
    assets = {item["asset"]: item for item in published["assets"]}
    # The on-chain currencies (other tests of this worker may add their own): fiat is not in a proof.
    assert {"ETH", "POL", "USDC"} <= set(assets) and "USD" not in assets
    for asset, decimals in (("ETH", 18), ("POL", 18), ("USDC", 6)):
        item = assets[asset]
        # The leaves sum to the ledger's customer liabilities at the snapshot (nothing moved since).
        async with factory() as session:
            leaves = await session.scalar(select(func.sum(ReserveNode.sum)).where(
                ReserveNode.epoch_id == published["epoch"], ReserveNode.asset == asset, ReserveNode.level == 0))
        liabilities = await owed(factory, asset)
        assert int(leaves or 0) == int(item["root"]["sum"]) == liabilities
        assert ledger.CurrencyInfo(asset, decimals, "token", ()).format(liabilities) == item["liabilities"]
        assert item["reserves"] == "0" and item["blocks"] == {}  # no chain configured in this app
        assert item["ratio"] == (None if liabilities == 0 else "0.0000")

    root = assets["USDC"]["root"]
    for customer, balance in ((alice, 1_250 * USDC), (bob, 7 * USDC + 1)):
        response = await client.get(f"{API}/wallet/reserves-proof", params={"asset": "USDC"}, headers=customer.headers)
        proof = await response.json()
        assert response.status == 200, proof
        assert set(proof) == {"epoch", "asset", "nonce", "leaf", "path", "root"}
        assert (proof["epoch"], proof["asset"], proof["root"]) == (published["epoch"], "USDC", root)
        assert proof["leaf"]["balance"] == str(balance) == str(await owed(factory, "USDC", customer.user_id))
        checked = await verify_with_cli(tmp_path, proof, "--root", root["hash"], "--user-id", str(customer.user_id))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.startswith("proof OK")

    # Alice's proof is hers alone: it names her leaf, not Bob's.
    response = await client.get(f"{API}/wallet/reserves-proof", params={"asset": "USDC"}, headers=alice.headers)
    alice_proof = await response.json()
    someone_else = await verify_with_cli(tmp_path, alice_proof, "--user-id", str(bob.user_id))
    assert someone_else.returncode == 1 and "hash mismatch" in someone_else.stdout
    tampered = {**alice_proof, "leaf": {**alice_proof["leaf"], "balance": str(2_000 * USDC)}}
    refused = await verify_with_cli(tmp_path, tampered, "--root", root["hash"])
    assert refused.returncode == 1 and "hash mismatch" in refused.stdout
    padded = {**alice_proof, "root": {**alice_proof["root"], "sum": "0" + alice_proof["root"]["sum"]}}
    refused = await verify_with_cli(tmp_path, padded)
    assert refused.returncode == 1 and "bad amount format" in refused.stdout

    # Carol has no USDC account: no leaf of hers in that tree.
    response = await client.get(f"{API}/wallet/reserves-proof", params={"asset": "USDC"}, headers=carol.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (404, "not_in_reserves_proof")
    client.session.cookie_jar.clear()  # the logins left their access cookie
    assert (await client.get(f"{API}/wallet/reserves-proof", params={"asset": "USDC"})).status == 401
    anonymous = await client.get(f"{API}/reserves/latest")
    assert anonymous.status == 200 and (await anonymous.json())["epoch"] == published["epoch"]

    # One nonce per customer of the epoch, each different; the epoch is audited.
    async with factory() as session:
        nonces = list(await session.scalars(select(ReserveNonce.nonce).where(
            ReserveNonce.epoch_id == published["epoch"])))
        events = await audit.events_of(session, "reserve_epoch", str(published["epoch"]))
    assert len(nonces) == len(set(nonces)) and alice_proof["nonce"] in nonces
    assert [(event.type, event.actor) for event in events] == [("reserves.published", str(admin.user_id))]
    assert events[0].data["assets"]["USDC"]["root_hash"] == root["hash"]


async def test_the_ledger_is_read_in_one_repeatable_read_snapshot_of_a_fresh_session(factory, settings) -> None:
    async with factory() as session:
        epoch = await reserves.build_epoch(session, settings, actor="test")
        assert epoch is not None
        assert await session.scalar(text("SHOW transaction_isolation")) == "repeatable read"
        await session.rollback()
    async with factory() as session:  # a session that already read something has its snapshot elsewhere
        await session.execute(text("SELECT 1"))
        with pytest.raises(RuntimeError, match="session of its own"):
            await reserves.build_epoch(session, settings, actor="test")


async def test_a_new_epoch_has_new_nonces_and_a_new_root(client, login_as, factory) -> None:
    admin, customer = await login_as(client, "admin"), await login_as(client)
    await credit_user(factory, customer.user_id, "USDC", 3 * USDC)
    proofs = []
    for _ in range(2):
        epoch = await publish(client, admin)
        response = await client.get(f"{API}/wallet/reserves-proof", params={"asset": "USDC"}, headers=customer.headers)
        proofs.append(await response.json())
        assert proofs[-1]["epoch"] == epoch["epoch"]
    assert proofs[1]["epoch"] > proofs[0]["epoch"]
    assert proofs[0]["nonce"] != proofs[1]["nonce"] and proofs[0]["leaf"]["id"] != proofs[1]["leaf"]["id"]
    assert proofs[0]["leaf"]["balance"] == proofs[1]["leaf"]["balance"] == str(3 * USDC)


async def test_only_an_admin_publishes_an_epoch(client, login_as) -> None:
    for roles in ((), ("operator",), ("compliance",)):
        user = await login_as(client, *roles)
        response = await client.post(f"{API}/admin/treasury/reserves", json={}, headers=user.headers)
        assert (response.status, (await response.json())["error"]["code"]) == (403, "forbidden")


async def test_the_openapi_document_lists_the_routes_and_their_refusals(client) -> None:
    paths = (await (await client.get(f"{API}/openapi.json")).json())["paths"]
    assert "401" not in paths["/api/v1/reserves/latest"]["get"]["responses"]  # public
    proof = paths["/api/v1/wallet/reserves-proof"]["get"]["responses"]
    assert {"no_reserves_epoch", "not_in_reserves_proof"} <= set(proof["404"]["x-error-codes"])
    assert "unauthorized" in proof["401"]["x-error-codes"]
    publish_route = paths["/api/v1/admin/treasury/reserves"]["post"]["responses"]
    assert {"negative_liability", "xpub_file_refused"} <= set(publish_route["409"]["x-error-codes"])


# --- the daily job ------------------------------------------------------------------------------

async def test_the_schedule_enqueues_the_reserves_job_on_the_treasury_queue(broker, redis_url, settings) -> None:
    assert await run_schedule_entry(broker, redis_url, broker.namespace, "treasury-reserves", "treasury") == 1
    job = build_scheduler(settings, broker).get_job("treasury-reserves")
    assert job is not None and "hour='0'" in str(job.trigger) and "minute='30'" in str(job.trigger)


async def test_the_job_publishes_one_epoch_a_day_however_often_it_is_delivered(broker, factory, settings) -> None:
    day = datetime(2100 + random.randrange(0, 800), 3, 1, 0, 30, tzinfo=UTC) + timedelta(days=random.randrange(300))
    for moment in (day, day, day + timedelta(hours=5)):  # twice (a redelivery), then later the same day
        broker.enqueue(build_reserves.message(moment.isoformat()))
    with using_settings(settings):
        worker = start_worker(broker, {"treasury"}, worker_threads=2)
        try:
            await asyncio.to_thread(broker.join, "treasury", timeout=JOIN_TIMEOUT_MS)
        finally:
            await asyncio.to_thread(worker.stop, timeout=JOIN_TIMEOUT_MS)
    async with factory() as session:
        epochs = list(await session.scalars(select(ReserveEpoch).where(
            ReserveEpoch.slot == f"daily:{day.date().isoformat()}")))
    assert [epoch.requested_by for epoch in epochs] == ["treasury"]


# --- reserves on a real chain -------------------------------------------------------------------

@pytest.fixture
def chain_settings(anvil_chain, usdc_address: str) -> ChainSettings:  # noqa: F811
    options: dict[str, Any] = {}
    if "cold_wallet" in ChainSettings.model_fields:  # added with the hot and cold wallets of treasury
        options["cold_wallet"] = Account.create().address
    return ChainSettings(name=f"por{uuid.uuid4().hex[:8]}", chain_id=31337, rpc_url=anvil_chain.rpc_url,
                         native="ETH", confirmations=2, tokens={"USDC": usdc_address},
                         account=random.randrange(1_000, 2**31 - 1), **options)


async def test_reserves_are_every_platform_address_read_at_one_block_of_each_chain(
        make_client, settings: Settings, chain_settings: ChainSettings, wallet, factory, login_as) -> None:  # noqa: F811
    write_xpub_file(settings, [chain_settings])
    settings = settings.model_copy(update={"chains": [chain_settings]})
    client = await make_client(settings)
    admin, customer = await login_as(client, "admin"), await login_as(client)
    hot = signed_xpubs(settings)[chain_settings.name].hot_wallet
    retired = retired_hot_wallet_address(account_xpub(chain_settings.account))
    assigned, pooled = Account.create().address, Account.create().address
    async with unit_of_work(factory) as session:
        session.add_all([
            DepositAddress(chain=chain_settings.name, derivation_index=0, address=assigned, user_id=customer.user_id,
                           assigned_at=datetime.now(UTC)),
            DepositAddress(chain=chain_settings.name, derivation_index=1, address=pooled)])
    cold = getattr(chain_settings, "cold_wallet", None)
    sends = [(hot, 2 * ETH), (retired, ETH // 2), (assigned, 3 * ETH // 4), (pooled, ETH // 10)]
    sends += [(cold, 5 * ETH)] if cold else []
    mined = [await asyncio.to_thread(wallet.send_native, address, amount) for address, amount in sends]
    mined.append(await asyncio.to_thread(wallet.send_usdc, assigned, 40 * USDC))
    mined.append(await asyncio.to_thread(wallet.send_usdc, hot, 60 * USDC))
    await asyncio.to_thread(wallet.mine, chain_settings.confirmations)

    published = await publish(client, admin)
    assets = {item["asset"]: item for item in published["assets"]}
    async with factory() as session:
        (block,) = (await session.scalars(select(ReserveBlock).where(
            ReserveBlock.epoch_id == published["epoch"]))).all()
        holdings = {(row.address, row.asset): row for row in await session.scalars(select(ReserveHolding).where(
            ReserveHolding.epoch_id == published["epoch"]))}
    # One block for the chain, deep enough to hold every transfer above, the same for both assets.
    assert block.chain == chain_settings.name and block.number >= max(sent.block_number for sent in mined)
    head = await asyncio.to_thread(wallet.head)
    assert block.number <= head - chain_settings.confirmations + 1
    assert block.hash == (await asyncio.to_thread(wallet.w3.eth.get_block, block.number))["hash"].to_0x_hex()
    assert assets["ETH"]["blocks"] == assets["USDC"]["blocks"] == {chain_settings.name: block.number}

    # Every platform address, each asset, at that block: what the node itself says there.
    roles = {hot: "hot_wallet", retired: "retired_hot_wallet", assigned: "deposit_address", pooled: "deposit_address"}
    roles |= {cold: "cold_wallet"} if cold else {}
    assert {address for address, _ in holdings} == set(roles)
    for address, role in roles.items():
        eth = await asyncio.to_thread(wallet.w3.eth.get_balance, address, block.number)
        usdc = await asyncio.to_thread(wallet.usdc.functions.balanceOf(address).call, block_identifier=block.number)
        assert (holdings[(address, "ETH")].amount, holdings[(address, "USDC")].amount) == (eth, usdc)
        assert holdings[(address, "ETH")].role == holdings[(address, "USDC")].role == role
    sent_eth = sum(amount for _, amount in sends)
    assert sum(row.amount for (_, asset), row in holdings.items() if asset == "ETH") >= sent_eth
    assert assets["ETH"]["reserves"] == ledger.CurrencyInfo("ETH", 18, "native", ()).format(
        sum(row.amount for (_, asset), row in holdings.items() if asset == "ETH"))
    assert assets["USDC"]["reserves"] == ledger.CurrencyInfo("USDC", 6, "token", ()).format(
        sum(row.amount for (_, asset), row in holdings.items() if asset == "USDC"))
    assert int(assets["USDC"]["root"]["sum"]) == await owed(factory, "USDC")


async def test_an_xpub_file_that_does_not_verify_publishes_nothing(
        make_client, settings: Settings, chain_settings: ChainSettings, login_as, factory) -> None:
    write_xpub_file(settings, [chain_settings])
    assert settings.xpub_file is not None
    document = json.loads(settings.xpub_file.read_text())
    document["chains"][chain_settings.name]["hot_wallet"] = Account.create().address  # swapped, signature kept
    settings.xpub_file.write_text(json.dumps(document))
    client = await make_client(settings.model_copy(update={"chains": [chain_settings]}))
    admin = await login_as(client, "admin")
    async with factory() as session:
        before = await session.scalar(select(func.count()).select_from(ReserveEpoch))
    response = await client.post(f"{API}/admin/treasury/reserves", json={}, headers=admin.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (409, "xpub_file_refused")
    async with factory() as session:
        assert await session.scalar(select(func.count()).select_from(ReserveEpoch)) == before
