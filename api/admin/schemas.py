"""Request and response models of the admin role grant routes (the user directory's are in api.auth.schemas)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from identity.grants.models import RoleGrant
from identity.grants.service import effective_state

GrantState = Literal["pending", "confirmed", "expired"]


class RoleGrantOut(BaseModel):
    """A privileged role one admin asked for, waiting for (or given by) a second admin's confirmation."""

    id: uuid.UUID
    user_id: uuid.UUID = Field(description="Who gets the role.")
    role: Literal["operator", "compliance", "admin"]
    requested_by: uuid.UUID
    state: GrantState = Field(description="As it stands now: a pending grant past expires_at is expired.")
    created_at: datetime
    expires_at: datetime = Field(description="A pending grant can be confirmed until then.")
    confirmed_by: uuid.UUID | None
    confirmed_at: datetime | None

    @classmethod
    def of(cls, grant: RoleGrant, now: datetime) -> RoleGrantOut:
        return cls(id=grant.id, user_id=grant.user_id, role=grant.role, requested_by=grant.requested_by,  # type: ignore[arg-type]
                   state=effective_state(grant, now), created_at=grant.created_at,  # type: ignore[arg-type]
                   expires_at=grant.expires_at, confirmed_by=grant.confirmed_by, confirmed_at=grant.confirmed_at)


class RoleGrantListQuery(BaseModel):
    state: GrantState = "pending"
    user_id: uuid.UUID | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class RoleGrantListOut(BaseModel):
    items: list[RoleGrantOut]
    next_cursor: str | None
