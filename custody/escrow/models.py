"""Escrow contracts and their dispute evidence."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, Money, TimestampMixin


class EscrowContract(IdMixin, TimestampMixin, Base):
    __tablename__ = "escrow_contracts"

    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(Money)  # minor units of `currency`
    currency: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(20), default="created")
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    # The seller may not have a verified account yet: the contract names their email and links to the
    # account that verifies it (custody.onboarding).
    seller_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    seller_email: Mapped[str | None] = mapped_column(String(320), index=True)
    hold_id: Mapped[uuid.UUID | None]
    fee: Mapped[int | None] = mapped_column(Money)
    dispute_reason: Mapped[str | None] = mapped_column(Text)
    disputed_by: Mapped[uuid.UUID | None]
    resolution: Mapped[str | None] = mapped_column(String(20))  # release | refund | split
    seller_amount: Mapped[int | None] = mapped_column(Money)


class EvidenceFile(IdMixin, Base):
    __tablename__ = "escrow_evidence"

    escrow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("escrow_contracts.id"), index=True)
    filename: Mapped[str] = mapped_column(String(120))  # display only; storage uses the id
    content_type: Mapped[str] = mapped_column(String(60))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(1000))
    uploaded_by: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]  # hidden from lists, kept for the audit trail
    deleted_by: Mapped[uuid.UUID | None]
