"""Compliance tables shared by the sub-domains: prices (migration 0011).

Nothing here is deleted (the migration refuses DELETE on each table): a decision, a price used in
a report or a list entry must still be there when a regulator asks, years later.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Numeric, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin

PRICE = Numeric(38, 18)


class Price(IdMixin, Base):
    """One unit of ``base`` is worth ``price`` of ``quote`` from ``as_of`` on (operator-maintained).

    A conversion uses the latest price at or before the moment converted, and records which.
    """

    __tablename__ = "prices"
    __table_args__ = (UniqueConstraint("base", "quote", "as_of", name="uq_prices_base_quote_as_of"),)

    base: Mapped[str] = mapped_column(String(10))
    quote: Mapped[str] = mapped_column(String(10))
    price: Mapped[Decimal] = mapped_column(PRICE)
    as_of: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
