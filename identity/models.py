"""Identity tables: users, their sessions (one refresh-token family each), recovery codes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, IdMixin, TimestampMixin

ROLES = ("customer", "support", "operator", "compliance", "admin")
STAFF_ROLES = frozenset({"support", "operator", "compliance", "admin"})


# How a user's row is locked (a step-up, an MFA or password change, a role change): FOR NO KEY
# UPDATE. FOR UPDATE would also block the FOR KEY SHARE that PostgreSQL takes on it to check every
# foreign key naming the user (a ledger account, a deposit, a notification written meanwhile): a
# withdrawal request and a deposit credit of the same customer deadlocked on it. The id never changes.
LOCK_USER = {"key_share": True}


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)  # normalized: trimmed, lowercase
    display_name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(ARRAY(String(20)), default=lambda: ["customer"])
    status: Mapped[str] = mapped_column(String(20), default="active")
    kyc_status: Mapped[str] = mapped_column(String(20), default="unverified")
    # BCP 47 (``de``, ``de-AT``): product emails use it (CMS fallback de-AT → de → en); None: the default.
    locale: Mapped[str | None] = mapped_column(String(35))
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # AES-GCM ciphertexts (key from settings); the pending one waits for its first code.
    mfa_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    mfa_pending_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The last TOTP time-step accepted: a code (or an older one) can never be used twice.
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)
    # When the user proved they own ``email`` (a link we emailed). None: never — an account is not
    # an escrow seller and withdraws nothing until then; accounts older than the check stay None.
    email_verified_at: Mapped[datetime | None]

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


class AuthSession(IdMixin, Base):
    """A login: the ``sid`` of its access tokens and the family of its refresh tokens."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(40))


class RefreshToken(IdMixin, Base):
    __tablename__ = "refresh_tokens"

    session_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("auth_sessions.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of an opaque random token
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    used_at: Mapped[datetime | None]


class EmailVerificationToken(IdMixin, Base):
    """One emailed link proving the user owns ``email``: single use, until ``expires_at``."""

    __tablename__ = "email_verification_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))  # the address it was sent to: proves nothing about another
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of an opaque random token
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class RecoveryCode(IdMixin, Base):
    __tablename__ = "mfa_recovery_codes"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None]
