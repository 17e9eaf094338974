"""Sign-up as a whole: the account, then what a new user is owed by the rest of the platform; and
email ownership, which is what makes the account the seller of the escrows addressed to its email."""

from __future__ import annotations

import uuid
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from custody import ledger
from custody.escrow.service import link_seller
from identity import email_verification, service
from identity.models import LOCK_USER, User
from notifications.emails import product_email
from notifications.product_emails import queue_verification_email


async def sign_up(session: AsyncSession, settings: Settings, *, email: str, password: str, display_name: str,
                  locale: str | None = None) -> User:
    user = await service.register(session, email, password, display_name, locale=locale)
    # Not linked to the contracts addressed to this email yet: signing up with an address proves
    # nothing; the link we email does (``verify_email``).
    await _send_verification(session, settings, user)
    if settings.sandbox_credit:  # devnet and tests only: production refuses the setting
        await ledger.sandbox_credit(session, user.id, settings.sandbox_credit)
    product_email(session, user.id, "welcome")  # after commit; skipped while no welcome template is published
    return user


async def _send_verification(session: AsyncSession, settings: Settings, user: User) -> datetime:
    token, expires_at = await email_verification.issue(session, settings, user)
    await queue_verification_email(session, user, email_verification.link(settings, token))
    return expires_at


async def resend_verification(session: AsyncSession, settings: Settings, redis: Redis,
                              user_id: uuid.UUID) -> tuple[User, datetime]:
    """A new link for the caller (the earlier ones stop working) and its expiry; throttled per user."""
    user = await session.get_one(User, user_id, with_for_update=LOCK_USER)  # resends at once: the last link works
    if user.email_verified:
        raise email_verification.AlreadyVerified()
    await email_verification.count_resend(redis, settings, user.id)
    return user, await _send_verification(session, settings, user)


async def verify_email(session: AsyncSession, token: str) -> User:
    """Spend an emailed token: the account owns its address and becomes the seller of the contracts
    waiting for it, in this one transaction."""
    user = await email_verification.consume(session, token)
    await link_seller(session, user)
    return user


async def mark_email_verified(session: AsyncSession, user: User, *, actor: uuid.UUID | str | None = None) -> None:
    """Verified without a link: accounts whose address the platform vouches for itself (the devnet's
    demo users, an operator-created admin). Audited, and the waiting contracts are linked, as by a link."""
    await email_verification.mark_verified(session, user, actor=actor)
    await link_seller(session, user)
