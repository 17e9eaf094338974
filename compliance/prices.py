"""Converting amounts into a jurisdiction's reporting currency with the ``prices`` table.

Decimal throughout, never float; each conversion carries the price row it used (value, as_of,
source), so a report can show exactly how every figure was reached.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.models import Price
from core.errors import Conflict, InvalidInput

CENTS = Decimal("0.01")


class PriceMissing(InvalidInput):
    code, message = "price_missing", "No price converts this currency at this moment."


@dataclass(frozen=True)
class Conversion:
    amount: Decimal  # in the base currency, major units
    base: str
    value: Decimal  # in the quote currency, rounded to cents (half-even)
    quote: str
    price: Decimal
    price_id: uuid.UUID
    price_as_of: datetime
    price_source: str


def major(minor: int, decimals: int) -> Decimal:
    """Minor units (wei, cents) → an exact Decimal in major units."""
    return Decimal(minor).scaleb(-decimals)


def plain(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: ``3000``, ``0.685``."""
    return format(value.normalize(), "f")


async def price_at(session: AsyncSession, base: str, quote: str, moment: datetime) -> Price:
    """The latest price of ``base`` in ``quote`` at or before ``moment``."""
    found = await session.scalar(
        select(Price).where(Price.base == base, Price.quote == quote, Price.as_of <= moment)
        .order_by(Price.as_of.desc()).limit(1))
    if found is None:
        raise PriceMissing(details={"base": base, "quote": quote, "at": moment.isoformat()})
    return found


def convert_with(price: Price, amount: Decimal, base: str) -> Conversion:
    value = (amount * price.price).quantize(CENTS, rounding=ROUND_HALF_EVEN)
    return Conversion(amount, base, value, price.quote, price.price, price.id, price.as_of, price.source)


async def convert(session: AsyncSession, amount: Decimal, base: str, quote: str, moment: datetime) -> Conversion:
    return convert_with(await price_at(session, base, quote, moment), amount, base)


async def add_price(session: AsyncSession, base: str, quote: str, price: Decimal, as_of: datetime,
                    source: str) -> Price:
    """Record a price (operator); prices are never changed, a newer ``as_of`` supersedes."""
    if price <= 0:
        raise InvalidInput("A price is positive.", code="invalid_price")
    if as_of.tzinfo is None:
        raise InvalidInput("A price's as_of carries a time zone.", code="invalid_price")
    taken = await session.scalar(select(Price.id).where(Price.base == base, Price.quote == quote, Price.as_of == as_of))
    if taken is not None:  # prices are never replaced: a correction is a new row with a later as_of
        raise Conflict(f"A {base}/{quote} price as of {as_of.isoformat()} exists.", code="price_exists")
    row = Price(base=base, quote=quote, price=price, as_of=as_of, source=source)
    session.add(row)
    await session.flush()
    return row
