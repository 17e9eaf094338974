"""The withdrawal as a pure fold over its audit events, registered for the admin replay.

Every step records the state it reached with the withdrawal's chain, asset and amount
(``service.record_step``); the request records the owner (its actor), destination, fee and the
approvals it needs. Nonces, transaction hashes and gas belong to the signing attempts, which
keep their own rows, and are not replayed here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from custody import ledger
from custody.withdrawals.models import Withdrawal

State = dict[str, Any]
STEP_FIELDS = ("state", "chain", "asset", "amount")


def reduce_withdrawal(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    state = dict(state or {})
    if event["type"] == "withdrawal.requested":
        state.update(user_id=event["actor"], to_address=data["to_address"], fee=data["fee"],
                     approvals_required=data["approvals_required"])
    state.update({field: data[field] for field in STEP_FIELDS if field in data})
    return state


async def stored_withdrawal(session: AsyncSession, aggregate_id: str) -> State | None:
    withdrawal = await audit.stored_row(session, Withdrawal, aggregate_id)
    if withdrawal is None:
        return None
    unit = await ledger.currency(session, withdrawal.asset)
    return {
        "user_id": str(withdrawal.user_id), "to_address": withdrawal.to_address, "fee": unit.format(withdrawal.fee),
        "approvals_required": withdrawal.approvals_required, "state": withdrawal.state, "chain": withdrawal.chain,
        "asset": withdrawal.asset, "amount": unit.format(withdrawal.amount),
    }

audit.register_projection("withdrawal", reduce_withdrawal, stored_withdrawal)
