"""Withdrawal route fixtures: settings with one chain, play money, the devnet sanctions list.

The database is shared by every test of a worker: each test registers its own users (fresh ids
isolate them). No chain is reached here: approving only enqueues the custody worker's job.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory
from core.settings import ChainSettings, Settings
from tests.conftest import REPO_ROOT

API = "/api/v1"
DEVNET_SANCTIONS = REPO_ROOT / "deploy" / "devnet" / "sanctions.txt"
SANCTIONED = "0x000000000000000000000000000000000000dEaD"
DESTINATION = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # Anvil's dev account 1, valid EIP-55
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def withdrawal_settings(settings: Settings) -> Settings:
    chain = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                          tokens={"USDC": USDC}, confirmations=1)
    return settings.model_copy(update={
        "chains": [chain], "sandbox_credit": "ETH:10,USDC:50000", "sanctions_list_file": DEVNET_SANCTIONS,
        "withdrawal_fees": {"ETH": "0.001", "USDC": "1"},
        "withdrawal_travel_rule_thresholds": {"ETH": "5", "USDC": "1000"},
        "withdrawal_four_eyes_thresholds": {"ETH": "8", "USDC": "10000"},
    })


@pytest.fixture
async def client(make_client, withdrawal_settings: Settings) -> TestClient:
    return await make_client(withdrawal_settings)


@pytest.fixture(scope="session")
async def withdrawal_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=4)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def db(withdrawal_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(withdrawal_engine)


async def balance(client: TestClient, headers: dict[str, str], currency: str) -> dict[str, str]:
    response = await client.get(f"{API}/wallet/balances", headers=headers)
    assert response.status == 200, await response.text()
    return next(item for item in (await response.json())["balances"] if item["currency"] == currency)


async def balances(client: TestClient, headers: dict[str, str]) -> list[dict[str, str]]:
    response = await client.get(f"{API}/wallet/balances", headers=headers)
    return (await response.json())["balances"]


async def error_code(response: Any) -> str:
    return (await response.json())["error"]["code"]


async def withdrawal_count(db: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> int:
    async with db() as session:
        return await session.scalar(text("SELECT count(*) FROM withdrawals WHERE user_id = :user"), {"user": user_id})


def body(**overrides: Any) -> dict[str, Any]:
    return {"chain": "ethereum", "asset": "ETH", "to_address": DESTINATION, "amount": "1", **overrides}
