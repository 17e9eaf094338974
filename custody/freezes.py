"""Withdrawal freezes: while a user has one, no money of theirs leaves the platform.

A freeze is a row with a reason. The scanner freezes a user whose credited deposit was reorged away
and left a shortfall; the sanctions screening of a withdrawal request and the compliance rules
freeze on a sanctions hit. ``require_not_frozen`` is the one question every exit asks: the
withdrawal request, its approval, the custody worker before it asks the signer, and escrow funding,
release and a dispute resolved to the seller (an escrow pays another user, who could withdraw).

A freeze is lifted one at a time (``lift_freeze``), by a compliance officer or an admin, with a
reason, audited on the user (``withdrawals.unfrozen``); the row stays, stamped with who lifted it,
when and why. Nothing else lifts a freeze.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core import audit
from core.db import Base, IdMixin
from core.errors import Conflict, Forbidden, NotFound
from core.time import utcnow


class WithdrawalFreeze(IdMixin, Base):
    __tablename__ = "withdrawal_freezes"
    __table_args__ = (
        Index("ix_withdrawal_freezes_active", "user_id", postgresql_where=text("lifted_at IS NULL")),
        Index("ix_withdrawal_freezes_user_created", "user_id", "created_at"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    lift_reason: Mapped[str | None] = mapped_column(String(500))


class WithdrawalsFrozen(Forbidden):
    code, message = "withdrawals_frozen", "Money cannot leave this account while it is frozen; contact support."


class FreezeNotFound(NotFound):
    code, message = "freeze_not_found", "No such freeze on this user."


class FreezeAlreadyLifted(Conflict):
    code, message = "freeze_already_lifted", "This freeze has been lifted already."


async def withdrawals_frozen(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """True while the user has a freeze that has not been lifted."""
    found = await session.scalar(select(WithdrawalFreeze.id).where(
        WithdrawalFreeze.user_id == user_id, WithdrawalFreeze.lifted_at.is_(None)).limit(1))
    return found is not None


async def require_not_frozen(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Raise 403 ``withdrawals_frozen`` while the user has an active freeze."""
    if await withdrawals_frozen(session, user_id):
        raise WithdrawalsFrozen()


async def freeze(session: AsyncSession, user_id: uuid.UUID, reason: str, *, actor: uuid.UUID | str | None = None
                 ) -> WithdrawalFreeze:
    row = WithdrawalFreeze(user_id=user_id, reason=reason[:200])
    session.add(row)
    await session.flush()
    await audit.append(session, "user", user_id, "withdrawals.frozen", {"freeze_id": str(row.id), "reason": reason},
                       actor=actor)
    return row


async def of_user(session: AsyncSession, user_id: uuid.UUID) -> list[WithdrawalFreeze]:
    """Every freeze of the user, active or lifted, newest first."""
    return list(await session.scalars(select(WithdrawalFreeze).where(WithdrawalFreeze.user_id == user_id)
                                      .order_by(WithdrawalFreeze.created_at.desc(), WithdrawalFreeze.id.desc())))


async def lift_freeze(session: AsyncSession, user_id: uuid.UUID, freeze_id: uuid.UUID, reason: str, *,
                      actor: uuid.UUID) -> WithdrawalFreeze:
    """Lift one freeze (the row locked, so two officers at once get one 200 and one 409)."""
    row = await session.scalar(select(WithdrawalFreeze).where(
        WithdrawalFreeze.id == freeze_id, WithdrawalFreeze.user_id == user_id).with_for_update())
    if row is None:
        raise FreezeNotFound(details={"freeze_id": str(freeze_id)})
    if row.lifted_at is not None:
        raise FreezeAlreadyLifted(details={"freeze_id": str(freeze_id), "lifted_at": row.lifted_at.isoformat()})
    row.lifted_at, row.lifted_by, row.lift_reason = utcnow(), actor, reason
    await session.flush()
    await audit.append(session, "user", user_id, "withdrawals.unfrozen",
                       {"freeze_id": str(row.id), "reason": reason, "frozen_for": row.reason}, actor=actor)
    return row
