"""The KYC case aggregate as a pure fold over its audit events, registered for the admin replay."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.kyc.models import KycCase
from core import audit

State = dict[str, Any]
KYC_DECIDED = {"kyc.approved": "approved", "kyc.rejected": "rejected", "kyc.needs_info": "needs_info"}


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
    case = await audit.stored_row(session, KycCase, aggregate_id)
    if case is None:
        return None
    return {"state": case.state, "level": case.level, "first_name": case.first_name, "last_name": case.last_name,
            "date_of_birth": case.date_of_birth.isoformat(), "country": case.country, "address": case.address,
            "reason": case.reason}


audit.register_projection("kyc_case", reduce_kyc_case, stored_kyc_case)
