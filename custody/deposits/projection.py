"""The deposit as a pure fold over its audit events, registered for the admin replay.

``confirming`` is not an event: the scanner moves deposits there in bulk with their confirmation
count, one statement per block, as the chain grows. Both sides of the replay therefore fold it
into ``seen`` (not yet credited); every other state is recorded by an event. Confirmations, a
function of the chain's height, are not replayed either. Events written before migration 0023 name
no index within the transaction, revision or receivable: the fold gives them what 0023 gave their
rows (-1 for a native transfer, unknown for a token one; revision 1; nothing owed).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from custody import ledger
from custody.deposits.models import CONFIRMING, SEEN, Deposit

State = dict[str, Any]
CHAIN_FIELDS = ("chain", "tx_hash", "log_index", "tx_log_index", "revision", "supersedes", "asset", "amount",
                "block_number", "block_hash", "to_address", "required_confirmations")


def _phase(state: str) -> str:
    return SEEN if state == CONFIRMING else state


def reduce_deposit(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    state = dict(state or {"credits": 0, "credit_transfer_id": None, "revision": 1, "supersedes": None,
                           "receivable": "0"})
    # seen, moved, revived, reorged and orphaned carry the whole view; credited and reversed a shorter one.
    state.update({field: data[field] for field in CHAIN_FIELDS if field in data})
    if "tx_log_index" not in state and "log_index" in state:
        state["tx_log_index"] = -1 if state["log_index"] == -1 else None
    if "receivable" in data:  # reversed, credited and receivable_settled: what is still owed after it
        state["receivable"] = data["receivable"]
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
        "chain": deposit.chain, "tx_hash": deposit.tx_hash, "log_index": deposit.log_index,
        "tx_log_index": deposit.tx_log_index, "revision": deposit.revision,
        "supersedes": None if deposit.supersedes is None else str(deposit.supersedes), "asset": deposit.asset,
        "amount": unit.format(deposit.amount), "block_number": deposit.block_number,
        "block_hash": deposit.block_hash, "to_address": deposit.to_address,
        "required_confirmations": deposit.required_confirmations, "state": _phase(deposit.state),
        "credits": deposit.credits, "receivable": unit.format(deposit.receivable),
        "credit_transfer_id": None if deposit.credit_transfer_id is None else str(deposit.credit_transfer_id),
    }

audit.register_projection("deposit", reduce_deposit, stored_deposit)
