"""The custody worker's credits and reversals against an adversary: money spent before a reorg, the
same transaction mined again, and a deposit key found again with other content.

The re-credit test runs the whole path (Anvil, the scanner loop, a real Dramatiq worker); the
others drive the scanner's recording contract (``tracking.record`` / ``orphan_above``) and the
worker's jobs (``crediting``) directly against real PostgreSQL, where a chain cannot easily be made
to show what they need (one transaction whose log changes content when it is mined again).
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import uuid

from sqlalchemy import select, update

from core.audit import as_dict, events_of
from core.db import unit_of_work
from custody import freezes, ledger
from custody.deposits import crediting, tracking
from custody.deposits.models import CREDITED, ORPHANED, REORGED, Deposit
from custody.deposits.projection import reduce_deposit, stored_deposit
from custody.deposits.tracking import Observed
from custody.ledger import verify_ledger
from custody.ledger.models import LedgerAccount, LedgerHold, LedgerPosting, LedgerTransfer
from custody.withdrawals.models import Withdrawal
from tests.factories import credit_user, make_user, make_withdrawal

USDC = 10**6
ETH = 10**18
ADDRESS = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
OTHER_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


# --- helpers --------------------------------------------------------------------------------------

def tx_hash() -> str:
    return "0x" + secrets.token_hex(32)


def block_hash() -> str:
    return "0x" + secrets.token_hex(32)


def observed(chain: str, user_id: uuid.UUID, tx: str, *, amount: int, block: int, log_index: int = 0,
             tx_log_index: int = 0, asset: str = "USDC", to_address: str = ADDRESS,
             hash_of_block: str | None = None) -> Observed:
    """A token transfer as the scanner reads it: ``log_index`` its place in the block,
    ``tx_log_index`` its place in its transaction."""
    return Observed(chain=chain, tx_hash=tx, log_index=log_index, block_number=block,
                    block_hash=hash_of_block or block_hash(), from_address=OTHER_ADDRESS, to_address=to_address,
                    user_id=user_id, asset=asset, amount=amount, tx_log_index=tx_log_index)


async def record(factory, *seen: Observed, height: int) -> list[tracking.Recorded]:
    async with unit_of_work(factory) as session:
        announcements = tracking.Announcements()
        results = await tracking.record(session, list(seen), announcements, required_confirmations=2,
                                        source="scanner", height=height)
        await announcements.write(session, actor="scanner")
    return results


async def reorg_above(factory, chain: str, above: int, through: int) -> None:
    async with unit_of_work(factory) as session:
        announcements = tracking.Announcements()
        await tracking.orphan_above(session, chain, above, through, announcements)
        await announcements.write(session, actor="scanner")


async def credit(factory, deposit_id: uuid.UUID) -> bool:
    async with unit_of_work(factory) as session:
        return await crediting.credit(session, deposit_id)


async def reverse(factory, deposit_id: uuid.UUID) -> bool:
    async with unit_of_work(factory) as session:
        return await crediting.reverse(session, deposit_id)


async def row(factory, deposit_id: uuid.UUID) -> Deposit:
    async with factory() as session:
        found = await session.get(Deposit, deposit_id)
        assert found is not None
        return found


async def rows_of_key(factory, chain: str, tx: str) -> list[Deposit]:
    async with factory() as session:
        return list(await session.scalars(select(Deposit).where(Deposit.chain == chain, Deposit.tx_hash == tx)
                                          .order_by(Deposit.revision)))


async def available(factory, user_id: uuid.UUID, asset: str) -> int:
    async with factory() as session:
        return next((balance.available for balance in await ledger.balances(session, user_id)
                     if balance.currency.code == asset), 0)


async def transfer(factory, reference: str) -> LedgerTransfer | None:
    async with factory() as session:
        return await session.scalar(select(LedgerTransfer).where(LedgerTransfer.reference == reference))


async def receivable_leg(factory, transfer_id: uuid.UUID) -> int:
    """What one transfer moved on the ``receivable`` system account (negative: the user owes more)."""
    async with factory() as session:
        return sum(await session.scalars(
            select(LedgerPosting.amount).join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
            .where(LedgerPosting.transfer_id == transfer_id, LedgerAccount.owner_type == "system",
                   LedgerAccount.kind == crediting.RECEIVABLE)))


async def event_types(factory, aggregate_type: str, aggregate_id: uuid.UUID) -> list[str]:
    async with factory() as session:
        return [event.type for event in await events_of(session, aggregate_type, aggregate_id)]


async def events(factory, aggregate_type: str, aggregate_id: uuid.UUID) -> list:
    async with factory() as session:
        return list(await events_of(session, aggregate_type, aggregate_id))


def chain_name() -> str:
    return f"crd{uuid.uuid4().hex[:8]}"


async def replays_without_drift(factory, deposit_id: uuid.UUID) -> bool:
    """The admin replay's view: the row folded from its audit events is the row stored."""
    async with factory() as session:
        trail = [as_dict(event) for event in await events_of(session, "deposit", deposit_id)]
        stored = await stored_deposit(session, str(deposit_id))
    folded = functools.reduce(reduce_deposit, trail, None)
    assert folded == stored, (folded, stored)
    return True


