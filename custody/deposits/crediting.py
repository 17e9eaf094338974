"""The deposits worker's half of deposits: credit a confirmed deposit once, reverse a reorged credit.

Exactly once, whatever is delivered twice: each job locks the deposit row first, so a credit, a
reversal and the scanner's own updates of one deposit run one after the other; the state says
whether there is anything left to do; and the ledger posts each reference once (the reference of
a deposit's first credit is its unique chain key, ``deposit:{chain}:{tx_hash}:{tx_log_index}``,
``:r{revision}`` after the key's first content; a re-credit adds ``:{credit}``).

A credit is reversed only while its deposit is ``reorged`` or ``orphaned``: a deposit found again
in the new chain before the worker got to it keeps the credit it has (it is on the chain again),
and a later orphaning sends another reversal. A new revision of a chain event is credited only
after the earlier revisions' credits are reversed (in the same transaction, whichever job comes
first), so one chain event never has two credits in force.

Money spent before a reorg: the reversal first rolls back the owner's withdrawals of that asset not
yet sent to the signer; what is still missing is booked on ``receivable`` (owed by the user, who is
frozen). A later credit of the same chain event pays that back first (``receivable_settlement``
transfers, from the credited user to ``receivable``): only the rest stays available.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.time import utcnow
from custody import freezes, ledger
from custody.deposits.models import Deposit, ScannerCursor
from custody.deposits.states import UNDONE, WAITING, transition
from custody.withdrawals.unsent import roll_back_unsent
from notifications.service import notify

log = logging.getLogger(__name__)

# The system account on the other side of every chain credit: its balance is minus what users
# have been credited from the chains (the platform's on-chain liability).
CHAIN_DEPOSITS = "chain_deposits"
# What users owe the platform: a reversed credit they had already spent.
RECEIVABLE = "receivable"
# The transfer type of a receivable paid back out of a later credit of the same chain event.
RECEIVABLE_SETTLEMENT = "receivable_settlement"
# The ``failure_reason`` of a withdrawal rolled back to pay a reversal back.
DEPOSIT_REVERSED = "deposit_reversed"


def credit_reference(deposit: Deposit) -> str:
    """The ledger reference of the deposit's credit in force (or about to be posted)."""
    return deposit.key if deposit.credits <= 1 else f"{deposit.key}:{deposit.credits}"


async def locked(session: AsyncSession, deposit_id: uuid.UUID) -> Deposit | None:
    return await session.scalar(select(Deposit).where(Deposit.id == deposit_id).with_for_update())


async def public_view(session: AsyncSession, deposit: Deposit) -> dict[str, Any]:
    """What the user may see of a deposit (notifications carry it)."""
    unit = await ledger.currency(session, deposit.asset)
    return {"deposit_id": str(deposit.id), "chain": deposit.chain, "asset": deposit.asset,
            "amount": unit.format(deposit.amount), "tx_hash": deposit.tx_hash, "log_index": deposit.log_index,
            "block_number": deposit.block_number, "confirmations": deposit.confirmations,
            "required_confirmations": deposit.required_confirmations, "state": deposit.state}


async def _final(session: AsyncSession, deposit: Deposit) -> bool:
    """On a chain whose finality is "finalized", whether the deposit's block is at or below the node's
    finalized block as the scanner last checked it (scanner_cursors); always on the other chains."""
    cursor = await session.get(ScannerCursor, deposit.chain)
    if cursor is None or cursor.finality != "finalized":
        return True
    return cursor.finalized is not None and deposit.block_number <= cursor.finalized


