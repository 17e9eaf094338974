"""Compliance reports (migration 0011).

Nothing here is deleted (the migration refuses DELETE on each table): a decision, a price used in
a report or a list entry must still be there when a regulator asks, years later.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin


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
    # Keys in the reports file store (core.storage), "<id>.csv" and "<id>.json"; reports written before
    # the store have paths on the worker's host here.
    csv_path: Mapped[str | None] = mapped_column(String(500))
    json_path: Mapped[str | None] = mapped_column(String(500))
    parameters: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # threshold, currency, source used
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
