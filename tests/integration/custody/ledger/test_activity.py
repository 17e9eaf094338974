from __future__ import annotations

import uuid

import pytest

from core.db import unit_of_work
from core.errors import InvalidInput
from core.pagination import encode_cursor
from custody import ledger

User = ledger.AccountRef.user
System = ledger.AccountRef.system


def lines(page):
    return [(item.type, item.currency.code, item.direction, item.currency.format(item.amount)) for item in page.items]


async def test_activity_tells_the_story_of_available_money_newest_first(sessions, make_user_id, fund):
    buyer = await make_user_id()
    await fund(buyer, "USD", 10_000)
    async with unit_of_work(sessions) as session:
        voided = await ledger.hold(session, f"escrow:{uuid.uuid4()}", buyer, "USD", 1_000, type="escrow_hold")
        await ledger.void_hold(session, voided.id, type="escrow_cancel")
        posted = await ledger.hold(session, f"withdrawal:{uuid.uuid4()}", buyer, "USD", 3_000,
                                   type="withdrawal_hold", reference_kind="withdrawal", reference_id="w-1")
        # Settling held money adds no line; the unused part coming back does.
        await ledger.post_hold(session, posted.id, System("withdrawals_in_flight"), 2_000, tx_hash="0xabc")
    async with sessions() as session:
        page = await ledger.activity(session, buyer)
    assert lines(page) == [
        ("hold_post", "USD", "in", "10.00"),
        ("withdrawal_hold", "USD", "out", "30.00"),
        ("escrow_cancel", "USD", "in", "10.00"),
        ("escrow_hold", "USD", "out", "10.00"),
        ("deposit", "USD", "in", "100.00"),
    ]
    assert (page.items[0].reference_kind, page.items[0].reference_id, page.items[0].tx_hash) == (
        "withdrawal", "w-1", "0xabc")
    assert page.next_cursor is None


async def test_activity_pages_are_stable_while_new_lines_arrive(sessions, make_user_id, fund):
    user = await make_user_id()
    for _ in range(7):
        await fund(user, "USD", 100)
    seen = []
    async with sessions() as session:
        page = await ledger.activity(session, user, limit=3)
    seen += page.items
    while page.next_cursor:
        await fund(user, "USD", 1)  # lands on top, never inside the pages still to come
        async with sessions() as session:
            page = await ledger.activity(session, user, limit=3, cursor=page.next_cursor)
        seen += page.items
    assert len(seen) == 7 and len({item.id for item in seen}) == 7
    assert [item.amount for item in seen] == [100] * 7
    assert [item.created_at for item in seen] == sorted((item.created_at for item in seen), reverse=True)


async def test_activity_filters_by_currency(sessions, make_user_id, fund):
    user = await make_user_id()
    await fund(user, "USD", 100)
    await fund(user, "ETH", 10**18)
    async with sessions() as session:
        assert lines(await ledger.activity(session, user, currency="ETH")) == [("deposit", "ETH", "in", "1")]
        assert lines(await ledger.activity(session, user, currency="USDC")) == []
        with pytest.raises(InvalidInput) as unknown:
            await ledger.activity(session, user, currency="XYZ")
    assert unknown.value.code == "unknown_currency"


@pytest.mark.parametrize("cursor", ["garbage", encode_cursor("yesterday", "77a597bb-aa92-48a8-bf80-0b83da9dc7f9"), encode_cursor("x"),
                                    encode_cursor("2026-01-01T00:00:00", "bab18df8-9e64-42cc-929f-592c68263ac2"),
                                    encode_cursor("2026-01-01T00:00:00+00:00", "not-a-uuid")])
async def test_a_cursor_the_api_did_not_issue_is_refused(sessions, make_user_id, cursor):
    user = await make_user_id()
    async with sessions() as session:
        with pytest.raises(InvalidInput) as refused:
            await ledger.activity(session, user, cursor=cursor)
    assert refused.value.code == "invalid_cursor"


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_an_out_of_range_limit_is_refused(sessions, make_user_id, limit):
    user = await make_user_id()
    async with sessions() as session:
        with pytest.raises(InvalidInput):
            await ledger.activity(session, user, limit=limit)
