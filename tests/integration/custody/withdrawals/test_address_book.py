"""The withdrawal address book and its allowlist: entries are the caller's own, adding one and turning
the allowlist off take the same step-up as a withdrawal and the cooling-off, and with the allowlist on a
withdrawal goes only to a usable entry of the book for its chain and asset (403 ``address_not_allowlisted``
otherwise, holding nothing). Adding an entry emails the owner."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from api.keys import OPENAPI
from content.seed import seed_content
from core.db import create_engine, session_factory, unit_of_work
from core.settings import Settings
from custody.withdrawals.address_book import AddressNotAllowlisted, require_allowlisted
from devnet.processes import free_port
from devnet.smtp import start_smtp_server
from jobs.broker import close_broker, create_broker
from tests.factories import enable_mfa
from tests.integration.custody.withdrawals.conftest import (
    API,
    DESTINATION,
    balances,
    body,
    error_code,
    withdrawal_count,
)
from tests.integration.notifications.conftest import messages, notifications_worker

BOOK = f"{API}/wallet/address-book"
ME = f"{API}/me"
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


async def me(client: TestClient, user) -> dict[str, Any]:
    response = await client.get(ME, headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def patch_me(client: TestClient, user, **changes: Any) -> dict[str, Any]:
    response = await client.patch(ME, json=changes, headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


def allowlist_of(profile: dict[str, Any]) -> tuple[bool, datetime | None]:
    off_at = profile["withdrawal_allowlist_off_at"]
    return profile["withdrawal_allowlist"], None if off_at is None else datetime.fromisoformat(off_at)


def documented(client: TestClient, method: str, path: str, status: int) -> list[str]:
    responses = client.app[OPENAPI]["paths"][path][method.lower()]["responses"]
    return responses.get(str(status), {}).get("x-error-codes", [])


async def holds_of(db, user_id: uuid.UUID) -> int:
    async with db() as session:
        return await session.scalar(text("SELECT count(*) FROM ledger_holds WHERE user_id = :user"), {"user": user_id})


async def events_of(client: TestClient, auditor, user_id: uuid.UUID) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/admin/events/export/address_book/{user_id}", headers=auditor.headers)
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


async def test_entries_are_listed_normalised_and_removed(client, login_as) -> None:
    user, admin = await login_as(client), await login_as(client, "admin")
    assert await book(client, user) == {"allowlist_enabled": False, "allowlist_off_at": None, "items": [],
                                        "next_cursor": None}

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
    for overrides, code, field in [
        ({"address": DESTINATION.replace("C5", "c5")}, "invalid_address", "address"),  # a wrong EIP-55 checksum
        ({"address": "0x" + "0" * 40}, "invalid_address", "address"),
        ({"chain": "bitcoin"}, "unknown_chain", "chain"),
        ({"asset": "DOGE"}, "asset_not_on_chain", "asset"),
        ({"asset": "POL"}, "asset_not_on_chain", "asset"),  # polygon's coin, not this chain's
        ({"label": ""}, "validation_error", None),
    ]:
        response = await client.post(BOOK, json=entry(**overrides), headers=user.headers)
        assert (response.status, await error_code(response)) == (422, code), overrides
        if field is not None:  # the refusal names the field it is about
            assert (await response.json())["error"]["details"][field] == overrides[field], overrides
        assert code in documented(client, "POST", BOOK, 422), code
    assert (await book(client, user))["items"] == []


async def test_an_entry_may_be_for_one_asset_of_its_chain(client, login_as) -> None:
    user, admin = await login_as(client), await login_as(client, "admin")
    any_asset = await add(client, user, address=OTHER)
    usdc = await add(client, user, asset="usdc")  # stored as the chain configures it
    assert (any_asset["asset"], usdc["asset"]) == (None, "USDC")
    listed = {item["id"]: item["asset"] for item in (await book(client, user))["items"]}
    assert listed == {any_asset["id"]: None, usdc["id"]: "USDC"}
    # Still one entry per chain and address, whatever its asset.
    duplicate = await client.post(BOOK, json=entry(asset="ETH", label="Again"), headers=user.headers)
    assert (duplicate.status, await error_code(duplicate)) == (409, "address_already_in_book")

    events = await events_of(client, admin, user.user_id)
    assert [event["data"]["asset"] for event in events] == [None, "USDC"]
    replayed = await client.post(f"{API}/admin/events/replay/address_book/{user.user_id}", headers=admin.headers)
    assert (await replayed.json())["drift"] == []


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
    return withdrawal_settings.model_copy(update={"address_cooling_off_hours": 24})


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


async def test_an_entry_for_one_asset_takes_withdrawals_of_that_asset_only(client, db, login_as) -> None:
    user = await login_as(client)
    await add(client, user, asset="USDC")  # DESTINATION, for USDC only
    await add(client, user, address=OTHER, label="Any asset")
    await allowlist(client, user, True)

    response = await client.post(REQUEST, json=body(), headers=user.headers)  # ETH to the USDC entry
    assert (response.status, await error_code(response)) == (403, "address_not_allowlisted"), await response.text()
    details = (await response.json())["error"]["details"]
    assert (details["to_address"], details["entry_asset"]) == (DESTINATION, "USDC")
    assert await withdrawal_count(db, user.user_id) == 0
    assert await holds_of(db, user.user_id) == 0

    accepted = await client.post(REQUEST, json=body(to_address=OTHER), headers=user.headers)
    assert accepted.status == 201, await accepted.text()
    assert (await accepted.json())["to_address"] == OTHER


async def test_the_allowlist_check_reads_the_asset_of_the_entry(client, db, login_as) -> None:
    user = await login_as(client)
    await add(client, user, asset="USDC")
    await add(client, user, address=OTHER, label="Any asset")
    await allowlist(client, user, True)
    async with db() as session:
        await require_allowlisted(session, user.user_id, "ethereum", DESTINATION, asset="USDC")
        await require_allowlisted(session, user.user_id, "ethereum", OTHER, asset="ETH")
        await require_allowlisted(session, user.user_id, "ethereum", OTHER)
        with pytest.raises(AddressNotAllowlisted) as other_asset:
            await require_allowlisted(session, user.user_id, "ethereum", DESTINATION, asset="ETH")
        assert other_asset.value.details == {"chain": "ethereum", "to_address": DESTINATION, "asset": "ETH",
                                             "entry_asset": "USDC"}
        # A caller that does not say what it withdraws gets the narrowest reading: an entry for any asset.
        with pytest.raises(AddressNotAllowlisted):
            await require_allowlisted(session, user.user_id, "ethereum", DESTINATION)


async def test_turning_the_allowlist_off_waits_out_the_cooling_off(make_client, cooling_settings, db,
                                                                    login_as) -> None:
    client = await make_client(cooling_settings)
    user, admin = await login_as(client), await login_as(client, "admin")
    assert allowlist_of(await me(client, user)) == (False, None)
    assert allowlist_of(await patch_me(client, user, withdrawal_allowlist=True)) == (True, None)  # at once
    refused = await client.post(REQUEST, json=body(), headers=user.headers)
    assert (refused.status, await error_code(refused)) == (403, "address_not_allowlisted")

    before = datetime.now(UTC)
    enabled, off_at = allowlist_of(await patch_me(client, user, withdrawal_allowlist=False))
    assert enabled is True and off_at is not None
    assert before + timedelta(hours=24) <= off_at <= datetime.now(UTC) + timedelta(hours=24)
    # Until off_at the allowlist still applies, wherever it is read.
    assert allowlist_of(await me(client, user)) == (True, off_at)
    listed = await book(client, user)
    assert (listed["allowlist_enabled"], datetime.fromisoformat(listed["allowlist_off_at"])) == (True, off_at)
    still = await client.post(REQUEST, json=body(), headers=user.headers)
    assert (still.status, await error_code(still)) == (403, "address_not_allowlisted")
    assert await withdrawal_count(db, user.user_id) == 0
    # Asked again, by either route: nothing changes, the cooling-off does not start over.
    assert allowlist_of(await patch_me(client, user, withdrawal_allowlist=False)) == (True, off_at)
    put = await allowlist(client, user, False)
    assert (put["enabled"], datetime.fromisoformat(put["off_at"])) == (True, off_at)

    events = await events_of(client, admin, user.user_id)
    assert [event["type"] for event in events] == ["address_book.allowlist_enabled", "address_book.allowlist_disabled"]
    assert datetime.fromisoformat(events[1]["data"]["off_at"]) == off_at
    replayed = await client.post(f"{API}/admin/events/replay/address_book/{user.user_id}", headers=admin.headers)
    assert (await replayed.json())["drift"] == []

    # Once off_at has passed (here: moved back by a day), the allowlist is off.
    async with db() as session, session.begin():
        await session.execute(text("UPDATE address_books SET allowlist_off_at = allowlist_off_at - interval '1 day'"
                                   " WHERE user_id = :user"), {"user": user.user_id})
    assert allowlist_of(await me(client, user)) == (False, None)
    assert (await book(client, user))["allowlist_off_at"] is None
    accepted = await client.post(REQUEST, json=body(), headers=user.headers)
    assert accepted.status == 201, await accepted.text()


async def test_turning_the_allowlist_on_cancels_a_pending_turn_off(make_client, cooling_settings, db,
                                                                   login_as) -> None:
    client = await make_client(cooling_settings)
    user, admin = await login_as(client), await login_as(client, "admin")
    await patch_me(client, user, withdrawal_allowlist=True)
    _, off_at = allowlist_of(await patch_me(client, user, withdrawal_allowlist=False))
    assert off_at is not None
    assert await allowlist(client, user, True) == {"enabled": True, "off_at": None}  # the other route, same rule
    assert allowlist_of(await me(client, user)) == (True, None)
    async with db() as session:
        stored = (await session.execute(text("SELECT allowlist_enabled, allowlist_off_at FROM address_books"
                                             " WHERE user_id = :user"), {"user": user.user_id})).one()
    assert tuple(stored) == (True, None)  # nothing left to go off later

    events = await events_of(client, admin, user.user_id)
    assert [event["type"] for event in events] == ["address_book.allowlist_enabled", "address_book.allowlist_disabled",
                                                   "address_book.allowlist_enabled"]
    assert datetime.fromisoformat(events[2]["data"]["cancelled_off_at"]) == off_at
    replayed = await client.post(f"{API}/admin/events/replay/address_book/{user.user_id}", headers=admin.headers)
    assert (await replayed.json())["drift"] == []


async def test_patch_me_turns_the_allowlist_off_with_the_step_up(client, db, login_as) -> None:
    user = await login_as(client)
    totp = await enable_mfa(client, user)
    assert allowlist_of(await patch_me(client, user, withdrawal_allowlist=True)) == (True, None)  # no code
    missing = await client.patch(ME, json={"withdrawal_allowlist": False, "display_name": "Someone else"},
                                 headers=user.headers)
    assert (missing.status, await error_code(missing)) == (401, "mfa_required")
    wrong = f"{(int(await totp.code()) + 1) % 1_000_000:06d}"
    refused = await client.patch(ME, json={"withdrawal_allowlist": False, "display_name": "Someone else",
                                           "totp_code": wrong}, headers=user.headers)
    assert (refused.status, await error_code(refused)) == (401, "invalid_mfa_code")
    for code in ("mfa_required", "invalid_mfa_code"):
        assert code in documented(client, "PATCH", ME, 401), code
    profile = await me(client, user)
    assert allowlist_of(profile) == (True, None) and profile["display_name"] == "Test User"  # nothing changed

    # With the test's cooling-off of 0, off at once; the other fields change in the same request.
    changed = await patch_me(client, user, withdrawal_allowlist=False, display_name="Ada",
                             totp_code=await totp.code())
    assert allowlist_of(changed) == (False, None) and changed["display_name"] == "Ada"


async def test_with_no_cooling_off_the_allowlist_is_off_at_once(client, db, login_as) -> None:
    user = await login_as(client)  # no MFA: no step-up, as for a withdrawal
    await patch_me(client, user, withdrawal_allowlist=True)
    refused = await client.post(REQUEST, json=body(), headers=user.headers)
    assert (refused.status, await error_code(refused)) == (403, "address_not_allowlisted")
    assert allowlist_of(await patch_me(client, user, withdrawal_allowlist=False)) == (False, None)
    accepted = await client.post(REQUEST, json=body(), headers=user.headers)
    assert accepted.status == 201, await accepted.text()


@pytest.fixture
def mailbox(tmp_path: Path, redis_url: str) -> Iterator[tuple[int, Path]]:
    """A real SMTP server writing a maildir; the notifications queue emptied of other tests' messages."""
    broker = create_broker(redis_url)
    broker.flush("notifications")
    close_broker(broker)
    port, maildir = free_port(), tmp_path / "mail"
    controller = start_smtp_server("127.0.0.1", port, maildir)
    yield port, maildir
    controller.stop()