# --- a reorged deposit mined again ---------------------------------------------------------------

async def test_recredit_settles_receivable(deposits, wallet, custody_worker) -> None:
    """Credited 60, 50 spent, reorged away (10 taken back, 50 owed), then the same transaction mined
    again: the new credit settles the 50 owed first and only the 10 left reach the user."""
    await deposits.start_scanner()
    spender, address = await deposits.user_with_address()
    payee = await make_user(deposits.factory, tag="payee")
    sent = await asyncio.to_thread(wallet.send_usdc, address, 60 * USDC)

    async def in_state(state: str, **wanted) -> bool:
        rows = await deposits.deposits(spender)
        return (len(rows) == 1 and rows[0].state == state
                and all(getattr(rows[0], name) == value for name, value in wanted.items()))

    await deposits.wait_for(lambda: in_state(CREDITED), "the deposit credited")
    async with unit_of_work(deposits.factory) as session:
        await ledger.move(session, reference=f"spend:{spender}", type="test_spend",
                          source=ledger.AccountRef.user(spender), destination=ledger.AccountRef.user(payee),
                          currency="USDC", amount=50 * USDC)

    await asyncio.to_thread(wallet.reorg_from, sent.block_number)
    await deposits.wait_for(lambda: in_state(REORGED, credit_transfer_id=None, receivable=50 * USDC),
                            "the credit reversed with 50 owed")
    (reversed_row,) = await deposits.deposits(spender)
    reversal = await transfer(deposits.factory, f"{reversed_row.key}:reversal")
    assert reversal is not None and await receivable_leg(deposits.factory, reversal.id) == -50 * USDC
    assert await deposits.available(spender, "USDC") == 0
    async with deposits.factory() as session:
        assert await freezes.withdrawals_frozen(session, spender)

    await asyncio.to_thread(wallet.resend, sent.raw)  # the same transaction, mined again in the new chain
    await deposits.wait_for(lambda: in_state(CREDITED, receivable=0), "the deposit credited again")

    (credited,) = await deposits.deposits(spender)
    assert credited.id == reversed_row.id and credited.credits == 2
    recredit = await transfer(deposits.factory, f"{credited.key}:2")
    assert recredit is not None and recredit.id == credited.credit_transfer_id and recredit.type == "deposit"
    # The debt is paid out of the new credit, not left open beside it.
    settlement = await transfer(deposits.factory, f"{credited.key}:2:settles:r1")
    assert settlement is not None and settlement.type == crediting.RECEIVABLE_SETTLEMENT
    assert settlement.reference_id == str(credited.id)
    assert await receivable_leg(deposits.factory, settlement.id) == 50 * USDC
    assert await deposits.available(spender, "USDC") == 10 * USDC
    assert await deposits.available(payee, "USDC") == 50 * USDC
    trail = await events(deposits.factory, "deposit", credited.id)
    assert [event.type for event in trail] == ["deposit.seen", "deposit.credited", "deposit.reorged",
                                               "deposit.reversed", "deposit.revived", "deposit.credited"]
    assert trail[3].data["receivable"] == "50" and trail[3].data["shortfall"] == "50"
    assert trail[-1].data["settled"] == "50" and trail[-1].data["receivable"] == "0"
    assert trail[-1].data["settlements"] == [{"deposit_id": str(credited.id), "amount": "50",
                                              "transfer_id": str(settlement.id)}]
    assert await replays_without_drift(deposits.factory, credited.id)
    async with deposits.factory() as session:
        assert await verify_ledger(session) == []
        # Settling the debt closes the books, not the review: the freeze stays until someone lifts it.
        assert await freezes.withdrawals_frozen(session, spender)


