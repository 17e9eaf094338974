"""Races against real PostgreSQL: each contender has its own session, hence its own connection."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import func, select

from core.db import unit_of_work
from core.errors import InsufficientFunds
from custody import ledger
from custody.ledger.models import LedgerAccount, LedgerTransfer
from tests.integration.custody.ledger.conftest import balance_of

User = ledger.AccountRef.user
System = ledger.AccountRef.system


async def test_twenty_concurrent_holds_with_funds_for_ten_let_exactly_ten_through(sessions, make_user_id, fund):
    buyer = await make_user_id()
    await fund(buyer, "USD", 10 * 700)

    async def one_hold(n):
        async with unit_of_work(sessions) as session:
            return await ledger.hold(session, f"race:{buyer}:{n}", buyer, "USD", 700)

    results = await asyncio.gather(*(one_hold(n) for n in range(20)), return_exceptions=True)
    placed = [r for r in results if isinstance(r, ledger.Hold)]
    refused = [r for r in results if isinstance(r, InsufficientFunds)]
    assert (len(placed), len(refused)) == (10, 10), results
    assert await balance_of(sessions, buyer, "USD") == (0, 7_000)


async def test_a_concurrent_post_and_void_of_one_hold_let_exactly_one_win(sessions, make_user_id, fund):
    for _ in range(5):
        buyer = await make_user_id()
        await fund(buyer, "USD", 1_000)
        async with unit_of_work(sessions) as session:
            placed = await ledger.hold(session, f"escrow:{uuid.uuid4()}", buyer, "USD", 1_000)

        async def post():
            async with unit_of_work(sessions) as session:
                return await ledger.post_hold(session, placed.id, System("escrow"))

        async def void():
            async with unit_of_work(sessions) as session:
                return await ledger.void_hold(session, placed.id)

        results = await asyncio.gather(post(), void(), return_exceptions=True)
        winners = [r for r in results if isinstance(r, ledger.Hold)]
        losers = [r for r in results if isinstance(r, ledger.HoldAlreadyResolved)]
        assert (len(winners), len(losers)) == (1, 1), results
        expected = (1_000, 0) if winners[0].state == "voided" else (0, 0)
        assert await balance_of(sessions, buyer, "USD") == expected
        async with sessions() as session:
            assert (await ledger.get_hold(session, placed.id)).state == winners[0].state


async def test_first_transfers_to_a_brand_new_account_create_it_once_without_deadlock(sessions, make_user_id):
    newcomer = await make_user_id()

    async def credit(n):
        # Different system sources: the only contended row is the account that does not exist yet.
        async with unit_of_work(sessions) as session:
            return await ledger.move(session, reference=f"first:{newcomer}:{n}", type="deposit",
                                     source=System(f"race_source_{n}"), destination=User(newcomer), currency="USDC",
                                     amount=1_000_000)

    await asyncio.wait_for(asyncio.gather(*(credit(n) for n in range(10))), timeout=30)
    async with sessions() as session:
        accounts = await session.scalar(select(func.count()).select_from(LedgerAccount)
                                        .where(LedgerAccount.user_id == newcomer))
    assert accounts == 1
    assert await balance_of(sessions, newcomer, "USDC") == (10_000_000, 0)


async def test_one_reference_posted_concurrently_posts_once(sessions, make_user_id, fund):
    sender, receiver = await make_user_id(), await make_user_id()
    await fund(sender, "ETH", 10**18)
    reference = f"deposit:{uuid.uuid4()}"

    async def deliver():
        async with unit_of_work(sessions) as session:
            return await ledger.move(session, reference=reference, type="p2p", source=User(sender),
                                     destination=User(receiver), currency="ETH", amount=4 * 10**17)

    results = await asyncio.gather(*(deliver() for _ in range(8)))
    assert len({r.id for r in results}) == 1
    assert sorted(r.replayed for r in results) == [False] + [True] * 7
    assert await balance_of(sessions, receiver, "ETH") == (4 * 10**17, 0)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(LedgerTransfer.reference == reference)) == 1


async def test_crossing_transfers_between_two_users_never_deadlock(sessions, make_user_id, fund):
    alice, bob = await make_user_id(), await make_user_id()
    await fund(alice, "USD", 100_000)
    await fund(bob, "USD", 100_000)

    async def pay(source, destination, n):
        async with unit_of_work(sessions) as session:
            # Two accounts each: without a fixed lock order, A→B and B→A deadlock.
            return await ledger.transfer(session, reference=f"cross:{uuid.uuid4()}", type="p2p", legs=[
                ledger.Leg(User(source), "USD", -100), ledger.Leg(User(destination), "USD", 100 - n % 3),
                ledger.Leg(System("fees"), "USD", n % 3)])

    jobs = [pay(alice, bob, n) if n % 2 else pay(bob, alice, n) for n in range(40)]
    await asyncio.wait_for(asyncio.gather(*jobs), timeout=60)
    (a, _), (b, _) = await balance_of(sessions, alice, "USD"), await balance_of(sessions, bob, "USD")
    fees = sum(n % 3 for n in range(40))
    assert a + b == 200_000 - fees


async def test_settlements_and_transfers_creating_the_same_new_accounts_never_deadlock(sessions, make_user_id, fund):
    # Posts (legs derived in the database) and transfers (legs from the service) both create the
    # two brand-new system accounts: they must agree on the order in which they create them.
    tag = uuid.uuid4().hex[:8]
    destination, fees = System(f"race_{tag}_a"), System(f"race_{tag}_b")
    holds = []
    for n in range(8):
        buyer = await make_user_id()
        await fund(buyer, "USD", 1_000)
        async with unit_of_work(sessions) as session:
            holds.append(await ledger.hold(session, f"race:{tag}:hold:{n}", buyer, "USD", 1_000))

    async def settle(placed):
        async with unit_of_work(sessions) as session:
            return await ledger.post_hold(session, placed.id, destination, 900, fee=100, fee_account=fees)

    async def credit(n):
        async with unit_of_work(sessions) as session:
            return await ledger.transfer(session, reference=f"race:{tag}:credit:{n}", type="p2p", legs=[
                ledger.Leg(System(f"race_{tag}_source"), "USD", -300), ledger.Leg(fees, "USD", 100),
                ledger.Leg(destination, "USD", 200)])

    results = await asyncio.gather(*(settle(placed) for placed in holds), *(credit(n) for n in range(8)))
    assert [held.state for held in results[:8]] == ["posted"] * 8
    async with sessions() as session:
        balances = dict((await session.execute(
            select(LedgerAccount.kind, LedgerAccount.balance)
            .where(LedgerAccount.owner_type == "system", LedgerAccount.kind.in_([destination.kind, fees.kind]))
        )).all())
    assert balances == {destination.kind: 8 * 900 + 8 * 200, fees.kind: 8 * 100 + 8 * 100}
