"""The escrow contract as a pure fold over its audit events, registered for the admin replay.

Money is compared as the events write it: amounts in major units as the currency formats them,
the fee in minor units. Title and description never change after creation and are not replayed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from custody import ledger
from custody.escrow.models import EscrowContract

State = dict[str, Any]


def reduce_escrow(state: State | None, event: dict[str, Any]) -> State | None:
    data, kind = event["data"], event["type"]
    if kind == "escrow.created":
        return {"state": data["state"], "buyer_id": event["actor"], "seller_id": data.get("seller_id"),
                "seller_email": data["seller_email"], "amount": data["amount"], "currency": data["currency"],
                "hold_id": None, "fee": None, "dispute_reason": None, "disputed_by": None, "resolution": None,
                "seller_amount": None}
    state = dict(state or {})
    match kind:
        case "escrow.seller_linked":
            state["seller_id"] = data["seller_id"]
        case "escrow.funded":
            state["hold_id"] = data["hold_id"]
        case "escrow.released":
            state["fee"] = data["fee"]
        case "escrow.disputed":
            state["dispute_reason"], state["disputed_by"] = data["reason"], event["actor"]
        case "escrow.resolved":
            state["resolution"], state["seller_amount"] = data["outcome"], data["seller_amount"]
            state["fee"] = data.get("fee", state.get("fee"))
        case _:  # evidence added or hidden: facts about the dispute that change no field here
            pass
    if "state" in data:  # every transition records the state it reached
        state["state"] = data["state"]
    return state


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


async def stored_escrow(session: AsyncSession, aggregate_id: str) -> State | None:
    contract = await audit.stored_row(session, EscrowContract, aggregate_id)
    if contract is None:
        return None
    unit = await ledger.currency(session, contract.currency)
    return {
        "state": contract.state, "buyer_id": str(contract.buyer_id), "seller_id": _text(contract.seller_id),
        "seller_email": contract.seller_email, "amount": unit.format(contract.amount), "currency": contract.currency,
        "hold_id": _text(contract.hold_id), "fee": _text(contract.fee), "dispute_reason": contract.dispute_reason,
        "disputed_by": _text(contract.disputed_by), "resolution": contract.resolution,
        "seller_amount": None if contract.seller_amount is None else unit.format(contract.seller_amount),
    }

audit.register_projection("escrow", reduce_escrow, stored_escrow)
