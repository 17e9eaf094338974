"""Reading deposits (a user's own, newest first) and how far each chain's scanner has got."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from core.pagination import keyset_before, next_page
from custody import ledger
from custody.deposits.models import Deposit, ScannerCursor
from custody.deposits.states import LIVE

MAX_PAGE = 100


@dataclass(frozen=True)
class ScannerPosition:
    chain: str
    height: int | None  # the last block processed; None before the first
    head: int | None  # the node's head when the scanner last asked
    progressed_at: datetime
    checked_at: datetime

    @property
    def lag(self) -> int | None:
        """Blocks behind the head the scanner last saw (the API computes it against a fresh head too)."""
        return None if self.height is None or self.head is None else max(0, self.head - self.height)


async def scanner_positions(session: AsyncSession) -> dict[str, ScannerPosition]:
    rows = await session.scalars(select(ScannerCursor))
    return {row.chain: ScannerPosition(row.chain, row.height if row.height >= 0 else None, row.head,
                                       row.progressed_at, row.checked_at) for row in rows}


@dataclass(frozen=True)
class DepositItem:
    deposit: Deposit
    currency: ledger.CurrencyInfo
    confirmations: int  # as of the scanner's latest block, for deposits still on the chain


@dataclass(frozen=True)
class DepositPage:
    items: list[DepositItem]
    next_cursor: str | None


async def deposits_of(session: AsyncSession, user_id: uuid.UUID, *, limit: int = 50,
                      cursor: str | None = None) -> DepositPage:
    """The user's deposits, newest first; keyset pages on (created_at, id)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}.", code="invalid_limit")
    query = (select(Deposit).where(Deposit.user_id == user_id)
             .order_by(Deposit.created_at.desc(), Deposit.id.desc()).limit(limit + 1))
    if cursor:
        query = query.where(keyset_before(cursor, Deposit.created_at, Deposit.id))
    rows, next_cursor = next_page(list(await session.scalars(query)), limit)
    units = await ledger.currencies(session, {row.asset for row in rows})
    heights = await _heights(session)
    return DepositPage([DepositItem(row, units[row.asset], _confirmations(row, heights)) for row in rows], next_cursor)


async def deposit_item(session: AsyncSession, deposit_id: uuid.UUID) -> DepositItem | None:
    """One deposit as its owner's list shows it (what a webhook about it carries); None if there is none."""
    row = await session.get(Deposit, deposit_id)
    if row is None:
        return None
    return DepositItem(row, await ledger.currency(session, row.asset), _confirmations(row, await _heights(session)))


async def _heights(session: AsyncSession) -> dict[str, int | None]:
    return {chain: position.height for chain, position in (await scanner_positions(session)).items()}


def _confirmations(row: Deposit, heights: dict[str, int | None]) -> int:
    """Counted up to the scanner's latest block: the stored count moves only when the scanner confirms."""
    height = heights.get(row.chain)
    if row.state in LIVE and height is not None and height >= row.block_number:
        return max(row.confirmations, height - row.block_number + 1)
    return row.confirmations