async def credit(session: AsyncSession, deposit_id: uuid.UUID) -> bool:
    """Credit the deposit to its owner's available balance if it is confirmed; True if it was credited now."""
    deposit = await locked(session, deposit_id)
    if deposit is None or deposit.state not in WAITING:
        return False  # credited already (a repeated message), or reorged since it was sent
    if deposit.confirmations < deposit.required_confirmations:
        log.warning("deposit %s: %d of %d confirmations, not crediting yet", deposit.id, deposit.confirmations,
                    deposit.required_confirmations)
        return False
    if not await _final(session, deposit):
        # Not requested any more: the scanner requests it again once the node finalizes its block.
        deposit.credit_requested_at = None
        log.warning("deposit %s: block %d is above the chain's finalized block, not crediting yet", deposit.id,
                    deposit.block_number)
        return False
    # The key's earlier contents (orphaned revisions): never two credits in force for one chain event.
    earlier = await _earlier_revisions(session, deposit)
    for revision in earlier:
        if revision.credit_transfer_id is not None:
            await _reverse(session, revision)
    kept = deposit.credit_transfer_id is not None  # reorged, found again before its reversal ran
    settlements: list[tuple[Deposit, int, ledger.Transfer]] = []
    if not kept:
        deposit.credits += 1
        posted = await ledger.move(
            session, reference=credit_reference(deposit), type="deposit",
            source=ledger.AccountRef.system(CHAIN_DEPOSITS), destination=ledger.AccountRef.user(deposit.user_id),
            currency=deposit.asset, amount=deposit.amount, reference_kind="deposit", reference_id=str(deposit.id),
            tx_hash=deposit.tx_hash,
        )
        deposit.credit_transfer_id = posted.id
        # What this chain event's reversals left owed is paid first, out of this very credit:
        # crediting it in full again while the receivable stays open would mint what was spent.
        for row, part in _settle(deposit, [deposit, *earlier]):
            settlement = await ledger.move(
                session, reference=f"{credit_reference(deposit)}:settles:r{row.revision}", type=RECEIVABLE_SETTLEMENT,
                source=ledger.AccountRef.user(deposit.user_id), destination=ledger.AccountRef.system(RECEIVABLE),
                currency=deposit.asset, amount=part, reference_kind="deposit", reference_id=str(row.id),
                tx_hash=deposit.tx_hash)
            settlements.append((row, part, settlement))
    deposit.state = transition(deposit.state, "credit")
    deposit.credited_at = utcnow()
    await session.flush()
    unit = await ledger.currency(session, deposit.asset)
    view = await public_view(session, deposit)
    await audit.append(session, "deposit", deposit.id, "deposit.credited",
                       {**view, "transfer_id": str(deposit.credit_transfer_id), "credit": deposit.credits,
                        "kept_previous_credit": kept, "settled": unit.format(sum(part for _, part, _ in settlements)),
                        "receivable": unit.format(deposit.receivable),
                        "settlements": [{"deposit_id": str(row.id), "amount": unit.format(part),
                                         "transfer_id": str(settlement.id)} for row, part, settlement in settlements]},
                       actor="custody")
    for row, part, settlement in settlements:
        if row is not deposit:
            await audit.append(session, "deposit", row.id, "deposit.receivable_settled",
                               {"deposit_id": str(row.id), "settled": unit.format(part),
                                "receivable": unit.format(row.receivable), "by_deposit_id": str(deposit.id),
                                "transfer_id": str(settlement.id)}, actor="custody")
    if settlements:
        log.warning("deposit %s credited again: %s %s of it settles what its reversals left owed", deposit.id,
                    unit.format(sum(part for _, part, _ in settlements)), deposit.asset)
        # The user is told why less than the deposit became available.
        view["settled"] = unit.format(sum(part for _, part, _ in settlements))
    await notify(session, deposit.user_id, "deposit.credited", view)
    return True


async def _earlier_revisions(session: AsyncSession, deposit: Deposit) -> list[Deposit]:
    """The rows this one supersedes, newest first, locked (after this one: the same order everywhere)."""
    rows: list[Deposit] = []
    previous = deposit.supersedes
    while previous is not None:
        row = await locked(session, previous)
        assert row is not None  # a foreign key
        rows.append(row)
        previous = row.supersedes
    return rows


def _settle(deposit: Deposit, rows: list[Deposit]) -> list[tuple[Deposit, int]]:
    """Take what ``rows`` (this chain event's revisions) still have owed by the same user in the same
    asset out of the deposit's amount; (row, minor units) settled on each."""
    remaining, settled = deposit.amount, []
    for row in rows:
        if remaining and row.receivable and row.user_id == deposit.user_id and row.asset == deposit.asset:
            part = min(row.receivable, remaining)
            row.receivable -= part
            remaining -= part
            settled.append((row, part))
    return settled


