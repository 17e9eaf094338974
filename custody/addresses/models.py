"""Deposit address table: every derived address, unassigned (the pool) or assigned to one user.

The database holds the allocation rules even if the service had a bug (migration 0005): an index
is derived once per chain, an address appears once per chain, a user has at most one address
per chain (partial UNIQUE), and a row is assigned exactly when it has a user.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin


class DepositAddress(IdMixin, Base):
    __tablename__ = "deposit_addresses"
    __table_args__ = (
        UniqueConstraint("chain", "derivation_index", name="uq_deposit_addresses_chain_index"),
        UniqueConstraint("chain", "address", name="uq_deposit_addresses_chain_address"),
        Index("uq_deposit_addresses_user_chain", "user_id", "chain", unique=True,
              postgresql_where=text("user_id IS NOT NULL")),
        # The pool: what allocation takes from (lowest index first) and what the refill counts.
        Index("ix_deposit_addresses_pool", "chain", "derivation_index", postgresql_where=text("user_id IS NULL")),
        # Deposits (migration 0009): the scanner reads what was assigned since its last look.
        Index("ix_deposit_addresses_assigned", "chain", "assigned_at", postgresql_where=text("user_id IS NOT NULL")),
        CheckConstraint("derivation_index BETWEEN 0 AND 2147483647", name="index_not_hardened"),
        CheckConstraint("(user_id IS NULL) = (assigned_at IS NULL)", name="assigned_consistent"),
    )

    chain: Mapped[str] = mapped_column(String(40))
    # m/44'/60'/{account}'/0/{derivation_index}; the account is the chain's (settings, xpub file).
    derivation_index: Mapped[int] = mapped_column(Integer)
    address: Mapped[str] = mapped_column(String(42))  # EIP-55 checksummed
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
