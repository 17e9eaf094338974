"""The user aggregate as a pure fold over its audit events (registered for the admin replay)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from identity.models import User

State = dict[str, Any]


def reduce_user(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    match event["type"]:
        case "user.registered":
            return {"email": data["email"], "roles": sorted(data["roles"]), "status": "active", "mfa_enabled": False,
                    "email_verified": False}
        case "user.roles_changed":
            return {**(state or {}), "roles": sorted(data["to"])}
        case "user.status_changed":
            return {**(state or {}), "status": data["to"]}
        case "user.email_verified":
            return {**(state or {}), "email_verified": True}
        case "mfa.enabled":
            return {**(state or {}), "mfa_enabled": True}
        case "mfa.disabled":
            return {**(state or {}), "mfa_enabled": False}
        case _:  # logins, sessions, refused codes: facts about the user that change no field
            return state


async def stored_user(session: AsyncSession, aggregate_id: str) -> State | None:
    user = await audit.stored_row(session, User, aggregate_id)
    if user is None:
        return None
    return {"email": user.email, "roles": sorted(user.roles), "status": user.status, "mfa_enabled": user.mfa_enabled,
            "email_verified": user.email_verified}

audit.register_projection("user", reduce_user, stored_user)