# --- a reversal takes back what is still on its way out ------------------------------------------

async def test_reversal_voids_unsent_holds(factory) -> None:
    """Withdrawals not yet sent to the signer give their holds back before anything is booked as
    owed; one with its sign request out is past stopping, and only that part is owed."""
    chain = chain_name()
    user = await make_user(factory, tag="rev")
    tx = tx_hash()
    (seen,) = await record(factory, observed(chain, user, tx, amount=100 * USDC, block=10), height=12)
    assert await credit(factory, seen.deposit_id)

    unsent = {}
    for state in ("requested", "awaiting_travel_rule", "pending_approval", "approved"):
        unsent[state] = await make_withdrawal(factory, user, chain, amount=9 * USDC, fee=1 * USDC, asset="USDC",
                                              state=state)
    signing = await make_withdrawal(factory, user, chain, amount=40 * USDC, asset="USDC", state="signing")
    other_asset = await make_withdrawal(factory, await _funded_eth(factory, user), chain, amount=ETH // 10,
                                        asset="ETH", state="requested")
    assert await available(factory, user, "USDC") == 20 * USDC

    await reorg_above(factory, chain, 9, 12)
    assert await reverse(factory, seen.deposit_id)

    async with factory() as session:
        for state, made in unsent.items():
            withdrawal = await session.get(Withdrawal, made.id)
            assert withdrawal.state == "rolled_back", state
            assert withdrawal.failure_reason == "deposit_reversed" and withdrawal.finished_at is not None
            assert (await session.get(LedgerHold, made.hold_id)).state == "voided"
        assert (await session.get(Withdrawal, signing.id)).state == "signing"
        assert (await session.get(LedgerHold, signing.hold_id)).state == "pending"
        assert (await session.get(Withdrawal, other_asset.id)).state == "requested"
        assert await freezes.withdrawals_frozen(session, user)
        assert await verify_ledger(session) == []
    for state, made in unsent.items():
        trail = await events(factory, "withdrawal", made.id)
        assert trail[-1].type == "withdrawal.rolled_back", state
        assert trail[-1].data["reason"] == "deposit_reversed" and trail[-1].data["previous_state"] == state
        assert trail[-1].data["deposit_id"] == str(seen.deposit_id)

    # 20 available + 40 from the voided holds taken back; the 40 on their way to the signer are owed.
    assert await available(factory, user, "USDC") == 0
    reversed_row = await row(factory, seen.deposit_id)
    assert reversed_row.receivable == 40 * USDC
    reversal = await transfer(factory, f"{reversed_row.key}:reversal")
    assert await receivable_leg(factory, reversal.id) == -40 * USDC
    trail = await events(factory, "deposit", seen.deposit_id)
    assert trail[-1].type == "deposit.reversed"
    assert sorted(trail[-1].data["voided_withdrawals"]) == sorted(str(made.id) for made in unsent.values())
    assert trail[-1].data["shortfall"] == "40" and trail[-1].data["taken"] == "60"
    assert await replays_without_drift(factory, seen.deposit_id)


async def _funded_eth(factory, user: uuid.UUID) -> uuid.UUID:
    async with unit_of_work(factory) as session:
        await ledger.sandbox_credit(session, user, "ETH:1")
    return user


async def test_reversal_voids_only_the_holds_it_needs(factory) -> None:
    """Voiding stops as soon as the reversal is covered: no receivable, no freeze, and the
    older withdrawal goes on."""
    chain = chain_name()
    user = await make_user(factory, tag="rev")
    await credit_user(factory, user, "USDC", 20 * USDC)  # money of an earlier deposit
    (seen,) = await record(factory, observed(chain, user, tx_hash(), amount=50 * USDC, block=10), height=12)
    assert await credit(factory, seen.deposit_id)
    older = await make_withdrawal(factory, user, chain, amount=20 * USDC, asset="USDC", state="approved")
    newer = await make_withdrawal(factory, user, chain, amount=30 * USDC, asset="USDC", state="requested")
    assert await available(factory, user, "USDC") == 20 * USDC

    await reorg_above(factory, chain, 9, 12)
    assert await reverse(factory, seen.deposit_id)

    async with factory() as session:
        assert (await session.get(Withdrawal, newer.id)).state == "rolled_back"
        assert (await session.get(Withdrawal, older.id)).state == "approved"
        assert not await freezes.withdrawals_frozen(session, user)
    assert (await row(factory, seen.deposit_id)).receivable == 0
    assert await available(factory, user, "USDC") == 0


