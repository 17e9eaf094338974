"""Email ownership: the single-use links that prove a user owns their account's email address.

Registering an address proves nothing (anyone can sign up as sales@supplier.com), so what an
address is trusted for — being an escrow's seller, withdrawing — waits for ``email_verified_at``.

A link carries a random token (256 bits); only its SHA-256 is stored, with the address it was sent
to and an expiry (``VIRTUOZ_EMAIL_VERIFICATION_TTL_SECONDS``). A token works once, for that
address only; a newer link retires the older ones, and verifying retires them all. Unknown, used,
expired and retired tokens get the same answer (422 ``invalid_token``). What verifying unlocks
elsewhere (the escrows waiting for the address) is ``custody.onboarding``'s business.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlencode

from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.crypto import token_digest
from core.errors import Conflict, Forbidden, InvalidInput, TooManyRequests
from core.settings import Settings
from core.time import utcnow
from identity.models import LOCK_USER, EmailVerificationToken, User

RESEND_PREFIX = "virtuoz:email-verification-resends"
PAGE = "/verify-email"  # served by the integrator's front end (on the devnet, by the API)


class InvalidToken(InvalidInput):
    code, message = "invalid_token", "This verification link is invalid, expired or already used."


class EmailUnverified(Forbidden):
    code, message = "email_unverified", "Verify your email address first: follow the link we emailed you."


class AlreadyVerified(Conflict):
    code, message = "email_already_verified", "Your email address is already verified."


def link(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url}{PAGE}?{urlencode({'token': token})}"


async def issue(session: AsyncSession, settings: Settings, user: User) -> tuple[str, datetime]:
    """A new token for ``user``'s current address and its expiry; the user's earlier links stop working."""
    await _retire(session, user.id)
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=settings.email_verification_ttl_seconds)
    session.add(EmailVerificationToken(id=uuid.uuid4(), user_id=user.id, email=user.email,
                                       token_hash=token_digest(token), expires_at=expires_at))
    await session.flush()
    return token, expires_at


async def consume(session: AsyncSession, token: str) -> User:
    """The user whose address ``token`` proves, now verified; the token is spent."""
    row = await session.scalar(
        select(EmailVerificationToken).where(EmailVerificationToken.token_hash == token_digest(token))
        .with_for_update()  # two clicks at once: one verifies, the other finds the token used
    )
    if row is None or row.used_at is not None or row.expires_at <= utcnow():
        raise InvalidToken()
    user = await session.get_one(User, row.user_id, with_for_update=LOCK_USER)
    if user.email != row.email:  # sent to an address the account no longer has
        raise InvalidToken()
    row.used_at = utcnow()
    await mark_verified(session, user, actor=user.id)
    return user


async def mark_verified(session: AsyncSession, user: User, *, actor: uuid.UUID | str | None) -> bool:
    """Record that ``user`` owns their address (audited ``user.email_verified``); False if already known."""
    if user.email_verified_at is not None:
        return False
    user.email_verified_at = utcnow()
    await _retire(session, user.id)
    await session.flush()
    await audit.append(session, "user", user.id, "user.email_verified", {"email": user.email}, actor=actor)
    return True


async def _retire(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(delete(EmailVerificationToken).where(EmailVerificationToken.user_id == user_id,
                                                               EmailVerificationToken.used_at.is_(None)))


async def require_verified(session: AsyncSession, user_id: uuid.UUID) -> None:
    """403 ``email_unverified`` unless the user has proved their address. Reads only: locks nothing."""
    if await session.scalar(select(User.email_verified_at).where(User.id == user_id)) is None:
        raise EmailUnverified()


async def count_resend(redis: Redis, settings: Settings, user_id: uuid.UUID) -> None:
    """Count one resend; past ``email_verification_resend_max`` in the window, 429 with Retry-After.
    Every link is an email we send to an address nobody has proved: a session must not turn us into
    a mail cannon."""
    key = f"{RESEND_PREFIX}:{user_id}"
    async with redis.pipeline(transaction=True) as pipe:
        # The window starts at the first resend (SET NX EX creates it with its expiry, INCR counts).
        pipe.set(key, 0, ex=settings.email_verification_resend_window_seconds, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, sent, ttl = await pipe.execute()
    if sent > settings.email_verification_resend_max:
        retry_after = str(max(int(ttl), 1))
        raise TooManyRequests("Too many verification emails asked for; retry later.",
                              details={"retry_after_seconds": int(retry_after)}, headers={"Retry-After": retry_after})
