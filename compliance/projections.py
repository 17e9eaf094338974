"""KYC cases, transaction reviews and Travel Rule transfers as pure folds over their audit events
(for the admin replay).

Registered in ``api/admin/events_service.PROJECTIONS`` as ``"kyc_case"``, ``"transaction_review"``
and ``"travel_rule"``; the replay then reports any drift between the events and the rows.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.kyc.models import KycCase
from compliance.review.models import TransactionReview
from compliance.travel_rule.models import TravelRuleTransfer
from custody import ledger

State = dict[str, Any]
KYC_DECIDED = {"kyc.approved": "approved", "kyc.rejected": "rejected", "kyc.needs_info": "needs_info"}
REVIEW_RESOLVED = {"transaction.cleared": "cleared", "transaction.reported": "reported"}


def reduce_kyc_case(state: State | None, event: dict[str, Any]) -> State | None:
    data, kind = event["data"], event["type"]
    if kind == "kyc.submitted":
        return {"state": data["state"], "level": (state or {}).get("level", 0), "first_name": data["first_name"],
                "last_name": data["last_name"], "date_of_birth": data["date_of_birth"], "country": data["country"],
                "address": data["address"], "reason": None}
    if kind in KYC_DECIDED:
        return {**(state or {}), "state": KYC_DECIDED[kind], "level": data["level"], "reason": data["reason"]}
    return state


async def stored_kyc_case(session: AsyncSession, aggregate_id: str) -> State | None:
    try:
        case = await session.get(KycCase, uuid.UUID(aggregate_id))
    except ValueError:
        return None
    if case is None:
        return None
    return {"state": case.state, "level": case.level, "first_name": case.first_name, "last_name": case.last_name,
            "date_of_birth": case.date_of_birth.isoformat(), "country": case.country, "address": case.address,
            "reason": case.reason}


def reduce_transaction_review(state: State | None, event: dict[str, Any]) -> State | None:
    data, kind = event["data"], event["type"]
    if kind == "transaction.flagged":
        return {"state": "flagged", "reason": data["reason"], "resolution_note": None}
    if kind in REVIEW_RESOLVED:
        return {**(state or {}), "state": REVIEW_RESOLVED[kind], "resolution_note": data["note"]}
    return state


async def stored_transaction_review(session: AsyncSession, aggregate_id: str) -> State | None:
    try:
        review = await session.get(TransactionReview, uuid.UUID(aggregate_id))
    except ValueError:
        return None
    if review is None:
        return None
    return {"state": review.state, "reason": review.reason, "resolution_note": review.resolution_note}


# --- Travel Rule transfers ----------------------------------------------------------------------

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
    try:
        transfer = await session.get(TravelRuleTransfer, uuid.UUID(aggregate_id))
    except ValueError:
        return None
    if transfer is None:
        return None
    unit = await ledger.currency(session, transfer.asset)
    return {field: unit.format(transfer.amount) if field == "amount" else getattr(transfer, field)
            for field in TRAVEL_RULE_FIELDS}
