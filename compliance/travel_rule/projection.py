"""The Travel Rule transfer aggregate as a pure fold over its audit events, registered for the admin replay."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.travel_rule.models import TravelRuleTransfer
from core import audit
from custody import ledger

State = dict[str, Any]


TRAVEL_RULE_FIELDS = ("state", "external_id", "asset", "amount", "destination", "travel_address", "tx_hash",
                      "callback_url", "counterparty", "reason")
TRAVEL_RULE_STATES = {f"travel_rule.{state}": state for state in ("sent", "accepted", "rejected", "expired")}


def reduce_travel_rule(state: State | None, event: dict[str, Any]) -> State | None:
    """``created`` has the whole record; ``updated`` the changed fields; a state change and
    ``recorded`` the facts they set (callback, txid, reason, counterparty)."""
    data, kind = event["data"], event["type"]
    if kind == "travel_rule.created":
        return {field: data.get(field) for field in TRAVEL_RULE_FIELDS}
    if state is None:
        return state
    if kind == "travel_rule.updated":
        return {**state, **{field: value for field, value in data["fields"].items() if field in state}}
    if kind in TRAVEL_RULE_STATES or kind == "travel_rule.recorded":
        facts = {field: value for field, value in data.items() if field in state and field != "state"}
        return {**state, **facts, **({"state": TRAVEL_RULE_STATES[kind]} if kind in TRAVEL_RULE_STATES else {})}
    return state


async def stored_travel_rule(session: AsyncSession, aggregate_id: str) -> State | None:
    transfer = await audit.stored_row(session, TravelRuleTransfer, aggregate_id)
    if transfer is None:
        return None
    unit = await ledger.currency(session, transfer.asset)
    return {field: unit.format(transfer.amount) if field == "amount" else getattr(transfer, field)
            for field in TRAVEL_RULE_FIELDS}


audit.register_projection("travel_rule", reduce_travel_rule, stored_travel_rule)