# --- one chain event, one identity ----------------------------------------------------------------

async def test_the_scanner_keys_a_token_deposit_on_its_log_index_within_its_transaction(
    deposits, wallet, custody_worker
) -> None:
    """Behind another transfer in its block, the deposit's log is not the block's first; it is its
    transaction's first, and that is its key and its credit's reference."""
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    await asyncio.to_thread(wallet.send_usdc, OTHER_ADDRESS, USDC, wait=False)
    sent = await asyncio.to_thread(wallet.send_usdc, address, 3 * USDC, wait=False)
    receipt = await asyncio.to_thread(wallet.w3.eth.wait_for_transaction_receipt, sent.tx_hash, 30, 0.05)

    async def credited() -> bool:
        rows = await deposits.deposits(user)
        return len(rows) == 1 and rows[0].state == CREDITED

    await deposits.wait_for(credited, "the deposit credited")
    (deposit,) = await deposits.deposits(user)
    assert deposit.log_index == receipt["logs"][0]["logIndex"]  # its place in the block, as the API shows it
    assert deposit.tx_log_index == 0 and deposit.revision == 1
    assert deposit.key == f"deposit:{deposits.chain.name}:{sent.tx_hash}:0"
    (posted,) = await deposits.transfers(deposit.key)
    assert posted.id == deposit.credit_transfer_id

async def test_reseen_deposit_key_with_other_content(factory) -> None:
    """The same (transaction, index of the log within it) found again after a reorg, now paying
    another amount at another place in its block: the old row is orphaned and its credit reversed,
    the new content is credited once under a reference carrying the revision."""
    chain = chain_name()
    user = await make_user(factory, tag="key")
    tx = tx_hash()
    (first,) = await record(factory, observed(chain, user, tx, amount=100 * USDC, block=10, log_index=3),
                            height=12)
    assert first.outcome == "new"
    assert await credit(factory, first.deposit_id)
    old = await row(factory, first.deposit_id)
    assert old.key == f"deposit:{chain}:{tx}:0" and old.tx_log_index == 0 and old.log_index == 3

    # The reorg; the transaction is mined again, its log now 7th in the block and paying 70.
    await reorg_above(factory, chain, 9, 12)
    (again,) = await record(factory, observed(chain, user, tx, amount=70 * USDC, block=11, log_index=6),
                            height=13)
    assert again.outcome == "new" and again.deposit_id != first.deposit_id
    old, new = await row(factory, first.deposit_id), await row(factory, again.deposit_id)
    assert old.state == ORPHANED and old.orphaned_at is not None
    assert new.revision == 2 and new.supersedes == old.id and new.amount == 70 * USDC
    assert (new.tx_log_index, new.log_index, new.block_number) == (0, 6, 11)
    assert new.key == f"deposit:{chain}:{tx}:0:r2"

    # The worker: the old credit is reversed (whichever job runs first), the new one credited once.
    assert await credit(factory, new.id)
    assert not await reverse(factory, old.id)  # the credit job reversed it already
    assert not await credit(factory, new.id)
    old, new = await row(factory, first.deposit_id), await row(factory, again.deposit_id)
    assert old.credit_transfer_id is None and old.reversed_at is not None and old.state == ORPHANED
    assert new.state == CREDITED
    assert (await transfer(factory, f"deposit:{chain}:{tx}:0:reversal")).type == "deposit_reversal"
    credited = await transfer(factory, f"deposit:{chain}:{tx}:0:r2")
    assert credited is not None and credited.id == new.credit_transfer_id
    assert await available(factory, user, "USDC") == 70 * USDC

    # Seen again as it is now: the same row. A live key never has two rows.
    (known,) = await record(factory, observed(chain, user, tx, amount=70 * USDC, block=11, log_index=6,
                                              hash_of_block=new.block_hash), height=14)
    assert known == tracking.Recorded(new.id, "known")
    assert [(item.revision, item.state) for item in await rows_of_key(factory, chain, tx)] == [
        (1, ORPHANED), (2, CREDITED)]

    assert (await event_types(factory, "deposit", old.id))[-2:] == ["deposit.orphaned", "deposit.reversed"]
    orphaned = (await events(factory, "deposit", old.id))[-2]
    assert orphaned.data["superseded_by"] == str(new.id) and orphaned.data["was"] == REORGED
    seen_new = (await events(factory, "deposit", new.id))[0]
    assert seen_new.type == "deposit.seen" and seen_new.data["supersedes"] == str(old.id)
    assert seen_new.data["revision"] == 2
    assert await replays_without_drift(factory, old.id) and await replays_without_drift(factory, new.id)
    async with factory() as session:
        assert await verify_ledger(session) == []