async def reverse(session: AsyncSession, deposit_id: uuid.UUID) -> bool:
    """Take back the credit of a reorged (or orphaned) deposit; True if a reversal was posted now.

    When the user no longer has it all available, their withdrawals of the asset not yet sent to
    the signer are rolled back first (newest first, as many as needed; ``withdrawals.unsent``).
    What is still missing is taken from the ``receivable`` system account instead: the user then
    owes it (``Deposit.receivable``, settled first by a later credit of the same chain event), and
    their withdrawals are frozen until someone reviews it.
    """
    deposit = await locked(session, deposit_id)
    if deposit is None or deposit.state not in UNDONE or deposit.credit_transfer_id is None:
        return False
    await _reverse(session, deposit)
    return True


async def _available(session: AsyncSession, user_id: uuid.UUID, asset: str) -> int:
    return next((balance.available for balance in await ledger.balances(session, user_id)
                 if balance.currency.code == asset), 0)


async def _reverse(session: AsyncSession, deposit: Deposit) -> None:
    """Reverse the credit in force of ``deposit`` (locked)."""
    available = await _available(session, deposit.user_id, deposit.asset)
    voided = []
    if available < deposit.amount:
        voided = await roll_back_unsent(session, deposit.user_id, deposit.asset, deposit.amount - available,
                                        reason=DEPOSIT_REVERSED, data={"deposit_id": str(deposit.id)})
        if voided:
            available = await _available(session, deposit.user_id, deposit.asset)
    taken = min(available, deposit.amount)
    shortfall = deposit.amount - taken
    legs = [ledger.Leg(ledger.AccountRef.system(CHAIN_DEPOSITS), deposit.asset, deposit.amount)]
    if taken:
        legs.append(ledger.Leg(ledger.AccountRef.user(deposit.user_id), deposit.asset, -taken))
    if shortfall:
        legs.append(ledger.Leg(ledger.AccountRef.system(RECEIVABLE), deposit.asset, -shortfall))
    # If the user spends in between, the ledger refuses (InsufficientFunds) and the job retries.
    posted = await ledger.transfer(session, reference=f"{credit_reference(deposit)}:reversal", type="deposit_reversal",
                                   legs=legs, reference_kind="deposit", reference_id=str(deposit.id),
                                   tx_hash=deposit.tx_hash)
    reversed_transfer = deposit.credit_transfer_id
    deposit.credit_transfer_id = None
    deposit.reversed_at = utcnow()
    deposit.receivable += shortfall
    await session.flush()
    unit = await ledger.currency(session, deposit.asset)
    view = await public_view(session, deposit)
    await audit.append(session, "deposit", deposit.id, "deposit.reversed",
                       {**view, "reversed_transfer_id": str(reversed_transfer), "transfer_id": str(posted.id),
                        "taken": unit.format(taken), "shortfall": unit.format(shortfall),
                        "receivable": unit.format(deposit.receivable),
                        "voided_withdrawals": [str(withdrawal.id) for withdrawal in voided]}, actor="custody")
    await notify(session, deposit.user_id, "deposit.reversed", view)
    if shortfall:
        owed = f"{unit.format(shortfall)} {deposit.asset}"
        await freezes.freeze(session, deposit.user_id,
                             f"deposit {deposit.id} ({deposit.chain} {deposit.tx_hash}) {deposit.state} after its credit; "
                             f"{owed} already spent is owed (receivable)", actor="custody")
        # An alert, not just a log line: money left the platform on a payment that no longer exists.
        log.error("ALERT deposit %s reversed with a shortfall of %s: user %s frozen pending review", deposit.id, owed,
                  deposit.user_id, extra={"alert": "deposit_reversal_shortfall", "deposit_id": str(deposit.id),
                                          "user_id": str(deposit.user_id), "shortfall": owed})
