"""The role grant aggregate as a pure fold over its audit events (registered for the admin replay)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from identity.grants.models import RoleGrant

State = dict[str, Any]


def reduce_role_grant(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    match event["type"]:
        case "role_grant.requested":
            return {"user_id": data["user_id"], "role": data["role"], "requested_by": data["requested_by"],
                    "state": "pending", "confirmed_by": None}
        case "role_grant.confirmed":
            return {**(state or {}), "state": "confirmed", "confirmed_by": data["confirmed_by"]}
        case "role_grant.expired":
            return {**(state or {}), "state": "expired"}
        case _:
            return state


async def stored_role_grant(session: AsyncSession, aggregate_id: str) -> State | None:
    grant = await audit.stored_row(session, RoleGrant, aggregate_id)
    if grant is None:
        return None
    return {"user_id": str(grant.user_id), "role": grant.role, "requested_by": str(grant.requested_by),
            "state": grant.state, "confirmed_by": str(grant.confirmed_by) if grant.confirmed_by else None}


audit.register_projection("role_grant", reduce_role_grant, stored_role_grant)
