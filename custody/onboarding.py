"""Sign-up as a whole: the account, then what a new user is owed by the rest of the platform."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from custody import ledger
from custody.escrow.service import link_seller
from identity import service
from identity.models import User
from notifications.emails import product_email


async def sign_up(session: AsyncSession, settings: Settings, *, email: str, password: str, display_name: str,
                  locale: str | None = None) -> User:
    user = await service.register(session, email, password, display_name, locale=locale)
    # Contracts that named this email as their seller before the account existed.
    await link_seller(session, user)
    if settings.sandbox_credit:  # devnet and tests only: production refuses the setting
        await ledger.sandbox_credit(session, user.id, settings.sandbox_credit)
    product_email(session, user.id, "welcome")  # after commit; skipped while no welcome template is published
    return user
