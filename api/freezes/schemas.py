"""Request and response models of the freeze routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from custody.freezes import WithdrawalFreeze


class LiftFreezeIn(BaseModel):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] = Field(
        description="Why the freeze may go (kept on the freeze and in its audit event).",
        examples=["Shortfall repaid on 2026-12-01"])


class FreezeOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    reason: str = Field(description="Why the user's money was frozen.")
    active: bool = Field(description="True until a compliance officer or an admin lifts it.")
    created_at: datetime
    lifted_at: datetime | None = None
    lifted_by: uuid.UUID | None = None
    lift_reason: str | None = None

    @classmethod
    def of(cls, row: WithdrawalFreeze) -> FreezeOut:
        return cls(id=row.id, user_id=row.user_id, reason=row.reason, active=row.lifted_at is None,
                   created_at=row.created_at, lifted_at=row.lifted_at, lifted_by=row.lifted_by,
                   lift_reason=row.lift_reason)


class FreezeListOut(BaseModel):
    items: list[FreezeOut]
