"""`custody.books`: the books against the tables they settle, against an adversary who edits rows.

A clean history, made by the real services (credits, a reversal with a shortfall, withdrawals
settled every way), gives no finding; each invariant broken in turn by a raw SQL update gives its
named finding about that row. Every corruption happens in a transaction that is rolled back, and
the rows are in a currency of this test's own: the worker's shared database holds other tests'
deliberately partial rows, so only findings about this test's ids and currency are looked at.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory, unit_of_work
from core.time import utcnow
from custody import ledger
from custody.books import Finding, verify_books
from custody.deposits import crediting
from custody.deposits.models import CONFIRMING, Deposit
from custody.deposits.states import transition
from tests.factories import make_user, make_withdrawal

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[Sessions]:
    engine = create_engine(database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def currency(sessions: Sessions) -> str:
    """A token of this test's own: the system accounts of the chain-wide checks are per currency."""
    code = "T" + secrets.token_hex(4).upper()
    async with unit_of_work(sessions) as session:
        await session.execute(text("INSERT INTO currencies (code, decimals, kind) VALUES (:code, 6, 'token')"),
                              {"code": code})
    return code


async def credited_deposit(sessions: Sessions, user_id: uuid.UUID, currency: str, amount: int) -> uuid.UUID:
    """A confirmed deposit credited by the deposits worker's own code."""
    deposit = Deposit(chain="books", tx_hash="0x" + secrets.token_hex(32), log_index=-1, block_number=1,
                      block_hash="0x" + secrets.token_hex(32), from_address=None,
                      to_address="0x" + secrets.token_hex(20), user_id=user_id, asset=currency, amount=amount,
                      state=CONFIRMING, confirmations=1, required_confirmations=1, source="scanner")
    async with unit_of_work(sessions) as session:
        session.add(deposit)
    async with unit_of_work(sessions) as session:
        assert await crediting.credit(session, deposit.id)
    return deposit.id


async def undo(sessions: Sessions, deposit_id: uuid.UUID, action: str, *, reverse: bool) -> None:
    """What the scanner does to a deposit whose block left the chain (``orphan``) or whose key the
    chain now shows with other content (``supersede``), then (``reverse``) what the worker does."""
    async with unit_of_work(sessions) as session:
        deposit = await crediting.locked(session, deposit_id)
        assert deposit is not None and deposit.credit_transfer_id is not None
        deposit.state = transition(deposit.state, action)
        deposit.reversal_requested_at = utcnow()
    if reverse:
        async with unit_of_work(sessions) as session:
            assert await crediting.reverse(session, deposit_id)


async def spend(sessions: Sessions, user_id: uuid.UUID, currency: str, amount: int) -> None:
    async with unit_of_work(sessions) as session:
        await ledger.move(session, reference=f"books:{uuid.uuid4()}", type="test_spend",
                          source=ledger.AccountRef.user(user_id), destination=ledger.AccountRef.system("test_spent"),
                          currency=currency, amount=amount)


@dataclass
class History:
    currency: str
    credited: uuid.UUID  # a deposit credited once
    reversed: uuid.UUID  # credited, reorged, reversed with a shortfall (the user had spent part)
    awaiting_reversal: uuid.UUID  # credited and reorged; the reversal has not run yet
    recredited: uuid.UUID  # reversed with a shortfall, mined again: its new credit paid the receivable first
    orphaned: uuid.UUID  # credited, then its key found with other content: reversed
    orphaned_awaiting: uuid.UUID  # credited and orphaned; the reversal has not run yet
    seen: uuid.UUID  # not confirmed yet: nothing posted
    active: uuid.UUID  # withdrawals by state...
    confirmed: uuid.UUID
    reverted: uuid.UUID  # mined but reverted, with a fee
    reverted_free: uuid.UUID  # mined but reverted, no fee
    refused: uuid.UUID
    rolled_back: uuid.UUID

    def ids(self) -> set[str]:
        return {str(value) for value in vars(self).values()}


