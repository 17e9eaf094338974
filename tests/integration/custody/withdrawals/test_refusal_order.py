"""A withdrawal request's refusals come in one order, and none holds anything (no withdrawal row, no
hold, no freeze but the sanctions one): the body, the step-up MFA code, the address book allowlist, the
sanctions list then a freeze, the balance, the KYC level's and the signer's limits, the Travel Rule data.
So an attempt without a code freezes nobody, and a customer short of funds hears it before being asked
for more."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.settings import Settings, WithdrawalLimit
from tests.factories import ETH, LoggedIn, credit_user, enable_mfa
from tests.integration.compliance.conftest import unmounted
from tests.integration.compliance.kyc.test_kyc import application
from tests.integration.custody.withdrawals.conftest import (
    API,
    DESTINATION,
    SANCTIONED,
    balances,
    body,
    error_code,
    withdrawal_count,
)

REQUEST = f"{API}/platform/crypto/withdrawals/request"
ADDRESS_BOOK = f"{API}/wallet/address-book"


@pytest.fixture
def order_settings(withdrawal_settings: Settings) -> Settings:
    return withdrawal_settings.model_copy(update={
        # KYC level 0 withdraws up to 10 ETH a day, level 1 without a KYC limit; the signer sends 20 at most.
        "kyc_withdrawal_limits": {0: {"ETH": "10"}, 1: {}},
        "signer_limits": {**withdrawal_settings.signer_limits,
                          "ETH": WithdrawalLimit(decimals=18, single="20", daily="1000000")},
    })


@pytest.fixture
async def client(make_client, order_settings: Settings) -> TestClient:
    return await make_client(order_settings, extra_routes=unmounted(order_settings))


async def refused(client, db, user: LoggedIn, status: int, code: str, payload: dict[str, Any]) -> None:
    before = await balances(client, user.headers)
    response = await client.post(REQUEST, json=payload, headers=user.headers)
    assert (response.status, await error_code(response)) == (status, code), await response.text()
    assert await balances(client, user.headers) == before
    assert await withdrawal_count(db, user.user_id) == 0


async def freezes_of(client, officer: LoggedIn, user: LoggedIn) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/admin/users/{user.user_id}/freezes", headers=officer.headers)
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


async def test_screening_runs_after_step_up(client, db, login_as) -> None:
    user, officer = await login_as(client), await login_as(client, "compliance")
    totp = await enable_mfa(client, user)
    to_sanctioned = body(to_address=SANCTIONED)
    # Without a code (or with a wrong one) the request never reaches the sanctions list: nobody is frozen.
    await refused(client, db, user, 401, "mfa_required", to_sanctioned)
    wrong = f"{(int(await totp.code()) + 1) % 1_000_000:06d}"
    await refused(client, db, user, 401, "invalid_mfa_code", {**to_sanctioned, "totp_code": wrong})
    assert await freezes_of(client, officer, user) == []
    await refused(client, db, user, 403, "sanctioned_address", {**to_sanctioned, "totp_code": await totp.code()})
    [frozen] = await freezes_of(client, officer, user)
    assert frozen["active"]


async def test_withdrawal_refusals_come_in_order(client, db, login_as) -> None:
    user, officer = await login_as(client), await login_as(client, "compliance")
    # The allowlist on, with the address the request ends up using listed (before MFA: no code needed)
    # and the one it starts with not.
    listed = await client.post(ADDRESS_BOOK, json={"chain": "ethereum", "address": DESTINATION, "label": "Mine"},
                               headers=user.headers)
    assert listed.status == 201, await listed.text()
    allowlist = await client.put(f"{ADDRESS_BOOK}/allowlist", json={"enabled": True}, headers=user.headers)
    assert allowlist.status == 200, await allowlist.text()
    totp = await enable_mfa(client, user)
    submitted = await client.post(f"{API}/me/kyc", json=application(), headers=user.headers)
    assert submitted.status == 201, await submitted.text()  # pending: still KYC level 0
    # Every rule broken at once: no code, a sanctioned address, 30 ETH of the 10 the user has, above the
    # KYC level's 10 a day and the signer's 20, and no beneficiary data above the Travel Rule's 5.
    payload = body(to_address=SANCTIONED, amount="30")
    await refused(client, db, user, 401, "mfa_required", payload)

    payload["totp_code"] = await totp.code()
    await refused(client, db, user, 403, "address_not_allowlisted", payload)
    # The refusal rolled back, so its code is unspent: listing the address (a step-up too) takes it.
    listed = await client.post(ADDRESS_BOOK, headers=user.headers, json={
        "chain": "ethereum", "address": SANCTIONED, "label": "Typo", "totp_code": payload["totp_code"]})
    assert listed.status == 201, await listed.text()

    payload["totp_code"] = await totp.code()
    await refused(client, db, user, 403, "sanctioned_address", payload)
    [freeze] = await freezes_of(client, officer, user)
    assert freeze["active"]

    # The sanctions hit is committed with the code it used; the refusals below roll back, so the next
    # code serves them all, as a customer retyping what their app shows.
    payload.update(to_address=DESTINATION, totp_code=await totp.code())
    await refused(client, db, user, 403, "withdrawals_frozen", payload)
    lifted = await client.post(f"{API}/admin/users/{user.user_id}/freezes/{freeze['id']}/lift",
                               json={"reason": "a typo, checked with the customer"}, headers=officer.headers)
    assert lifted.status == 200, await lifted.text()

    await refused(client, db, user, 422, "insufficient_funds", payload)
    await credit_user(db, user.user_id, "ETH", 100 * ETH)

    await refused(client, db, user, 403, "kyc_limit_exceeded", payload)
    decided = await client.post(f"{API}/admin/kyc/{user.user_id}/decision", headers=officer.headers,
                                json={"decision": "approved", "level": 1, "reason": "documents checked"})
    assert decided.status == 200, await decided.text()

    await refused(client, db, user, 403, "signer_limit_exceeded", payload)
    payload["amount"] = "15"

    await refused(client, db, user, 422, "travel_rule_required", payload)
    payload["travel_rule"] = {"beneficiary_name": "Ada Lovelace"}

    accepted = await client.post(REQUEST, json=payload, headers=user.headers)
    assert accepted.status == 201, await accepted.text()
    eth = next(item for item in await balances(client, user.headers) if item["currency"] == "ETH")
    assert (eth["available"], eth["held"]) == ("94.999", "15.001")
    # Only the sanctions hit froze anything, and it stays lifted.
    assert [item["active"] for item in await freezes_of(client, officer, user)] == [False]
