"""The totals a withdrawal request is measured against, counted under one lock per asset.

- **The signer's limits.** The signer enforces its own per-asset single and rolling 24-hour limits
  (``signer/policy.py``, settings ``signer_limits``). Custody knows them too and refuses at request
  (403 ``signer_limit_exceeded``, nothing held) what the signer would refuse later: a refusal after
  approval fails the withdrawal and gives its nonce back while later nonces may already be signed.
  The daily total is the signer's, over every customer: what it signed in the last 24 hours, plus
  everything it will be asked to sign (requested, awaiting the Travel Rule or approval, approved,
  signing), whatever its age — a withdrawal still waiting counts in the window it will be signed in.
  An asset without signer limits is one the signer never signs: refused at once.
- **The four-eyes threshold** applies to the customer's withdrawals of the asset requested in the
  last 24 hours, this one included, so a large payment split into small ones still needs two
  operators from the one that crosses it.

Both sums are read under a transaction-scoped advisory lock per asset (``lock_asset``), held until
the new withdrawal's row commits: two requests at once cannot both squeeze under a limit. It
serializes every request of one asset, platform-wide, for the few milliseconds of its transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import advisory_lock
from core.errors import Forbidden
from core.settings import Settings
from custody.ledger import CurrencyInfo
from custody.withdrawals.models import Withdrawal, WithdrawalAttempt

WINDOW = timedelta(hours=24)
# Not signed yet, but on their way to the signer.
AWAITING_SIGNATURE = ("requested", "awaiting_travel_rule", "pending_approval", "approved", "signing")
# Signed by the signer (a transaction mined but reverted included: the signer counted it).
SIGNED = ("signed", "broadcast", "confirmed")
MOVED_NOTHING = ("failed", "rolled_back")


class SignerLimitExceeded(Forbidden):
    code, message = "signer_limit_exceeded", ("This withdrawal is above what the platform's signer sends (per "
                                              "withdrawal, or in 24 hours): request a smaller amount, or later.")


async def lock_asset(session: AsyncSession, asset: str) -> None:
    """Serialize the requests of ``asset`` until this transaction ends (see the module)."""
    await advisory_lock(session, f"withdrawal-requests:{asset}")


async def signer_window_used(session: AsyncSession, asset: str, now: datetime) -> int:
    """Minor units of ``asset`` the signer signed in the 24 hours before ``now`` or will be asked to sign."""
    first_signed = (select(func.min(WithdrawalAttempt.signed_at))
                    .where(WithdrawalAttempt.withdrawal_id == Withdrawal.id).scalar_subquery())
    signed = or_(Withdrawal.state.in_(SIGNED), and_(Withdrawal.state == "failed", Withdrawal.tx_hash.is_not(None)))
    total = await session.scalar(select(func.coalesce(func.sum(Withdrawal.amount), 0)).where(
        Withdrawal.asset == asset,
        or_(Withdrawal.state.in_(AWAITING_SIGNATURE),
            and_(signed, func.coalesce(first_signed, Withdrawal.created_at) > now - WINDOW))))
    return int(total)


async def check_signer_limits(session: AsyncSession, settings: Settings, unit: CurrencyInfo, amount: int,
                              now: datetime) -> None:
    """403 ``signer_limit_exceeded`` for what the signer would refuse; call under ``lock_asset``."""
    limit = settings.signer_limits.get(unit.code)
    if limit is None:
        raise SignerLimitExceeded(details={"asset": unit.code, "limit": "unconfigured"})
    # In the signer's own units: it is told the asset's decimals with its limits.
    if amount > limit.minor(limit.single):
        raise SignerLimitExceeded(details={"asset": unit.code, "limit": "single", "single_limit": limit.single})
    # The platform's remaining daily capacity is not the customer's business: only the window is named.
    if await signer_window_used(session, unit.code, now) + amount > limit.minor(limit.daily):
        raise SignerLimitExceeded(details={"asset": unit.code, "limit": "daily",
                                           "window_hours": int(WINDOW.total_seconds() // 3600)})


async def requested_by_user(session: AsyncSession, user_id: uuid.UUID, asset: str, now: datetime) -> int:
    """Minor units of ``asset`` the customer requested in the 24 hours before ``now`` that still move or moved."""
    total = await session.scalar(select(func.coalesce(func.sum(Withdrawal.amount), 0)).where(
        Withdrawal.user_id == user_id, Withdrawal.asset == asset, Withdrawal.created_at > now - WINDOW,
        Withdrawal.state.not_in(MOVED_NOTHING)))
    return int(total)


async def approvals_required(session: AsyncSession, user_id: uuid.UUID, unit: CurrencyInfo, amount: int,
                             threshold: int | None, now: datetime) -> int:
    """2 when the customer's 24 hours of ``unit`` with ``amount`` reach ``threshold`` (inclusive), else 1."""
    if threshold is None:
        return 1
    return 2 if await requested_by_user(session, user_id, unit.code, now) + amount >= threshold else 1