async def test_adding_an_entry_emails_the_owner(client, withdrawal_settings, login_as, mailbox, redis_url,
                                                database_url) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            await seed_content(session)  # the devnet's templates, published
    finally:
        await engine.dispose()
    user = await login_as(client)
    await add(client, user, asset="USDC", label="Exchange deposit")
    # Removed before the email went: the owner is told all the same.
    removed = await add(client, user, address=OTHER, label="Gone at once")
    assert (await client.delete(f"{BOOK}/{removed['id']}", headers=user.headers)).status == 204

    port, maildir = mailbox
    worker_settings = withdrawal_settings.model_copy(update={"smtp_port": port})
    async with notifications_worker(redis_url, database_url, worker_settings) as broker:
        await asyncio.to_thread(broker.join, "notifications", timeout=90_000)
    inbox = [message for message in messages(maildir) if message["To"] == user.email]
    texts = [message.get_body(("plain",)).get_content() for message in inbox
             if message["Subject"] == "A withdrawal address was added to your address book"]
    assert len(texts) == 2, [message["Subject"] for message in inbox]
    [usdc] = [text for text in texts if "Exchange deposit" in text]
    assert DESTINATION in usdc and "for USDC only" in usdc and "If this was not you" in usdc
    [gone] = [text for text in texts if "Gone at once" in text]
    assert OTHER in gone and "only" not in gone  # an entry for any asset


def test_the_cooling_off_is_read_under_its_name_and_its_former_one(monkeypatch) -> None:
    monkeypatch.delenv("VIRTUOZ_ADDRESS_COOLING_OFF_HOURS", raising=False)
    monkeypatch.delenv("VIRTUOZ_ADDRESS_BOOK_COOLING_HOURS", raising=False)
    assert Settings(env="test").address_cooling_off == timedelta(0)
    assert Settings(env="production").address_cooling_off == timedelta(hours=24)
    monkeypatch.setenv("VIRTUOZ_ADDRESS_BOOK_COOLING_HOURS", "6")
    assert Settings(env="test").address_cooling_off == timedelta(hours=6)
    monkeypatch.setenv("VIRTUOZ_ADDRESS_COOLING_OFF_HOURS", "2")
    assert Settings(env="test").address_cooling_off == timedelta(hours=2)  # the current name wins
    assert Settings(env="test", address_cooling_off_hours=1).address_cooling_off == timedelta(hours=1)
