"""The deposit as a pure fold over its audit events, registered for the admin replay.

``confirming`` is not an event: the scanner moves deposits there in bulk with their confirmation
count, one statement per block, as the chain grows. Both sides of the replay therefore fold it
into ``seen`` (not yet credited); every other state is recorded by an event. Confirmations, a
function of the chain's height, are not replayed either.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from custody import ledger
from custody.deposits.models import CONFIRMING, SEEN, Deposit

State = dict[str, Any]
CHAIN_FIELDS = ("chain", "tx_hash", "log_index", "asset", "amount", "block_number", "block_hash", "to_address",
                "required_confirmations")


def _phase(state: str) -> str:
    return SEEN if state == CONFIRMING else state


def reduce_deposit(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    state = dict(state or {"credits": 0, "credit_transfer_id": None})
    # seen, moved, revived and reorged carry the whole view; credited and reversed a shorter one.
    state.update({field: data[field] for field in CHAIN_FIELDS if field in data})
    if "state" in data:
        state["state"] = _phase(data["state"])
    match event["type"]:
        case "deposit.credited":
            state["credits"], state["credit_transfer_id"] = data["credit"], data["transfer_id"]
        case "deposit.reversed":
            state["credit_transfer_id"] = None
    return state


async def stored_deposit(session: AsyncSession, aggregate_id: str) -> State | None:
    deposit = await audit.stored_row(session, Deposit, aggregate_id)
    if deposit is None:
        return None
    unit = await ledger.currency(session, deposit.asset)
    return {
        "chain": deposit.chain, "tx_hash": deposit.tx_hash, "log_index": deposit.log_index, "asset": deposit.asset,
        "amount": unit.format(deposit.amount), "block_number": deposit.block_number,
        "block_hash": deposit.block_hash, "to_address": deposit.to_address,
        "required_confirmations": deposit.required_confirmations, "state": _phase(deposit.state),
        "credits": deposit.credits,
        "credit_transfer_id": None if deposit.credit_transfer_id is None else str(deposit.credit_transfer_id),
    }

audit.register_projection("deposit", reduce_deposit, stored_deposit)
