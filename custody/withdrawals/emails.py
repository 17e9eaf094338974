"""The variables of the withdrawal product emails (``notifications.emails``)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from custody import ledger
from custody.withdrawals.models import Withdrawal
from notifications.emails import Variables, variables_for


@variables_for("withdrawal.confirmed")
async def withdrawal_variables(session: AsyncSession, template: str, ref: uuid.UUID | None) -> Variables | None:
    """``amount``, ``currency``, ``chain``, ``tx_hash``."""
    withdrawal = await session.get(Withdrawal, ref)
    if withdrawal is None:
        return None
    unit = await ledger.currency(session, withdrawal.asset)
    return {"amount": unit.format(withdrawal.amount), "currency": unit.code, "chain": withdrawal.chain,
            "tx_hash": withdrawal.tx_hash or ""}
