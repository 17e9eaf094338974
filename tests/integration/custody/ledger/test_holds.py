from __future__ import annotations

import uuid

import pytest

from core.db import unit_of_work
from core.errors import InsufficientFunds, InvalidInput, NotFound
from custody import ledger
from tests.integration.custody.ledger.conftest import balance_of

User = ledger.AccountRef.user
System = ledger.AccountRef.system


@pytest.fixture
async def funded(make_user_id, fund):
    """A user with 100.00 USD available."""
    user_id = await make_user_id()
    await fund(user_id, "USD", 10_000)
    return user_id


async def place_hold(sessions, user_id, amount, currency="USD", **options):
    async with unit_of_work(sessions) as session:
        return await ledger.hold(session, f"escrow:{uuid.uuid4()}", user_id, currency, amount, **options)


async def test_a_hold_moves_available_to_held(sessions, funded):
    placed = await place_hold(sessions, funded, 2_500, type="escrow_hold", reference_kind="escrow",
                              reference_id="e-7")
    assert (placed.state, placed.amount, placed.currency, placed.user_id) == ("pending", 2_500, "USD", funded)
    assert await balance_of(sessions, funded, "USD") == (7_500, 2_500)
    async with sessions() as session:
        assert await ledger.get_hold(session, placed.id) == placed


async def test_placing_a_hold_twice_under_one_reference_returns_the_first(sessions, funded):
    reference = f"escrow:{uuid.uuid4()}"
    async with unit_of_work(sessions) as session:
        first = await ledger.hold(session, reference, funded, "USD", 1_000)
    async with unit_of_work(sessions) as session:
        again = await ledger.hold(session, reference, funded, "USD", 1_000)
    assert again == first
    assert await balance_of(sessions, funded, "USD") == (9_000, 1_000)
    async with sessions() as session:
        with pytest.raises(ledger.ReferenceConflict):
            await ledger.hold(session, reference, funded, "USD", 1_001)


async def test_a_hold_beyond_the_available_balance_is_refused(sessions, funded):
    with pytest.raises(InsufficientFunds):
        await place_hold(sessions, funded, 10_001)
    assert await balance_of(sessions, funded, "USD") == (10_000, 0)


async def test_posting_a_hold_settles_it_to_the_destination(sessions, funded, make_user_id):
    seller = await make_user_id()
    placed = await place_hold(sessions, funded, 4_000, reference_kind="escrow", reference_id="e-1")
    async with unit_of_work(sessions) as session:
        posted = await ledger.post_hold(session, placed.id, User(seller), type="escrow_release")
    assert (posted.state, posted.posted_amount, posted.fee) == ("posted", 4_000, 0)
    assert posted.resolved_at is not None
    assert await balance_of(sessions, funded, "USD") == (6_000, 0)
    assert await balance_of(sessions, seller, "USD") == (4_000, 0)
    async with sessions() as session:
        assert await ledger.get_hold(session, placed.id) == posted
        page = await ledger.activity(session, seller)
    assert [(i.type, i.direction, i.amount, i.reference_kind, i.reference_id) for i in page.items] == [
        ("escrow_release", "in", 4_000, "escrow", "e-1")]  # the business object is the hold's


async def test_a_partial_post_with_a_fee_returns_the_rest_to_available(sessions, funded):
    placed = await place_hold(sessions, funded, 5_000)
    async with unit_of_work(sessions) as session:
        posted = await ledger.post_hold(session, placed.id, System("withdrawals_in_flight"), 3_000, fee=150,
                                        tx_hash="0xfeed")
    assert (posted.state, posted.posted_amount, posted.fee) == ("posted", 3_000, 150)
    # 10 000 − 3 000 sent − 150 fee: the unused 1 850 came back.
    assert await balance_of(sessions, funded, "USD") == (6_850, 0)


async def test_a_post_defaults_to_the_whole_hold_less_the_fee(sessions, funded):
    placed = await place_hold(sessions, funded, 1_000)
    async with unit_of_work(sessions) as session:
        posted = await ledger.post_hold(session, placed.id, System("withdrawals_in_flight"), fee=30,
                                        fee_account=System("network_fees"))
    assert (posted.posted_amount, posted.fee) == (970, 30)
    assert await balance_of(sessions, funded, "USD") == (9_000, 0)


async def test_voiding_a_hold_returns_the_money(sessions, funded):
    placed = await place_hold(sessions, funded, 3_000)
    async with unit_of_work(sessions) as session:
        voided = await ledger.void_hold(session, placed.id)
    assert (voided.state, voided.posted_amount) == ("voided", None)
    assert await balance_of(sessions, funded, "USD") == (10_000, 0)


@pytest.mark.parametrize(("first", "second"), [("post", "post"), ("post", "void"), ("void", "void"),
                                               ("void", "post")])
async def test_resolving_a_hold_twice_is_a_conflict(sessions, funded, first, second):
    placed = await place_hold(sessions, funded, 1_000)

    async def resolve(how):
        async with unit_of_work(sessions) as session:
            if how == "post":
                return await ledger.post_hold(session, placed.id, System("escrow"))
            return await ledger.void_hold(session, placed.id)

    done = await resolve(first)
    with pytest.raises(ledger.HoldAlreadyResolved) as conflict:
        await resolve(second)
    assert (conflict.value.status, conflict.value.code) == (409, "hold_already_resolved")
    assert conflict.value.details == {"hold_id": str(placed.id), "state": done.state}


@pytest.mark.parametrize(("amount", "fee", "code"), [
    (1_001, None, "amount_exceeds_hold"), (900, 101, "amount_exceeds_hold"), (0, None, "invalid_amount"),
    (-5, None, "invalid_amount"), (None, 1_000, "invalid_amount"),
])
async def test_a_post_beyond_the_hold_is_refused(sessions, funded, amount, fee, code):
    placed = await place_hold(sessions, funded, 1_000)
    async with sessions() as session:
        with pytest.raises(InvalidInput) as refused:
            await ledger.post_hold(session, placed.id, System("escrow"), amount, fee=fee)
    assert refused.value.code == code
    async with sessions() as session:
        assert (await ledger.get_hold(session, placed.id)).state == "pending"


async def test_a_hold_cannot_be_posted_back_to_its_owner(sessions, funded):
    placed = await place_hold(sessions, funded, 1_000)
    for destination in (User(funded), User(funded, ledger.HELD)):
        async with sessions() as session:
            with pytest.raises(InvalidInput, match="void it"):
                await ledger.post_hold(session, placed.id, destination)


async def test_an_unknown_hold_is_not_found(sessions):
    async with sessions() as session:
        with pytest.raises(NotFound) as missing:
            await ledger.void_hold(session, uuid.uuid4())
    assert missing.value.code == "hold_not_found"
