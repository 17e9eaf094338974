"""Sanctions lists: addresses and names (migration 0011).

Nothing here is deleted (the migration refuses DELETE on each table): a decision, a price used in
a report or a list entry must still be there when a regulator asks, years later.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin


class SanctionedAddress(IdMixin, Base):
    """A listed crypto address; EVM addresses are stored lowercased (compared that way)."""

    __tablename__ = "sanctioned_addresses"
    __table_args__ = (UniqueConstraint("address", "source", name="uq_sanctioned_addresses_address_source"),)

    address: Mapped[str] = mapped_column(String(128), index=True)
    currency: Mapped[str | None] = mapped_column(String(20))
    entity_name: Mapped[str | None] = mapped_column(String(300))
    list_uid: Mapped[str | None] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(200))
    loaded_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SanctionedName(IdMixin, Base):
    """A listed name; ``name_key`` is the comparison form (case, accents, punctuation and order folded)."""

    __tablename__ = "sanctioned_names"
    __table_args__ = (UniqueConstraint("name_key", "source", name="uq_sanctioned_names_name_key_source"),)

    name: Mapped[str] = mapped_column(String(300))
    name_key: Mapped[str] = mapped_column(String(300), index=True)
    list_uid: Mapped[str | None] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(200))
    loaded_at: Mapped[datetime] = mapped_column(server_default=func.now())
