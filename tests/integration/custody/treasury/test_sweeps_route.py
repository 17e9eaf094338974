"""`GET /api/v1/admin/treasury/sweeps`: operators and admins see every sweep with its transactions, filtered
and paged like the other admin lists, with totals under the same filters; customers are refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory, unit_of_work
from core.settings import ChainSettings
from core.time import utcnow
from custody.treasury.models import Sweep

API = "/api/v1"
ETH, USDC = 10**18, 10**6
GWEI = 10**9
HOT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def chain_name() -> str:
    return f"sw{uuid.uuid4().hex[:10]}"  # the database is shared: every test filters on a chain of its own


@pytest.fixture
async def client(make_client, settings, chain_name):
    chain = ChainSettings(name=chain_name, chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                          tokens={"USDC": "0x5FbDB2315678afecb367f032d93F642f64180aa3"})
    return await make_client(settings.model_copy(update={"chains": [chain]}))


async def make_sweeps(factory, chain: str) -> list[Sweep]:
    """Three sweeps as the pipeline leaves them: a confirmed USDC one (topped up), a confirmed native one,
    and a USDC one waiting for its top-up; created a minute apart, oldest first."""
    start = utcnow() - timedelta(minutes=10)
    rows = [
        Sweep(id=uuid.uuid4(), chain=chain, asset="USDC", address="0x" + "a1" * 20, derivation_index=1,
              hot_wallet=HOT, amount=250 * USDC, balance_block=10, gas_limit=100_000, max_fee_per_gas=3 * GWEI,
              max_priority_fee_per_gas=GWEI, topup_amount=300_000 * GWEI, state="confirmed",
              topup_tx_hash="0x" + "11" * 32, sweep_tx_hash="0x" + "12" * 32, topup_gas_cost=21_000 * GWEI,
              sweep_gas_cost=50_000 * GWEI, block_number=14, confirmations=3, created_at=start,
              finished_at=start + timedelta(seconds=30)),
        Sweep(id=uuid.uuid4(), chain=chain, asset="ETH", address="0x" + "b2" * 20, derivation_index=2,
              hot_wallet=HOT, amount=ETH // 2, balance_block=20, gas_limit=21_000, max_fee_per_gas=3 * GWEI,
              max_priority_fee_per_gas=GWEI, topup_amount=0, state="confirmed", sweep_tx_hash="0x" + "22" * 32,
              sweep_gas_cost=21_000 * GWEI, block_number=22, confirmations=3,
              created_at=start + timedelta(minutes=1)),
        Sweep(id=uuid.uuid4(), chain=chain, asset="USDC", address="0x" + "c3" * 20, derivation_index=3,
              hot_wallet=HOT, amount=40 * USDC, balance_block=30, gas_limit=100_000, max_fee_per_gas=3 * GWEI,
              max_priority_fee_per_gas=GWEI, topup_amount=300_000 * GWEI, state="pending_topup",
              created_at=start + timedelta(minutes=2)),
    ]
    async with unit_of_work(factory) as session:
        session.add_all(rows)
    return rows


async def get(client, headers, **params):
    response = await client.get(f"{API}/admin/treasury/sweeps", params=params, headers=headers)
    return response.status, await response.json()


async def test_operators_see_each_sweep_with_its_transactions_and_the_totals(client, login_as, factory,
                                                                              chain_name) -> None:
    confirmed_usdc, native, waiting = await make_sweeps(factory, chain_name)
    operator = await login_as(client, "operator")
    status, body = await get(client, operator.headers, chain=chain_name)
    assert status == 200, body
    assert [item["id"] for item in body["items"]] == [str(waiting.id), str(native.id), str(confirmed_usdc.id)]
    first = body["items"][2]
    assert (first["address"], first["asset"], first["amount"], first["state"]) == (
        confirmed_usdc.address, "USDC", "250", "confirmed")
    assert (first["topup_tx_hash"], first["sweep_tx_hash"]) == ("0x" + "11" * 32, "0x" + "12" * 32)
    assert (first["topup_amount"], first["topup_gas_cost"], first["sweep_gas_cost"]) == (
        "0.0003", "0.000021", "0.00005")  # the gas is in the chain's native coin
    assert (body["items"][1]["amount"], body["items"][1]["topup_tx_hash"]) == ("0.5", None)
    assert body["next_cursor"] is None
    assert body["totals"] == [
        {"chain": chain_name, "asset": "ETH", "sweeps": 1, "swept": "0.5", "in_flight": "0",
         "topup_gas": "0", "sweep_gas": "0.000021"},
        {"chain": chain_name, "asset": "USDC", "sweeps": 2, "swept": "250", "in_flight": "40",
         "topup_gas": "0.000021", "sweep_gas": "0.00005"},
    ]


async def test_filters_by_asset_and_state_and_pages_with_a_cursor(client, login_as, factory, chain_name) -> None:
    confirmed_usdc, native, waiting = await make_sweeps(factory, chain_name)
    admin = await login_as(client, "admin")
    status, body = await get(client, admin.headers, chain=chain_name, asset="USDC")
    assert [item["id"] for item in body["items"]] == [str(waiting.id), str(confirmed_usdc.id)]
    assert [total["asset"] for total in body["totals"]] == ["USDC"]
    status, body = await get(client, admin.headers, chain=chain_name, state="confirmed")
    assert [item["id"] for item in body["items"]] == [str(native.id), str(confirmed_usdc.id)]
    assert {total["asset"]: total["in_flight"] for total in body["totals"]} == {"ETH": "0", "USDC": "0"}

    seen, cursor = [], None
    while True:
        params = {"chain": chain_name, "limit": "1", **({"cursor": cursor} if cursor else {})}
        status, page = await get(client, admin.headers, **params)
        assert status == 200, page
        seen += [item["id"] for item in page["items"]]
        assert page["totals"][1]["sweeps"] == 2  # every page adds up the whole filter, not itself
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(waiting.id), str(native.id), str(confirmed_usdc.id)]


async def test_customers_and_compliance_are_refused_and_bad_filters_are_422(client, login_as, chain_name) -> None:
    for role in ("customer", "compliance"):
        user = await login_as(client, role)
        status, body = await get(client, user.headers, chain=chain_name)
        assert (status, body["error"]["code"]) == (403, "forbidden"), body
    operator = await login_as(client, "operator")
    status, body = await get(client, operator.headers, cursor="not-a-cursor")
    assert (status, body["error"]["code"]) == (422, "invalid_cursor")
    status, body = await get(client, operator.headers, state="lost")
    assert status == 422, body
