"""The transaction review aggregate as a pure fold over its audit events, registered for the admin replay."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.review.models import TransactionReview
from core import audit

State = dict[str, Any]
REVIEW_RESOLVED = {"transaction.cleared": "cleared", "transaction.reported": "reported"}


def reduce_transaction_review(state: State | None, event: dict[str, Any]) -> State | None:
    data, kind = event["data"], event["type"]
    if kind == "transaction.flagged":
        return {"state": "flagged", "reason": data["reason"], "resolution_note": None}
    if kind in REVIEW_RESOLVED:
        return {**(state or {}), "state": REVIEW_RESOLVED[kind], "resolution_note": data["note"]}
    return state


async def stored_transaction_review(session: AsyncSession, aggregate_id: str) -> State | None:
    review = await audit.stored_row(session, TransactionReview, aggregate_id)
    if review is None:
        return None
    return {"state": review.state, "reason": review.reason, "resolution_note": review.resolution_note}


audit.register_projection("transaction_review", reduce_transaction_review, stored_transaction_review)
