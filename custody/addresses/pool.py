"""The per-chain pool of derived, unassigned deposit addresses, refilled from the chain's xpub.

Deriving is the allocator's job (it holds the xpubs); the API only takes ready rows from the
pool, so a burst of sign-ups never waits on derivation and never needs key material.
"""

from __future__ import annotations

import logging

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import advisory_lock
from custody.addresses.models import DepositAddress
from custody.hd import MAX_INDEX, XpubError, deposit_address

log = logging.getLogger(__name__)


class XpubMismatch(XpubError):
    """The xpub no longer derives the addresses already stored: refilling would mix two seeds."""


async def lock_pool(session: AsyncSession, chain: str) -> None:
    # One refill per chain at a time: two would derive the same next indexes. Transaction-scoped,
    # so a crashed refill releases it with its rollback.
    await advisory_lock(session, f"deposit_pool:{chain}")


async def unassigned_count(session: AsyncSession, chain: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(DepositAddress)
        .where(DepositAddress.chain == chain, DepositAddress.user_id.is_(None))
    )
    return int(count or 0)


async def refill_pool(session: AsyncSession, chain: str, xpub: str, low_water: int, batch: int) -> int:
    """Derive and insert unassigned addresses until the pool holds more than ``low_water``.

    Adds whole batches of ``batch`` from the next unused index; returns how many were added
    (0 when the pool is already above the mark — so a redelivered message changes nothing).
    """
    await lock_pool(session, chain)
    unassigned = await unassigned_count(session, chain)
    if unassigned > low_water:
        return 0
    last = (await session.execute(
        select(DepositAddress.derivation_index, DepositAddress.address)
        .where(DepositAddress.chain == chain)
        .order_by(DepositAddress.derivation_index.desc())
        .limit(1)
    )).first()
    if last is not None and deposit_address(xpub, last.derivation_index) != last.address:
        raise XpubMismatch(
            f"{chain}: the xpub does not derive the stored address at index {last.derivation_index}; "
            "the xpub file belongs to another seed or account"
        )
    start = 0 if last is None else last.derivation_index + 1
    batches = -(-(low_water + 1 - unassigned) // batch)  # ceil
    count = batches * batch
    if start + count - 1 > MAX_INDEX:
        raise XpubError(f"{chain}: the account has no unhardened indexes left for {count} more addresses")
    rows = [{"chain": chain, "derivation_index": index, "address": deposit_address(xpub, index)}
            for index in range(start, start + count)]
    await session.execute(insert(DepositAddress), rows)
    log.info("deposit pool %s: derived indexes %d..%d (%d were unassigned)", chain, start, start + count - 1,
             unassigned, extra={"chain": chain})
    return count
