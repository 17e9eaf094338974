"""The first admin of a platform, made from the command line (`virtuoz admin create`).

Granting admin takes two admins (``identity.grants``), so the first admins cannot come from the API:
whoever runs the command holds the platform's database credentials, and is trusted that far
already. The account is active and its email verified (the operator vouches for the address; no
link is mailed); every event names the actor ``cli``. An existing email is refused, never promoted:
promotion is the two-admin path.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity import email_verification
from identity.models import User
from identity.service import register

ACTOR = "cli"


async def create_admin(session: AsyncSession, email: str, password: str, display_name: str = "Administrator") -> User:
    """An active admin with a verified email; 409 ``email_taken``, 422 ``weak_password``."""
    user = await register(session, email, password, display_name, roles=["admin"], via=ACTOR)
    await email_verification.mark_verified(session, user, actor=ACTOR)
    return user
