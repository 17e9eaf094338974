"""Customer movements: each ledger transfer's net effect on each customer, converted into a quote
currency. The reports (``compliance.reporting``) and the automatic rules (``compliance.review``)
read the same movements."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance import prices
from core.money import format_amount
from custody.ledger.models import Currency, LedgerAccount, LedgerPosting, LedgerTransfer

# Ledger transfer type → the movement a regulator reads. Holds and voids move no money between
# parties; a deposit reversal undoes a deposit that then never counts as received.
MOVEMENTS = {"deposit": "deposit", "withdrawal_post": "withdrawal", "escrow_release": "escrow"}


@dataclass
class Movement:
    transfer_id: uuid.UUID
    reference: str
    ledger_type: str
    tx_hash: str | None
    created_at: datetime
    user_id: uuid.UUID
    currency: str
    amount: Decimal  # major units, positive
    direction: str  # in | out
    conversion: prices.Conversion | None = None
    amount_text: str = ""  # as the API writes it (fiat with its decimals, crypto without trailing zeros)


async def movements_between(session: AsyncSession, types: tuple[str, ...], start: datetime, end: datetime,
                     quote: str) -> list[Movement]:
    """Per transfer, the net of each customer's postings per currency, converted into ``quote``."""
    net = func.sum(LedgerPosting.amount)
    result = await session.execute(
        select(LedgerTransfer.id, LedgerTransfer.reference, LedgerTransfer.type, LedgerTransfer.tx_hash,
               LedgerTransfer.created_at, LedgerAccount.user_id, LedgerPosting.currency, Currency.decimals,
               Currency.kind, net.label("net"))
        .join(LedgerPosting, LedgerPosting.transfer_id == LedgerTransfer.id)
        .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
        .join(Currency, Currency.code == LedgerPosting.currency)
        .where(LedgerTransfer.type.in_(types), LedgerTransfer.created_at >= start, LedgerTransfer.created_at < end,
               LedgerAccount.owner_type == "user")
        .group_by(LedgerTransfer.id, LedgerAccount.user_id, LedgerPosting.currency, Currency.decimals, Currency.kind)
        .having(net != 0)
        .order_by(LedgerTransfer.created_at, LedgerTransfer.id, LedgerAccount.user_id))
    movements = []
    for row in result:
        minor = abs(int(row.net))
        amount = prices.major(minor, row.decimals)
        movement = Movement(row.id, row.reference, row.type, row.tx_hash, row.created_at, row.user_id, row.currency,
                            amount, "in" if row.net > 0 else "out",
                            amount_text=format_amount(minor, row.decimals, fixed=row.kind == "fiat"))
        movement.conversion = await prices.convert(session, amount, row.currency, quote, row.created_at)
        movements.append(movement)
    return movements
