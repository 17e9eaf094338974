"""Ledger tables: currencies, accounts, transfers, postings and holds.

The database enforces what must hold even if the service had a bug (migration 0003):
user balances never go negative (CHECK), a posting's currency is its account's (composite FK),
postings are never zero, every transfer balances per currency (a deferred constraint trigger,
checked at commit), transfers and postings are append-only (triggers), a business reference
posts once (UNIQUE), and a hold has at most one resolving transfer (partial UNIQUE).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    SmallInteger,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, Money

CURRENCY_KINDS = ("fiat", "native", "token")
USER_KINDS = ("available", "held")
HOLD_STATES = ("pending", "posted", "voided")


class Currency(Base):
    """A currency is data: its decimals fix the meaning of every stored amount, so they never change."""

    __tablename__ = "currencies"
    __table_args__ = (
        CheckConstraint("kind IN ('fiat', 'native', 'token')", name="kind_known"),
        CheckConstraint("decimals BETWEEN 0 AND 36", name="decimals_range"),
    )

    code: Mapped[str] = mapped_column(String(10), primary_key=True)
    decimals: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(10))
    chains: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default=text("'{}'"))


class LedgerAccount(IdMixin, Base):
    """One balance: a user's ``available`` or ``held`` money in a currency, or a named system
    account (``chain_deposits``, ``fees``…). System accounts are the other side of the books and
    may go negative; user accounts never do."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("owner_type IN ('user', 'system')", name="owner_type_known"),
        CheckConstraint("(owner_type = 'user') = (user_id IS NOT NULL)", name="owner_consistent"),
        CheckConstraint("owner_type <> 'user' OR kind IN ('available', 'held')", name="user_kind_known"),
        CheckConstraint("owner_type <> 'user' OR balance >= 0", name="user_balance_not_negative"),
        # The target of the postings' composite FK: a posting's currency is its account's.
        UniqueConstraint("id", "currency", name="uq_ledger_accounts_id_currency"),
        Index("uq_ledger_accounts_user", "user_id", "currency", "kind", unique=True,
              postgresql_where=text("owner_type = 'user'")),
        Index("uq_ledger_accounts_system", "kind", "currency", unique=True,
              postgresql_where=text("owner_type = 'system'")),
    )

    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    owner_type: Mapped[str] = mapped_column(String(10))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(60))  # available | held, or the system account's name
    balance: Mapped[int] = mapped_column(Money, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LedgerTransfer(IdMixin, Base):
    """A set of postings that sum to zero per currency, posted once per business ``reference``."""

    __tablename__ = "ledger_transfers"
    __table_args__ = (
        Index("ix_ledger_transfers_reference_object", "reference_kind", "reference_id"),
        # A hold is resolved (posted or voided) by at most one transfer besides the one that created it.
        Index("uq_ledger_transfers_hold_resolution", "hold_id", unique=True,
              postgresql_where=text("hold_id IS NOT NULL AND hold_id <> id")),
    )

    reference: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    reference_kind: Mapped[str | None] = mapped_column(String(40))
    reference_id: Mapped[str | None] = mapped_column(String(100))
    tx_hash: Mapped[str | None] = mapped_column(String(100))
    # The hold this transfer created (then hold_id = id) or resolved.
    hold_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ledger_holds.id", use_alter=True, deferrable=True, initially="DEFERRED")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LedgerPosting(IdMixin, Base):
    """One leg of a transfer: ``amount`` > 0 credits the account, < 0 debits it."""

    __tablename__ = "ledger_postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        ForeignKeyConstraint(["account_id", "currency"], ["ledger_accounts.id", "ledger_accounts.currency"],
                             name="fk_ledger_postings_account_currency"),
        UniqueConstraint("transfer_id", "account_id", name="uq_ledger_postings_transfer_account"),
        # Activity pages: newest first per account, keyset on (created_at, id).
        Index("ix_ledger_postings_account_created", "account_id", "created_at", "id"),
    )

    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transfers.id"))
    account_id: Mapped[uuid.UUID]
    currency: Mapped[str] = mapped_column(String(10))
    amount: Mapped[int] = mapped_column(Money)
    created_at: Mapped[datetime]  # the transfer's, copied so the activity index covers it


class LedgerHold(Base):
    """A two-phase transfer: money moved from a user's available to held, resolved exactly once."""

    __tablename__ = "ledger_holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("state IN ('pending', 'posted', 'voided')", name="state_known"),
        CheckConstraint("(state = 'pending') = (resolved_at IS NULL)", name="resolved_when_not_pending"),
        CheckConstraint(
            "state <> 'posted' OR (posted_amount > 0 AND fee >= 0 AND posted_amount + fee <= amount)",
            name="posted_within_amount",
        ),
        Index("ix_ledger_holds_user_state", "user_id", "state"),
    )

    # The id of the transfer that created the hold (TigerBeetle's pending transfer id).
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transfers.id"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[int] = mapped_column(Money)
    state: Mapped[str] = mapped_column(String(10), server_default=text("'pending'"))
    posted_amount: Mapped[int | None] = mapped_column(Money)
    fee: Mapped[int | None] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    resolved_at: Mapped[datetime | None]
