"""The chain's assigned deposit addresses, in memory: a dictionary look-up per transfer.

Looking addresses up in the database for every batch of blocks costs a connection and three
round trips per batch; the book costs one indexed query per step, for the addresses assigned
since the previous one. An address is assigned once and for good, so nothing ever leaves it.

An allocation stamps ``assigned_at`` with the database's clock (its transaction's start), the
clock this book compares with: no host's clock comes into it. The stamp is a moment before its
transaction commits: each refresh reads again everything assigned in the last ``margin`` before
the previous one (far longer than any allocation transaction), so an address committed late is
never missed. A payment cannot
precede its address's assignment by design: the user learns the address only after the commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from custody.addresses.models import DepositAddress

MARGIN = timedelta(minutes=5)


class AddressBook:
    def __init__(self, chain: str, margin: timedelta = MARGIN) -> None:
        self.chain = chain
        self.margin = margin
        self.owners: dict[str, uuid.UUID] = {}
        self._since: datetime | None = None

    async def refresh(self, session: AsyncSession) -> int:
        """Read the addresses assigned since the last refresh; how many the book holds."""
        now = await session.scalar(select(func.now()))
        query = select(DepositAddress.address, DepositAddress.user_id).where(
            DepositAddress.chain == self.chain, DepositAddress.user_id.is_not(None))
        if self._since is not None:
            query = query.where(DepositAddress.assigned_at >= self._since - self.margin)
        for address, user_id in await session.execute(query):
            self.owners[address] = user_id
        self._since = now
        return len(self.owners)
