"""Travel Rule jobs of the compliance worker (queue ``compliance``): deliver, confirm, expire."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.travel_rule import outbound
from compliance.travel_rule.service import SEND_TRAVEL_RULE
from core.time import utcnow
from jobs.context import current_settings
from jobs.registry import job


@job(SEND_TRAVEL_RULE, queue="compliance")
async def send_travel_rule(session: AsyncSession, transfer_id: str) -> None:
    """Deliver one outbound Travel Rule transfer to the beneficiary's VASP (TRP), once it is asked to."""
    await outbound.deliver(session, uuid.UUID(transfer_id), current_settings())


@job("compliance.confirm_travel_rule", queue="compliance")
async def confirm_travel_rule(session: AsyncSession, withdrawal_id: str) -> None:
    """Tell the beneficiary's VASP the txid of a withdrawal it accepted (or that it was canceled)."""
    await outbound.confirm(session, uuid.UUID(withdrawal_id), current_settings())


@job("compliance.expire_travel_rule", queue="compliance", max_retries=3)
async def expire_travel_rule(session: AsyncSession, as_of: str | None = None) -> None:
    """Expire the Travel Rule transfers past their deadline as of ``as_of`` (default: now). A test
    passes the moment it pretends it is, rather than waiting three days. A withdrawal waiting on an
    expired transfer fails."""
    moment = datetime.fromisoformat(as_of) if as_of else utcnow()
    await outbound.expire(session, moment)
