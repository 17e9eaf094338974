"""Transaction reviews and the rules' cursors (migration 0011).

Nothing here is deleted (the migration refuses DELETE on each table): a decision, a price used in
a report or a list entry must still be there when a regulator asks, years later.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, TimestampMixin


class TransactionReview(TimestampMixin, Base):
    """A compliance review of one ledger transfer: ``flagged → cleared | reported``.

    The row is the current state; each flag and resolution is an audit event (aggregate
    ``transaction_review``), so a transfer flagged again after a resolution keeps its whole story.
    """

    __tablename__ = "transaction_reviews"
    __table_args__ = (Index("ix_transaction_reviews_state", "state"),)

    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transfers.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(10))  # flagged | cleared | reported
    reason: Mapped[str] = mapped_column(Text)
    flagged_by: Mapped[uuid.UUID | None]  # None: a rule flagged it
    flagged_at: Mapped[datetime]
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[uuid.UUID | None]
    resolved_at: Mapped[datetime | None]


class RuleCursor(Base):
    """How far the automatic rules have read the ledger: one row per sweep name."""

    __tablename__ = "compliance_rule_cursors"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_created_at: Mapped[datetime]
    last_transfer_id: Mapped[uuid.UUID]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
