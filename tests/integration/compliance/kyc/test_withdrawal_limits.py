"""KYC withdrawal limits through the real routes: per level, per asset, a rolling 24 hours."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import text

from core.db import unit_of_work
from core.settings import ChainSettings, Settings
from tests.conftest import REPO_ROOT
from tests.integration.compliance.conftest import unmounted
from tests.integration.compliance.kyc.test_kyc import application

API = "/api/v1"
REQUEST = f"{API}/platform/crypto/withdrawals/request"
DESTINATION = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
LIMITS = {0: {"ETH": "0.5", "USDC": "100"}, 1: {"ETH": "5"}, 2: {}}


@pytest.fixture
def limit_settings(settings: Settings) -> Settings:
    chain = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                          tokens={"USDC": USDC}, confirmations=1)
    return settings.model_copy(update={
        "chains": [chain], "sandbox_credit": "ETH:10,USDC:50000",
        "sanctions_list_file": REPO_ROOT / "deploy" / "devnet" / "sanctions.txt",
        "withdrawal_fees": {"ETH": "0.001", "USDC": "1"},
        "withdrawal_travel_rule_thresholds": {"ETH": "100", "USDC": "100000"},
        "withdrawal_four_eyes_thresholds": {"ETH": "100", "USDC": "100000"},
        "kyc_withdrawal_limits": LIMITS,
    })


@pytest.fixture
async def client(make_client, limit_settings: Settings):
    return await make_client(limit_settings, extra_routes=unmounted(limit_settings))


async def withdraw(client, user, amount: str, asset: str = "ETH"):
    return await client.post(REQUEST, json={"chain": "ethereum", "asset": asset, "to_address": DESTINATION,
                                            "amount": amount}, headers=user.headers)


async def held(client, user, asset: str = "ETH") -> str:
    response = await client.get(f"{API}/wallet/balances", headers=user.headers)
    return next(item for item in (await response.json())["balances"] if item["currency"] == asset)["held"]


async def verify(client, login_as, user, level: int) -> None:
    officer = await login_as(client, "compliance")
    assert (await client.post(f"{API}/me/kyc", json=application(), headers=user.headers)).status == 201
    decided = await client.post(f"{API}/admin/kyc/{user.user_id}/decision", headers=officer.headers,
                                json={"decision": "approved", "level": level, "reason": "documents checked"})
    assert decided.status == 200, await decided.text()


async def test_an_unverified_user_withdraws_up_to_the_small_limit_then_gets_a_clear_403(client, login_as) -> None:
    user = await login_as(client)
    assert (await withdraw(client, user, "0.3")).status == 201
    assert (await withdraw(client, user, "0.2")).status == 201  # the limit itself is allowed
    refused = await withdraw(client, user, "0.01")
    assert refused.status == 403
    error = (await refused.json())["error"]
    assert error["code"] == "kyc_limit_exceeded"
    assert error["details"] == {"level": 0, "asset": "ETH", "limit": "0.5", "used": "0.5", "requested": "0.01",
                                "remaining": "0", "window_hours": 24}
    assert Decimal(await held(client, user)) == Decimal("0.502")  # the refusal held nothing


async def test_limits_are_per_asset_and_a_pending_case_is_still_level_0(client, login_as) -> None:
    user = await login_as(client)
    assert (await client.post(f"{API}/me/kyc", json=application(), headers=user.headers)).status == 201  # pending
    assert (await withdraw(client, user, "0.5")).status == 201
    assert (await withdraw(client, user, "100", "USDC")).status == 201
    refused = await withdraw(client, user, "0.000001", "USDC")
    assert refused.status == 403 and (await refused.json())["error"]["details"]["used"] == "100"


async def test_rolled_back_withdrawals_and_requests_older_than_24_hours_do_not_count(client, login_as,
                                                                                     factory) -> None:
    user = await login_as(client)
    first = await (await withdraw(client, user, "0.5")).json()
    assert (await withdraw(client, user, "0.1")).status == 403
    rolled = await client.post(f"{API}/platform/crypto/withdrawals/{first['id']}/rollback", headers=user.headers)
    assert rolled.status == 200
    second = await (await withdraw(client, user, "0.5")).json()
    assert second["state"] == "requested"
    async with unit_of_work(factory) as session:  # the request was made a little over a day ago
        await session.execute(text("UPDATE withdrawals SET created_at = now() - interval '24 hours 1 second'"
                                   " WHERE id = :id"), {"id": second["id"]})
    assert (await withdraw(client, user, "0.5")).status == 201


async def test_an_approved_level_raises_the_limit_and_the_top_level_has_none(client, login_as) -> None:
    verified, trusted = await login_as(client), await login_as(client)
    await verify(client, login_as, verified, level=1)
    assert (await withdraw(client, verified, "4")).status == 201
    refused = await withdraw(client, verified, "1.5")
    assert refused.status == 403
    assert (await refused.json())["error"]["details"] == {
        "level": 1, "asset": "ETH", "limit": "5", "used": "4", "requested": "1.5", "remaining": "1",
        "window_hours": 24}
    # Level 1 lists no USDC: no KYC limit on it (the signer's own limits still apply).
    assert (await withdraw(client, verified, "5000", "USDC")).status == 201

    await verify(client, login_as, trusted, level=3)  # level 3 uses the table of level 2: empty
    assert (await withdraw(client, trusted, "9", "ETH")).status == 201


async def test_concurrent_requests_cannot_both_squeeze_under_the_limit(client, login_as) -> None:
    user = await login_as(client)
    answers = await asyncio.gather(*(withdraw(client, user, "0.3") for _ in range(4)))
    assert sorted(answer.status for answer in answers) == [201, 403, 403, 403]
    assert Decimal(await held(client, user)) == Decimal("0.301")


async def test_an_empty_table_means_no_kyc_limits(make_client, limit_settings, login_as) -> None:
    client = await make_client(limit_settings.model_copy(update={"kyc_withdrawal_limits": {}}))
    user = await login_as(client)
    assert (await withdraw(client, user, "9")).status == 201


@pytest.mark.parametrize("bad", [{0: {"ETH": "0,5"}}, {0: {"ETH": "-1"}}, {4: {"ETH": "1"}}, {0: {"ETH": "1e3"}}],
                         ids=["comma", "negative", "level-4", "exponent"])
def test_limit_settings_are_decimal_strings_of_known_levels(bad) -> None:
    with pytest.raises(ValueError, match="kyc_withdrawal_limits"):
        Settings(kyc_withdrawal_limits=bad)
