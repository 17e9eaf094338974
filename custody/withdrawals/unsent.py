"""Withdrawals not yet sent to the signer, stopped to pay back a reversed deposit.

A deposit reversed after its money left the user's available balance (``custody.deposits.crediting``)
first takes back what is still on its way out, before it books anything as owed: a withdrawal whose
sign request is not out (``UNSENT``) can still be stopped, so it is rolled back — its hold voided,
``failure_reason`` saying why, audited like any rollback. Newest first, and only as many as the
reversal needs: older withdrawals go on when newer ones cover it. From ``signing`` on, a transaction
for the withdrawal may exist (``states.TRANSACTION_STATES``): it is past stopping.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.time import utcnow
from custody import ledger
from custody.withdrawals.models import Withdrawal
from custody.withdrawals.service import record_step
from custody.withdrawals.states import transition

UNSENT = ("requested", "awaiting_travel_rule", "pending_approval", "approved")


async def roll_back_unsent(session: AsyncSession, user_id: uuid.UUID, asset: str, needed: int, *, reason: str,
                           data: Mapping[str, object] | None = None) -> list[Withdrawal]:
    """Roll back the user's unsent withdrawals of ``asset``, newest first, until their voided holds
    have given back ``needed`` minor units (all of them if they do not reach it); those rolled back."""
    if needed <= 0:
        return []
    # Locked, and read again after any wait: one the worker moved to ``signing`` meanwhile drops out.
    rows = list(await session.scalars(
        select(Withdrawal).where(Withdrawal.user_id == user_id, Withdrawal.asset == asset,
                                 Withdrawal.state.in_(UNSENT))
        .order_by(Withdrawal.created_at.desc(), Withdrawal.id.desc()).with_for_update()
        .execution_options(populate_existing=True)))
    unit = await ledger.currency(session, asset)
    rolled_back: list[Withdrawal] = []
    returned = 0
    for withdrawal in rows:
        if returned >= needed:
            break
        previous = withdrawal.state
        withdrawal.state = transition(previous, "rollback")
        withdrawal.failure_reason, withdrawal.finished_at = reason, utcnow()
        returned += (await ledger.void_hold(session, withdrawal.hold_id, type="withdrawal_void")).amount
        await session.flush()
        await record_step(session, withdrawal, unit, "withdrawal.rolled_back", "custody",
                          {"previous_state": previous, "reason": reason, **(data or {})})
        rolled_back.append(withdrawal)
    return rolled_back
