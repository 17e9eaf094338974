"""KYC cases and their documents (migrations 0011, 0015).

Nothing here is deleted (the migration refuses DELETE on each table): a decision, a price used in
a report or a list entry must still be there when a regulator asks, years later.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, SmallInteger, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin


class KycCase(TimestampMixin, Base):
    """A user's identity verification: one case per user; its history is its audit events."""

    __tablename__ = "kyc_cases"
    __table_args__ = (Index("ix_kyc_cases_state_submitted", "state", "submitted_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    level: Mapped[int] = mapped_column(Integer, default=0)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    date_of_birth: Mapped[date] = mapped_column(Date)
    country: Mapped[str] = mapped_column(String(2))
    address: Mapped[dict[str, Any]] = mapped_column(JSONB)
    screening_hit: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    submitted_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[uuid.UUID | None]
    reason: Mapped[str | None] = mapped_column(Text)


class KycDocument(IdMixin, Base):
    """A file sent with a KYC submission (migration 0015): its bytes are in the file store under
    ``str(id)``, sniffed and hashed on the way in. Never changed or removed (append-only)."""

    __tablename__ = "kyc_documents"
    __table_args__ = (Index("ix_kyc_documents_user_submission", "user_id", "submitted_at", "position"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kyc_cases.user_id"))
    filename: Mapped[str] = mapped_column(String(120))  # the client's name, display only (core.sniff.safe_filename)
    content_type: Mapped[str] = mapped_column(String(60))  # sniffed from the bytes
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime]  # the case's submitted_at of the submission it came with
    position: Mapped[int] = mapped_column(SmallInteger)  # its place in that submission's form
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
