"""Deposit jobs: messages carry the deposit id, the row says the rest.

They run on the ``deposits`` queue, drained by `virtuoz worker deposits` alone: a custody queue
backed up with withdrawals never delays a credit, nor a reversal. A message sent to the custody
queue before this lane existed still runs there (every worker declares every actor), and the
scanner sends an unanswered request again, now to this queue.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from custody.deposits import crediting
from custody.deposits.tracking import CREDIT_DEPOSIT, REVERSE_DEPOSIT
from jobs.registry import job


@job(CREDIT_DEPOSIT, queue="deposits")
async def credit_deposit(session: AsyncSession, deposit_id: str) -> None:
    """Credit a confirmed deposit (the scanner or the ingest route sends this once it is confirmed)."""
    await crediting.credit(session, uuid.UUID(deposit_id))


@job(REVERSE_DEPOSIT, queue="deposits")
async def reverse_deposit(session: AsyncSession, deposit_id: str) -> None:
    """Reverse the credit of a deposit whose block was reorged away."""
    await crediting.reverse(session, uuid.UUID(deposit_id))