async def test_the_same_log_at_another_place_in_its_block_is_the_same_deposit(factory) -> None:
    """Its transaction mined again behind others: the log's index in the block changes, its index in
    the transaction does not; one deposit, moved, credited once."""
    chain = chain_name()
    user = await make_user(factory, tag="key")
    tx = tx_hash()
    (first,) = await record(factory, observed(chain, user, tx, amount=5 * USDC, block=10, log_index=0,
                                              tx_log_index=1), height=12)
    assert await credit(factory, first.deposit_id)
    await reorg_above(factory, chain, 9, 12)
    (again,) = await record(factory, observed(chain, user, tx, amount=5 * USDC, block=10, log_index=4,
                                              tx_log_index=1), height=12)
    assert again == tracking.Recorded(first.deposit_id, "revived")
    revived = await row(factory, first.deposit_id)
    assert (revived.log_index, revived.tx_log_index, revived.revision) == (4, 1, 1)
    assert not await reverse(factory, first.deposit_id)  # found again before the reversal ran: nothing to undo
    assert await credit(factory, first.deposit_id)  # keeps the credit in force
    assert await available(factory, user, "USDC") == 5 * USDC
    assert len(await rows_of_key(factory, chain, tx)) == 1


async def test_a_token_row_recorded_before_0023_is_still_matched_by_its_block_position(factory) -> None:
    """Migration 0023 cannot compute a recorded token row's index within its transaction: the row
    stays keyed (and referenced in the ledger) as before, and the scanner finds it by position."""
    chain = chain_name()
    user = await make_user(factory, tag="key")
    tx = tx_hash()
    seen = observed(chain, user, tx, amount=8 * USDC, block=10, log_index=2, tx_log_index=0)
    (first,) = await record(factory, seen, height=12)
    async with unit_of_work(factory) as session:  # as 0023 leaves a token row recorded before it
        await session.execute(update(Deposit).where(Deposit.id == first.deposit_id).values(tx_log_index=None))
    assert await credit(factory, first.deposit_id)
    legacy = await row(factory, first.deposit_id)
    assert legacy.key == f"deposit:{chain}:{tx}:2"  # the reference its credit was posted under

    (again,) = await record(factory, seen, height=13)
    assert again == tracking.Recorded(first.deposit_id, "known")
    assert len(await rows_of_key(factory, chain, tx)) == 1
    assert await available(factory, user, "USDC") == 8 * USDC


# One key recorded by eight at once, a hundred times over: the failure was seen every run here.
ROUNDS, KEYS, RECORDERS = 100, 1, 8


async def test_concurrent_recordings_of_the_same_new_deposits_never_fail(factory) -> None:
    """The scanner and ingests recording the same fresh keys at once: one row per key, each
    recording told the same deposits, none failing. PostgreSQL checks ON CONFLICT's arbiter
    before inserting, so two inserts of a key can both pass it; only the insert's own unique
    index entries catch the second, and on an index not named as arbiter that is an error."""
    chain = chain_name()
    user = await make_user(factory, tag="race")
    for _ in range(ROUNDS):
        seen = [observed(chain, user, tx_hash(), amount=USDC, block=5, log_index=index) for index in range(KEYS)]
        results = await asyncio.gather(*(record(factory, *seen, height=5) for _ in range(RECORDERS)),
                                       return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        assert not failures, failures[0]
        assert len({tuple(item.deposit_id for item in result) for result in results}) == 1
        async with factory() as session:
            keys = (await session.execute(select(Deposit.tx_hash).where(Deposit.chain == chain,
                                                                        Deposit.tx_hash.in_([s.tx_hash for s in seen])))).all()
        assert len(keys) == len(seen)



ROUNDS = 60
KEYS = 3
