"""What monitoring reads about withdrawals: how many are on their way out, and the oldest of each state."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from custody.withdrawals.models import Withdrawal

# Approved and not yet mined: the states the platform (not a customer or an approver) must move on.
MOVING = ("approved", "signing", "signed", "broadcast")


@dataclass(frozen=True)
class InFlight:
    state: str
    count: int
    oldest_seconds: float  # since the oldest one entered the pipeline's current stage
    waiting_on_fees: int  # of them, held by the fee caps or used-up bumps (``Withdrawal.alert``)


async def in_flight(session: AsyncSession) -> list[InFlight]:
    """One row per moving state, zeros included, so a state that empties reads 0, not stale."""
    since = func.coalesce(Withdrawal.broadcast_at, Withdrawal.sign_requested_at, Withdrawal.created_at)
    rows = await session.execute(
        select(Withdrawal.state, func.count(),
               func.extract("epoch", func.now() - func.min(since)),
               func.count().filter(Withdrawal.alert.is_not(None)))
        .where(Withdrawal.state.in_(MOVING)).group_by(Withdrawal.state))
    found = {state: InFlight(state, count, float(age or 0), waiting) for state, count, age, waiting in rows}
    return [found.get(state, InFlight(state, 0, 0.0, 0)) for state in MOVING]
