"""Withdrawal limits by KYC level: unverified customers may deposit, but withdraw only a little.

The settings (``kyc_withdrawal_limits``) give, per KYC level, the most a customer may request per
asset in a rolling 24 hours, in major units. A customer's level is their case's ``level`` while
the case is ``approved``, 0 otherwise (no case, pending, needs_info, rejected). The table of the
highest configured level at or below theirs applies; an asset that table does not list has no KYC
limit (the signer's own limits still apply). ``{}`` configures no KYC limits at all.

What counts as used: the customer's withdrawals of the asset (every chain) requested in the last
24 hours, except those that moved nothing (``failed`` — voided — and ``rolled_back``); the amount
without the platform fee. The check runs under a per-customer transaction lock, so two requests
at once cannot both squeeze under the limit.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from compliance.kyc.models import KycCase
from core.db import advisory_lock
from core.errors import Forbidden
from core.time import utcnow
from custody.ledger import CurrencyInfo
from custody.withdrawals.models import Withdrawal

WINDOW = timedelta(hours=24)
NOTHING_MOVED = ("failed", "rolled_back")


class KycLimitExceeded(Forbidden):
    code, message = "kyc_limit_exceeded", "This withdrawal is above your verification level's 24-hour limit."


async def level_of(session: AsyncSession, user_id: uuid.UUID) -> int:
    row = (await session.execute(select(KycCase.state, KycCase.level).where(KycCase.user_id == user_id))).first()
    return row.level if row is not None and row.state == "approved" else 0


def limit_table(limits: dict[int, dict[str, str]], level: int) -> dict[str, str] | None:
    """The limits of the highest configured level at or below ``level`` (None: no limits)."""
    configured = [known for known in limits if known <= level]
    return limits[max(configured)] if configured else None


async def used(session: AsyncSession, user_id: uuid.UUID, asset: str, now: datetime) -> int:
    """Minor units of ``asset`` the customer requested in the 24 hours before ``now``, still moving or moved."""
    total = await session.scalar(select(func.coalesce(func.sum(Withdrawal.amount), 0)).where(
        Withdrawal.user_id == user_id, Withdrawal.asset == asset,
        Withdrawal.created_at > now - WINDOW, Withdrawal.state.not_in(NOTHING_MOVED)))
    return int(total)


async def check_withdrawal(session: AsyncSession, limits: dict[int, dict[str, str]], user_id: uuid.UUID,
                           unit: CurrencyInfo, amount: int) -> None:
    """Refuse (403 ``kyc_limit_exceeded``) a request that would take the last 24 hours above the limit."""
    level = await level_of(session, user_id)
    configured = (limit_table(limits, level) or {}).get(unit.code)
    if configured is None:
        return
    limit = unit.parse(configured, allow_zero=True)
    # Serializes this customer's requests until commit: the sum read below stays true until the
    # new withdrawal row is written in the same transaction.
    await advisory_lock(session, f"kyc-withdrawal-limit:{user_id}")
    already = await used(session, user_id, unit.code, utcnow())
    if already + amount > limit:
        raise KycLimitExceeded(details={
            "level": level, "asset": unit.code, "limit": unit.format(limit), "used": unit.format(already),
            "requested": unit.format(amount), "remaining": unit.format(max(limit - already, 0)),
            "window_hours": int(WINDOW.total_seconds() // 3600)})
