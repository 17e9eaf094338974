"""Compliance tables: prices, KYC cases, sanctions lists, reports (migration 0011).

Nothing here is deleted (the migration refuses DELETE on each table): a decision, a price used in
a report or a list entry must still be there when a regulator asks, years later.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin

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


class ComplianceReport(IdMixin, TimestampMixin, Base):
    """A generated report: ``queued → running → ready | failed``, its files hashed (SHA-256)."""

    __tablename__ = "compliance_reports"
    __table_args__ = (Index("ix_compliance_reports_jurisdiction_created", "jurisdiction", "created_at", "id"),)

    jurisdiction: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(40))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(10))
    requested_by: Mapped[uuid.UUID | None]
    # Scheduled runs carry "scheduled:<jurisdiction>:<type>:<start>": a period runs once.
    unique_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    rows: Mapped[int | None]
    sha256: Mapped[str | None] = mapped_column(String(64))  # of the CSV file
    json_sha256: Mapped[str | None] = mapped_column(String(64))
    csv_path: Mapped[str | None] = mapped_column(String(500))
    json_path: Mapped[str | None] = mapped_column(String(500))
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # threshold, currency, source used
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


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
