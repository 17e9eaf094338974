"""Internal movements: transfers from the platform's own addresses to its deposit addresses (gas top-ups,
internal moves), as the scanner saw them — the treasury's view of where funds sit, never a deposit.

The scanner (``scanner.follower``) sorts what reaches a deposit address with
``custody.deposits.senders.split`` and records the internal part here, in the same transaction as
the deposits and the cursor of those blocks; a reorg forgets the movements above the common
ancestor, and the new chain's blocks record them again. No ledger entry follows from a movement:
customer balances never move, and the gas is booked by the sweep that paid it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from custody.deposits.models import NATIVE_LOG_INDEX
from custody.deposits.tracking import Observed
from custody.treasury.models import InternalMovement


async def record(session: AsyncSession, movements: Sequence[Observed]) -> None:
    """Record each movement once per chain event (a transaction mined again elsewhere moves its row)."""
    if not movements:
        return
    rows = [{"chain": item.chain, "tx_hash": item.tx_hash, "block_number": item.block_number,
             "block_hash": item.block_hash, "from_address": item.from_address or "", "to_address": item.to_address,
             "asset": item.asset, "amount": item.amount,
             "tx_log_index": NATIVE_LOG_INDEX if item.log_index == NATIVE_LOG_INDEX else (
                 item.tx_log_index if item.tx_log_index is not None else item.log_index)}
            for item in movements]
    statement = insert(InternalMovement).values(rows)
    await session.execute(statement.on_conflict_do_update(
        constraint="uq_treasury_movements_event",
        set_={"block_number": statement.excluded.block_number, "block_hash": statement.excluded.block_hash}))


async def forget_above(session: AsyncSession, chain: str, height: int) -> None:
    """A reorg replaced the blocks above ``height``: what they moved is read again from the new chain."""
    await session.execute(delete(InternalMovement).where(InternalMovement.chain == chain,
                                                         InternalMovement.block_number > height))


async def of_address(session: AsyncSession, chain: str, address: str) -> list[InternalMovement]:
    """The movements into ``address``, oldest first."""
    return list(await session.scalars(select(InternalMovement).where(
        InternalMovement.chain == chain, InternalMovement.to_address == address).order_by(
        InternalMovement.block_number, InternalMovement.tx_log_index)))
