"""API keys: what a machine authenticates with instead of a password, TOTP and a short-lived JWT.

Only the SHA-256 of a key's secret is stored: the secret is 256 random bits, so a digest is as good
as a slow hash and costs nothing per request. ``prefix`` is the public half that finds the row.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin


class ApiKey(IdMixin, Base):
    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_user_created", "user_id", "created_at"),)
    __mapper_args__ = {"eager_defaults": True}

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(8), unique=True)
    environment: Mapped[str] = mapped_column(String(4))  # "live" or "test", part of the key's text
    secret_digest: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    allowed_ips: Mapped[list[str] | None] = mapped_column(ARRAY(String(50)))  # CIDR networks; None: any
    # Created with a fresh TOTP code (the owner has MFA on): what lets the key withdraw without one
    # to an address active in the owner's book.
    stepped_up: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
