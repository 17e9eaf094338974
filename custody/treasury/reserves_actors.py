"""The scheduled proof of reserves (``treasury.build_reserves``), on the ``treasury`` queue."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.time import utcnow
from custody.treasury import reserves
from jobs.context import current_settings
from jobs.registry import job

# Reading thousands of addresses on each chain and hashing every customer's leaf outlasts the
# default minute on a large platform.
TIME_LIMIT_MS = 15 * 60_000


def daily_slot(moment: datetime) -> str:
    return f"daily:{moment.astimezone(UTC).date().isoformat()}"


@job("treasury.build_reserves", queue="treasury", max_retries=5, time_limit_ms=TIME_LIMIT_MS)
async def build_reserves(session: AsyncSession, as_of: str | None = None) -> None:
    """Publish the day's epoch (``as_of``'s day, default today, UTC), once: the day is the epoch's
    unique slot, so a message delivered twice, two schedulers or a restart build one epoch. A test
    passes the moment it pretends it is."""
    moment = datetime.fromisoformat(as_of) if as_of else utcnow()
    try:
        await reserves.build_epoch(session, current_settings(), actor=reserves.JOB_ACTOR, slot=daily_slot(moment))
    except reserves.ReservesRefused:
        # Already alerted (log and metric) and nothing written: retrying would refuse the same books
        # again; the next run (or an admin's POST) tries once they are corrected.
        return
