"""The stored claims and responses of Idempotency-Key requests (the HTTP handling is ``api.idempotency``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin

MAX_KEY_LENGTH = 255


class IdempotencyRecord(IdMixin, Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_records_user_key"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))  # in_flight | completed
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_content_type: Mapped[str | None] = mapped_column(String(100))
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    lease_until: Mapped[datetime]
    # Bumped by every take-over of a stale claim: the completion of a request that lost its claim finds
    # another version and writes nothing (api.idempotency).
    claim_version: Mapped[int] = mapped_column(Integer, server_default="1")
    expires_at: Mapped[datetime]
