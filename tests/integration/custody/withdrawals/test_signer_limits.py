"""The signer's own limits, known to the custody side: a request the signer would refuse is refused at
request (403 ``signer_limit_exceeded``), holding nothing, before it can take a nonce and stall others.

The daily limit is the signer's, over every customer's withdrawals of the asset: these tests use POL,
on a chain of their own, which no other test withdraws, and roll back what they requested."""

from __future__ import annotations

import asyncio

import pytest

from core.settings import ChainSettings, Settings, WithdrawalLimit
from tests.integration.custody.withdrawals.conftest import API, DESTINATION, balances, error_code, withdrawal_count

REQUEST = f"{API}/platform/crypto/withdrawals/request"


def pol(amount: str) -> dict:
    return {"chain": "polygon", "asset": "POL", "to_address": DESTINATION, "amount": amount}


@pytest.fixture
def limited_settings(withdrawal_settings: Settings) -> Settings:
    polygon = ChainSettings(name="polygon", chain_id=31338, rpc_url="http://127.0.0.1:1", native="POL",
                            confirmations=1)
    return withdrawal_settings.model_copy(update={
        "chains": [*withdrawal_settings.chains, polygon], "sandbox_credit": "ETH:10,USDC:50000,POL:1000",
        "signer_limits": {"ETH": WithdrawalLimit(decimals=18, single="2", daily="1000"),
                          "POL": WithdrawalLimit(decimals=18, single="100", daily="150")},  # no USDC: never signed
    })


@pytest.fixture
async def limited_client(make_client, limited_settings: Settings):
    return await make_client(limited_settings)


@pytest.fixture
async def roll_back_afterwards(limited_client):
    """Rolls back what a test requested, so the POL daily total is back to nothing for the next test."""
    made: list[tuple[str, dict[str, str]]] = []
    yield made
    for withdrawal_id, headers in made:
        await limited_client.post(f"{API}/platform/crypto/withdrawals/{withdrawal_id}/rollback", headers=headers)


async def refused(client, db, user, payload: dict) -> dict:
    before = await balances(client, user.headers)
    count = await withdrawal_count(db, user.user_id)
    response = await client.post(REQUEST, json=payload, headers=user.headers)
    assert response.status == 403, await response.text()
    assert await error_code(response) == "signer_limit_exceeded"
    assert await balances(client, user.headers) == before
    assert await withdrawal_count(db, user.user_id) == count
    return (await response.json())["error"]["details"]


async def accepted(client, user, payload: dict, made: list) -> dict:
    response = await client.post(REQUEST, json=payload, headers=user.headers)
    assert response.status == 201, await response.text()
    created = await response.json()
    made.append((created["id"], user.headers))
    return created


async def test_a_request_above_the_signers_single_limit_is_refused_holding_nothing(limited_client, db, login_as,
                                                                                  roll_back_afterwards) -> None:
    client, user = limited_client, await login_as(limited_client)
    details = await refused(client, db, user, {"chain": "ethereum", "asset": "ETH", "to_address": DESTINATION,
                                               "amount": "2.000000000000000001"})
    assert details == {"asset": "ETH", "limit": "single", "single_limit": "2"}
    # An asset the signer has no limits for is one it never signs: refused at once, not after approval.
    assert (await refused(client, db, user, {"chain": "ethereum", "asset": "USDC", "to_address": DESTINATION,
                                             "amount": "1"}))["limit"] == "unconfigured"
    await accepted(client, user, {"chain": "ethereum", "asset": "ETH", "to_address": DESTINATION, "amount": "2"},
                   roll_back_afterwards)


async def test_a_request_past_the_signers_daily_limit_is_refused(limited_client, db, login_as,
                                                                 roll_back_afterwards) -> None:
    client = limited_client
    first, second = await login_as(client), await login_as(client)
    await accepted(client, first, pol("100"), roll_back_afterwards)
    # Counted over every customer: the signer's window is the hot wallet's, not the customer's.
    details = await refused(client, db, second, pol("60"))
    assert details == {"asset": "POL", "limit": "daily", "window_hours": 24}
    await accepted(client, second, pol("50"), roll_back_afterwards)  # exactly the limit: 150
    # Rolled back, a withdrawal moved nothing and leaves the window.
    withdrawal_id, headers = roll_back_afterwards.pop(0)
    rolled = await client.post(f"{API}/platform/crypto/withdrawals/{withdrawal_id}/rollback", headers=headers)
    assert rolled.status == 200, await rolled.text()
    await accepted(client, second, pol("60"), roll_back_afterwards)


async def test_concurrent_requests_cannot_squeeze_past_the_signers_daily_limit(limited_client, login_as,
                                                                               roll_back_afterwards) -> None:
    client = limited_client
    users = [await login_as(client) for _ in range(6)]
    answers = await asyncio.gather(*(client.post(REQUEST, json=pol("40"), headers=user.headers) for user in users))
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [201, 201, 201, 403, 403, 403], statuses  # 3 × 40 fit in 150, a fourth would not
    for user, answer in zip(users, answers, strict=True):
        if answer.status == 201:
            roll_back_afterwards.append(((await answer.json())["id"], user.headers))
        else:
            assert await error_code(answer) == "signer_limit_exceeded"
            held = next(item for item in await balances(client, user.headers) if item["currency"] == "POL")["held"]
            assert held == "0"
