"""KYC cases and transaction reviews as pure folds over their audit events (for the admin replay).

Register them in ``api/admin/events_service.PROJECTIONS`` as ``"kyc_case"`` and
``"transaction_review"``; the replay then reports any drift between the events and the rows.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.models import KycCase, TransactionReview

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
