"""Withdrawal freezes: a user whose withdrawals are frozen cannot request or have one approved.

A freeze is a row with a reason; lifting it stamps ``lifted_at`` (rows are kept as history).
The scanner freezes a user whose credited deposit was reorged away and left a shortfall; compliance
and operators may freeze for their own reasons. ``withdrawals_frozen`` is the one question the
withdrawal service asks.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core import audit
from core.db import Base, IdMixin
from core.time import utcnow


class WithdrawalFreeze(IdMixin, Base):
    __tablename__ = "withdrawal_freezes"
    __table_args__ = (
        Index("ix_withdrawal_freezes_active", "user_id", postgresql_where=text("lifted_at IS NULL")),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    lifted_at: Mapped[datetime | None]


async def withdrawals_frozen(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """True while the user has a freeze that has not been lifted."""
    found = await session.scalar(select(WithdrawalFreeze.id).where(
        WithdrawalFreeze.user_id == user_id, WithdrawalFreeze.lifted_at.is_(None)).limit(1))
    return found is not None


async def freeze(session: AsyncSession, user_id: uuid.UUID, reason: str, *, actor: uuid.UUID | str | None = None
                 ) -> WithdrawalFreeze:
    row = WithdrawalFreeze(user_id=user_id, reason=reason[:200])
    session.add(row)
    await session.flush()
    await audit.append(session, "user", user_id, "withdrawals.frozen", {"freeze_id": str(row.id), "reason": reason},
                       actor=actor)
    return row


async def lift(session: AsyncSession, user_id: uuid.UUID, *, actor: uuid.UUID | str | None = None) -> int:
    """Lift every active freeze of the user; how many were lifted."""
    lifted = await session.scalars(update(WithdrawalFreeze).where(
        WithdrawalFreeze.user_id == user_id, WithdrawalFreeze.lifted_at.is_(None)).values(lifted_at=utcnow())
        .returning(WithdrawalFreeze.id))
    ids = [str(item) for item in lifted]
    if ids:
        await audit.append(session, "user", user_id, "withdrawals.unfrozen", {"freeze_ids": ids}, actor=actor)
    return len(ids)