async def history(sessions: Sessions, currency: str) -> History:
    depositor = await make_user(sessions, tag="books")
    spender = await make_user(sessions, tag="books")
    respender = await make_user(sessions, tag="books")
    withdrawer = await make_user(sessions, tag="books")

    credited = await credited_deposit(sessions, depositor, currency, 1_000)
    reversed_ = await credited_deposit(sessions, spender, currency, 500)
    await spend(sessions, spender, currency, 300)  # before the reorg
    await undo(sessions, reversed_, "orphan", reverse=True)
    recredited = await credited_deposit(sessions, respender, currency, 200)
    await spend(sessions, respender, currency, 150)
    await undo(sessions, recredited, "orphan", reverse=True)
    async with unit_of_work(sessions) as session:  # the transaction is mined again in the new chain
        deposit = await crediting.locked(session, recredited)
        assert deposit is not None
        deposit.state = transition(deposit.state, "reappear")
    async with unit_of_work(sessions) as session:
        assert await crediting.credit(session, recredited)
    awaiting = await credited_deposit(sessions, depositor, currency, 70)
    await undo(sessions, awaiting, "orphan", reverse=False)
    orphaned = await credited_deposit(sessions, depositor, currency, 40)
    await undo(sessions, orphaned, "supersede", reverse=True)
    orphaned_awaiting = await credited_deposit(sessions, depositor, currency, 30)
    await undo(sessions, orphaned_awaiting, "supersede", reverse=False)
    seen = Deposit(chain="books", tx_hash="0x" + secrets.token_hex(32), log_index=-1, block_number=1,
                   block_hash="0x" + secrets.token_hex(32), to_address="0x" + secrets.token_hex(20),
                   user_id=depositor, asset=currency, amount=9, state="seen", confirmations=0,
                   required_confirmations=3, source="scanner")
    async with unit_of_work(sessions) as session:
        session.add(seen)

    # The withdrawer's money comes from the chain too, so the chain-wide sums stay exact.
    await credited_deposit(sessions, withdrawer, currency, 100_000)

    async def withdrawal(state: str, fee: int, resolve: str | None, **columns: object) -> uuid.UUID:
        made = await make_withdrawal(sessions, withdrawer, "books", amount=1_000, fee=fee, asset=currency,
                                     state=state, **columns)
        async with unit_of_work(sessions) as session:
            if resolve == "post":  # as the custody worker settles a confirmed payment
                await ledger.post_hold(session, made.hold_id, ledger.AccountRef.system("chain_withdrawals"),
                                       made.amount, fee=fee, fee_account=ledger.AccountRef.system(ledger.FEES))
            elif resolve == "fee":  # a mined revert: the fee pays for the gas, the amount goes back
                await ledger.post_hold(session, made.hold_id, ledger.AccountRef.system(ledger.FEES), fee)
            elif resolve == "void":
                await ledger.void_hold(session, made.hold_id)
        return made.id

    return History(
        currency=currency, credited=credited, reversed=reversed_, awaiting_reversal=awaiting, recredited=recredited,
        orphaned=orphaned,
        orphaned_awaiting=orphaned_awaiting, seen=seen.id,
        active=await withdrawal("broadcast", 10, None),
        confirmed=await withdrawal("confirmed", 10, "post"),
        reverted=await withdrawal("failed", 10, "fee", failure_reason="reverted"),
        reverted_free=await withdrawal("failed", 0, "void", failure_reason="reverted"),
        refused=await withdrawal("failed", 10, "void", failure_reason="policy_violation"),
        rolled_back=await withdrawal("rolled_back", 10, "void"),
    )


def about(findings: list[Finding], made: History) -> list[Finding]:
    return [finding for finding in findings if made.ids() & set(finding.ids.values())]


async def findings_after(sessions: Sessions, made: History, corruption: str) -> list[Finding]:
    """The findings about ``made`` with ``corruption`` applied, in a transaction that is rolled back."""
    async with sessions() as session:
        await session.execute(text(corruption), {"currency": made.currency})
        try:
            return about(await verify_books(session), made)
        finally:
            await session.rollback()


