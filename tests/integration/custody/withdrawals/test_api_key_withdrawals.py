"""A withdrawal requested with an API key: the key's creation under step-up stands for the TOTP code, but
only with ``withdrawals:write`` and only to an address active in the owner's address book."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.settings import Settings
from tests.factories import enable_mfa
from tests.integration.custody.withdrawals.conftest import (
    API,
    DESTINATION,
    body,
    error_code,
)

BOOK = f"{API}/wallet/address-book"
REQUEST = f"{API}/platform/crypto/withdrawals/request"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # Anvil's dev account 2


async def create_key(client: TestClient, user, scopes: list[str], **extra: Any) -> dict[str, str]:
    response = await client.post(f"{API}/api-keys", json={"name": "payouts", "scopes": scopes, **extra},
                                 headers=user.headers)
    assert response.status == 201, await response.text()
    return {"Authorization": f"Bearer {(await response.json())['key']}"}


async def add_to_book(client: TestClient, user, totp, address: str = DESTINATION) -> None:
    response = await client.post(BOOK, json={"chain": "ethereum", "address": address, "label": "payouts",
                                             "totp_code": await totp.code()}, headers=user.headers)
    assert response.status == 201, await response.text()


async def test_a_stepped_up_key_withdraws_to_a_book_address_without_a_code(client, login_as) -> None:
    user = await login_as(client)
    totp = await enable_mfa(client, user)
    await add_to_book(client, user, totp)
    key = await create_key(client, user, ["withdrawals:write", "withdrawals:read"], totp_code=await totp.code())

    response = await client.post(REQUEST, json=body(amount="0.1"), headers=key)
    assert response.status == 201, await response.text()
    # Anywhere else the code is still asked for, and a right one still works.
    response = await client.post(REQUEST, json=body(amount="0.1", to_address=OTHER), headers=key)
    assert response.status == 401 and await error_code(response) == "mfa_required"
    response = await client.post(REQUEST, json=body(amount="0.1", to_address=OTHER, totp_code=await totp.code()),
                                 headers=key)
    assert response.status == 201, await response.text()


async def test_a_key_made_before_mfa_was_on_stands_for_no_code(client, login_as) -> None:
    user = await login_as(client)
    key = await create_key(client, user, ["withdrawals:write"])
    totp = await enable_mfa(client, user)
    await add_to_book(client, user, totp)
    response = await client.post(REQUEST, json=body(amount="0.1"), headers=key)
    assert response.status == 401 and await error_code(response) == "mfa_required"


async def test_a_key_without_withdrawals_write_cannot_request_at_all(client, login_as) -> None:
    user = await login_as(client)
    totp = await enable_mfa(client, user)
    await add_to_book(client, user, totp)
    key = await create_key(client, user, ["withdrawals:read"], totp_code=await totp.code())
    response = await client.post(REQUEST, json=body(amount="0.1"), headers=key)
    assert response.status == 403 and await error_code(response) == "insufficient_scope"


@pytest.fixture
def cooling_settings(withdrawal_settings: Settings) -> Settings:
    return withdrawal_settings.model_copy(update={"address_cooling_off_hours": 24})


async def test_an_address_still_cooling_off_needs_the_code(make_client, cooling_settings, login_as) -> None:
    client = await make_client(cooling_settings)
    user = await login_as(client)
    totp = await enable_mfa(client, user)
    await add_to_book(client, user, totp)
    key = await create_key(client, user, ["withdrawals:write"], totp_code=await totp.code())
    response = await client.post(REQUEST, json=body(amount="0.1"), headers=key)
    assert response.status == 401 and await error_code(response) == "mfa_required"
