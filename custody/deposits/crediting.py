"""The custody worker's half of deposits: credit a confirmed deposit once, reverse a reorged credit.

Exactly once, whatever is delivered twice: each job locks the deposit row first, so a credit, a
reversal and the scanner's own updates of one deposit run one after the other; the state says
whether there is anything left to do; and the ledger posts each reference once (the reference of
a deposit's first credit is its unique chain key, ``deposit:{chain}:{tx_hash}:{log_index}``).

A credit is reversed only while its deposit is ``reorged``: a deposit found again in the new
chain before the worker got to it keeps the credit it has (it is on the chain again), and a
later orphaning sends another reversal.
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
from custody.deposits.models import REORGED, Deposit
from custody.deposits.states import WAITING, transition
from notifications.service import notify

log = logging.getLogger(__name__)

# The system account on the other side of every chain credit: its balance is minus what users
# have been credited from the chains (the platform's on-chain liability).
CHAIN_DEPOSITS = "chain_deposits"
# What users owe the platform: a reversed credit they had already spent.
RECEIVABLE = "receivable"


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


async def credit(session: AsyncSession, deposit_id: uuid.UUID) -> bool:
    """Credit the deposit to its owner's available balance if it is confirmed; True if it was credited now."""
    deposit = await locked(session, deposit_id)
    if deposit is None or deposit.state not in WAITING:
        return False  # credited already (a repeated message), or reorged since it was sent
    if deposit.confirmations < deposit.required_confirmations:
        log.warning("deposit %s: %d of %d confirmations, not crediting yet", deposit.id, deposit.confirmations,
                    deposit.required_confirmations)
        return False
    kept = deposit.credit_transfer_id is not None  # reorged, found again before its reversal ran
    if not kept:
        deposit.credits += 1
        posted = await ledger.move(
            session, reference=credit_reference(deposit), type="deposit",
            source=ledger.AccountRef.system(CHAIN_DEPOSITS), destination=ledger.AccountRef.user(deposit.user_id),
            currency=deposit.asset, amount=deposit.amount, reference_kind="deposit", reference_id=str(deposit.id),
            tx_hash=deposit.tx_hash,
        )
        deposit.credit_transfer_id = posted.id
    deposit.state = transition(deposit.state, "credit")
    deposit.credited_at = utcnow()
    await session.flush()
    view = await public_view(session, deposit)
    await audit.append(session, "deposit", deposit.id, "deposit.credited",
                       {**view, "transfer_id": str(deposit.credit_transfer_id), "credit": deposit.credits,
                        "kept_previous_credit": kept}, actor="custody")
    await notify(session, deposit.user_id, "deposit.credited", view)
    return True


async def reverse(session: AsyncSession, deposit_id: uuid.UUID) -> bool:
    """Take back the credit of a reorged deposit; True if a reversal was posted now.

    What the user no longer has available is taken from the ``receivable`` system account
    instead: the user then owes it, and their withdrawals are frozen until someone reviews it.
    """
    deposit = await locked(session, deposit_id)
    if deposit is None or deposit.state != REORGED or deposit.credit_transfer_id is None:
        return False
    available = next((balance.available for balance in await ledger.balances(session, deposit.user_id)
                      if balance.currency.code == deposit.asset), 0)
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
    await session.flush()
    unit = await ledger.currency(session, deposit.asset)
    view = await public_view(session, deposit)
    await audit.append(session, "deposit", deposit.id, "deposit.reversed",
                       {**view, "reversed_transfer_id": str(reversed_transfer), "transfer_id": str(posted.id),
                        "taken": unit.format(taken), "shortfall": unit.format(shortfall)}, actor="custody")
    await notify(session, deposit.user_id, "deposit.reversed", view)
    if shortfall:
        owed = f"{unit.format(shortfall)} {deposit.asset}"
        await freezes.freeze(session, deposit.user_id,
                             f"deposit {deposit.id} ({deposit.chain} {deposit.tx_hash}) reorged after its credit; "
                             f"{owed} already spent is owed (receivable)", actor="custody")
        # An alert, not just a log line: money left the platform on a payment that no longer exists.
        log.error("ALERT deposit %s reversed with a shortfall of %s: user %s frozen pending review", deposit.id, owed,
                  deposit.user_id, extra={"alert": "deposit_reversal_shortfall", "deposit_id": str(deposit.id),
                                          "user_id": str(deposit.user_id), "shortfall": owed})
    return True
