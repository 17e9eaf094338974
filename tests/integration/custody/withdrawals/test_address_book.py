"""The withdrawal address book and its allowlist: entries are the caller's own, adding one and turning
the allowlist off take the same step-up as a withdrawal, and with the allowlist on a withdrawal goes
only to a usable entry of the book (403 ``address_not_allowlisted`` otherwise, holding nothing)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from core.settings import Settings
from tests.factories import enable_mfa
from tests.integration.custody.withdrawals.conftest import (
    API,
    DESTINATION,
    balances,
    body,
    error_code,
    withdrawal_count,
)

BOOK = f"{API}/wallet/address-book"
ALLOWLIST = f"{BOOK}/allowlist"
REQUEST = f"{API}/platform/crypto/withdrawals/request"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # Anvil's dev account 2


def entry(**overrides: Any) -> dict[str, Any]:
    return {"chain": "ethereum", "address": DESTINATION, "label": "My cold wallet", **overrides}


async def add(client: TestClient, user, **overrides: Any) -> dict[str, Any]:
    response = await client.post(BOOK, json=entry(**overrides), headers=user.headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def book(client: TestClient, user, **query: Any) -> dict[str, Any]:
    response = await client.get(BOOK, params=query, headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def allowlist(client: TestClient, user, enabled: bool, **extra: Any) -> dict[str, Any]:
    response = await client.put(ALLOWLIST, json={"enabled": enabled, **extra}, headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def holds_of(db, user_id: uuid.UUID) -> int:
    async with db() as session:
        return await session.scalar(text("SELECT count(*) FROM ledger_holds WHERE user_id = :user"), {"user": user_id})


async def events_of(client: TestClient, auditor, user_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/admin/events/export/address_book/{user_id}", headers=auditor.headers)
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


async def test_entries_are_listed_normalised_and_removed(client, login_as) -> None:
    user, admin = await login_as(client), await login_as(client, "admin")
    assert await book(client, user) == {"allowlist_enabled": False, "items": [], "next_cursor": None}

    # All one case is accepted and stored as the withdrawal request stores it (EIP-55).
    added = await add(client, user, address=DESTINATION.lower())
    assert (added["chain"], added["address"], added["label"]) == ("ethereum", DESTINATION, "My cold wallet")
    assert added["usable"] is True and added["usable_at"] == added["created_at"]  # no cooling-off in test
    second = await add(client, user, address=OTHER, label="Exchange")
    listed = await book(client, user)
    assert [item["id"] for item in listed["items"]] == [second["id"], added["id"]]  # newest first
    page = await book(client, user, limit=1)
    assert [item["id"] for item in page["items"]] == [second["id"]] and page["next_cursor"]
    rest = await book(client, user, limit=1, cursor=page["next_cursor"])
    assert [item["id"] for item in rest["items"]] == [added["id"]] and rest["next_cursor"] is None

    removed = await client.delete(f"{BOOK}/{added['id']}", headers=user.headers)
    assert removed.status == 204, await removed.text()
    assert [item["id"] for item in (await book(client, user))["items"]] == [second["id"]]
    again = await client.delete(f"{BOOK}/{added['id']}", headers=user.headers)
    assert (again.status, await error_code(again)) == (404, "address_book_entry_not_found")

    # Every change is an event of the user's address book, and the book replays from them.
    events = await events_of(client, admin, user.user_id)
    assert [event["type"] for event in events] == ["address_book.entry_added", "address_book.entry_added",
                                                   "address_book.entry_removed"]
    assert events[0]["data"]["address"] == DESTINATION and events[0]["actor"] == str(user.user_id)
    replayed = await client.post(f"{API}/admin/events/replay/address_book/{user.user_id}", headers=admin.headers)
    assert replayed.status == 200, await replayed.text()
    assert (await replayed.json())["drift"] == []


async def test_a_bad_entry_is_refused(client, login_as) -> None:
    user = await login_as(client)
    for overrides, status, code in [
        ({"address": DESTINATION.replace("C5", "c5")}, 422, "invalid_address"),  # a wrong EIP-55 checksum
        ({"address": "0x" + "0" * 40}, 422, "invalid_address"),
        ({"chain": "bitcoin"}, 422, "unknown_chain"),
        ({"label": ""}, 422, "validation_error"),
    ]:
        response = await client.post(BOOK, json=entry(**overrides), headers=user.headers)
        assert (response.status, await error_code(response)) == (status, code), overrides
    assert (await book(client, user))["items"] == []


async def test_a_duplicate_entry_is_a_conflict(client, login_as) -> None:
    user, other = await login_as(client), await login_as(client)
    await add(client, user)
    duplicate = await client.post(BOOK, json=entry(address=DESTINATION.lower(), label="Again"), headers=user.headers)
    assert (duplicate.status, await error_code(duplicate)) == (409, "address_already_in_book")
    # Per user and per chain: someone else's book may hold the same address.
    await add(client, other)
    assert len((await book(client, user))["items"]) == 1


async def test_another_users_entry_does_not_exist(client, login_as) -> None:
    owner, stranger = await login_as(client), await login_as(client)
    added = await add(client, owner)
    response = await client.delete(f"{BOOK}/{added['id']}", headers=stranger.headers)
    assert (response.status, await error_code(response)) == (404, "address_book_entry_not_found")
    assert (await book(client, stranger))["items"] == []
    assert [item["id"] for item in (await book(client, owner))["items"]] == [added["id"]]
    not_an_id = await client.delete(f"{BOOK}/not-an-id", headers=owner.headers)
    assert (not_an_id.status, await error_code(not_an_id)) == (404, "address_book_entry_not_found")


async def test_adding_an_entry_takes_the_step_up(client, login_as) -> None:
    user = await login_as(client)
    totp = await enable_mfa(client, user)
    missing = await client.post(BOOK, json=entry(), headers=user.headers)
    assert (missing.status, await error_code(missing)) == (401, "mfa_required")
    wrong = f"{(int(await totp.code()) + 1) % 1_000_000:06d}"
    refused = await client.post(BOOK, json=entry(totp_code=wrong), headers=user.headers)
    assert (refused.status, await error_code(refused)) == (401, "invalid_mfa_code")
    assert (await book(client, user))["items"] == []
    code = await totp.code()
    await add(client, user, totp_code=code)
    # Each code once: the same code cannot add a second address.
    reused = await client.post(BOOK, json=entry(address=OTHER, totp_code=code), headers=user.headers)
    assert (reused.status, await error_code(reused)) == (401, "invalid_mfa_code")


async def test_turning_the_allowlist_on_is_immediate_and_off_takes_the_step_up(client, login_as) -> None:
    user, admin = await login_as(client), await login_as(client, "admin")
    totp = await enable_mfa(client, user)
    assert (await allowlist(client, user, True))["enabled"] is True  # only makes withdrawals harder: no code
    assert (await book(client, user))["allowlist_enabled"] is True

    missing = await client.put(ALLOWLIST, json={"enabled": False}, headers=user.headers)
    assert (missing.status, await error_code(missing)) == (401, "mfa_required")
    assert (await book(client, user))["allowlist_enabled"] is True
    assert (await allowlist(client, user, False, totp_code=await totp.code()))["enabled"] is False

    events = await events_of(client, admin, user.user_id)
    assert [event["type"] for event in events] == ["address_book.allowlist_enabled",
                                                   "address_book.allowlist_disabled"]


async def test_allowlist_refuses_unlisted_destination(client, db, login_as) -> None:
    user, neighbour = await login_as(client), await login_as(client)  # 10 ETH of play money each
    await add(client, user, address=OTHER)
    await add(client, neighbour)  # someone else's book lists nothing for the caller
    await allowlist(client, user, True)
    before = await balances(client, user.headers)

    response = await client.post(REQUEST, json=body(), headers=user.headers)
    assert (response.status, await error_code(response)) == (403, "address_not_allowlisted"), await response.text()
    assert (await response.json())["error"]["details"] == {"chain": "ethereum", "to_address": DESTINATION}
    assert await withdrawal_count(db, user.user_id) == 0
    assert await holds_of(db, user.user_id) == 0
    assert await balances(client, user.headers) == before
    await add(client, user)
    accepted = await client.post(REQUEST, json=body(), headers=user.headers)
    assert accepted.status == 201, await accepted.text()
    assert (await accepted.json())["to_address"] == DESTINATION


@pytest.fixture
def cooling_settings(withdrawal_settings: Settings) -> Settings:
    return withdrawal_settings.model_copy(update={"address_book_cooling_hours": 24})


async def test_a_new_entry_waits_out_the_cooling_off(make_client, cooling_settings, db, login_as) -> None:
    client = await make_client(cooling_settings)
    user = await login_as(client)
    added = await add(client, user)
    created, usable_at = (datetime.fromisoformat(added[key]) for key in ("created_at", "usable_at"))
    assert added["usable"] is False and usable_at - created == timedelta(hours=24)
    await allowlist(client, user, True)
    response = await client.post(REQUEST, json=body(), headers=user.headers)
    assert (response.status, await error_code(response)) == (403, "address_not_allowlisted")
    details = (await response.json())["error"]["details"]
    assert datetime.fromisoformat(details["usable_at"]) == usable_at
    assert await withdrawal_count(db, user.user_id) == 0

    # Once the cooling-off is over (here: moved back by a day), the entry is usable.
    async with db() as session, session.begin():
        await session.execute(text("UPDATE address_book_entries SET usable_at = usable_at - interval '1 day'"
                                   " WHERE id = :id"), {"id": uuid.UUID(added["id"])})
    assert (await book(client, user))["items"][0]["usable"] is True
    accepted = await client.post(REQUEST, json=body(), headers=user.headers)
    assert accepted.status == 201, await accepted.text()