async def test_verify_finds_cross_table_drift(sessions, currency) -> None:
    made = await history(sessions, currency)
    async with sessions() as session:
        assert about(await verify_books(session), made) == []

    # (what an adversary or a bad manual fix does, the finding expected, about which row)
    corruptions = [
        # A withdrawal whose hold is not its own amount and fee: the hold settles the wrong sum.
        (f"UPDATE withdrawals SET amount = amount + 1 WHERE id = '{made.active}'",
         "withdrawal_hold_mismatch", made.active),
        # Active again, after its hold was posted: the money left, yet it may be paid a second time.
        (f"UPDATE withdrawals SET state = 'approved' WHERE id = '{made.confirmed}'",
         "withdrawal_active_hold_not_pending", made.confirmed),
        # Confirmed without its hold posted: the customer keeps the money that left.
        (f"UPDATE withdrawals SET state = 'confirmed' WHERE id = '{made.active}'",
         "withdrawal_confirmed_hold_not_posted", made.active),
        # Called a mined revert, but the fee was not taken (and the gas went unpaid).
        (f"UPDATE withdrawals SET failure_reason = 'reverted' WHERE id = '{made.refused}'",
         "withdrawal_revert_hold_not_fee_posted", made.refused),
        # Failed before any transaction, yet its hold was posted: a fee for nothing.
        (f"UPDATE withdrawals SET failure_reason = 'policy_violation' WHERE id = '{made.reverted}'",
         "withdrawal_hold_not_voided", made.reverted),
        (f"UPDATE withdrawals SET state = 'rolled_back', failure_reason = NULL WHERE id = '{made.confirmed}'",
         "withdrawal_hold_not_voided", made.confirmed),
        # A reorged deposit that forgot its credit: the reversal never runs, the money stays.
        (f"UPDATE deposits SET credit_transfer_id = NULL WHERE id = '{made.awaiting_reversal}'",
         "deposit_credits_unpaired", made.awaiting_reversal),
        # A reversed deposit pointed back at its reversed credit and marked credited.
        ((f"UPDATE deposits SET state = 'credited', credit_transfer_id = (SELECT id FROM ledger_transfers"
          f" WHERE reference_kind = 'deposit' AND reference_id = '{made.reversed}' AND type = 'deposit')"
          f" WHERE id = '{made.reversed}'"),
         "deposit_credit_not_in_force", made.reversed),
        # Someone else's credit claimed as this deposit's.
        ((f"UPDATE deposits SET credit_transfer_id = (SELECT credit_transfer_id FROM deposits"
          f" WHERE id = '{made.awaiting_reversal}') WHERE id = '{made.credited}'"),
         "deposit_credit_not_in_force", made.credited),
        # Orphaned (reorged) with its credit in force, and nothing on its way to reverse it.
        (f"UPDATE deposits SET state = 'orphaned', orphaned_at = now() WHERE id = '{made.credited}'",
         "deposit_orphaned_credit_in_force", made.credited),
        (f"UPDATE deposits SET reversal_requested_at = NULL WHERE id = '{made.orphaned_awaiting}'",
         "deposit_orphaned_credit_in_force", made.orphaned_awaiting),
        (f"UPDATE deposits SET reversal_requested_at = NULL WHERE id = '{made.awaiting_reversal}'",
         "deposit_reorged_credit_in_force", made.awaiting_reversal),
        # An orphaned deposit that forgot its credit: its reversal never runs, the money stays.
        (f"UPDATE deposits SET credit_transfer_id = NULL WHERE id = '{made.orphaned_awaiting}'",
         "deposit_credits_unpaired", made.orphaned_awaiting),
        # A deposit row inflated after its credit: the credit no longer moves its amount.
        (f"UPDATE deposits SET amount = amount * 10 WHERE id = '{made.credited}'",
         "deposit_credit_amount", made.credited),
        # Money from the chain that no deposit explains, and a receivable nobody owes.
        (("UPDATE ledger_accounts SET balance = balance - 1"
          " WHERE owner_type = 'system' AND kind = 'chain_deposits' AND currency = :currency"),
         "chain_deposits_mismatch", made.currency),
        (("UPDATE ledger_accounts SET balance = balance - 1"
          " WHERE owner_type = 'system' AND kind = 'receivable' AND currency = :currency"),
         "receivable_mismatch", made.currency),
        # A shortfall forgotten: the user no longer owes what the receivable still books.
        (f"UPDATE deposits SET receivable = 0 WHERE id = '{made.reversed}'", "receivable_mismatch", made.currency),
    ]
    for corruption, name, row in corruptions:
        found = await findings_after(sessions, made, corruption)
        assert [finding for finding in found if finding.name == name and str(row) in finding.ids.values()], \
            f"{name} about {row} not found after {corruption!r}: {found}"

    async with sessions() as session:
        assert about(await verify_books(session), made) == []
