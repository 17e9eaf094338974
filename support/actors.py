"""Helpdesk jobs. ``support.mark_breaches`` runs on the notifications worker, enqueued by the
scheduler every ``VIRTUOZ_HELPDESK_BREACH_CHECK_SECONDS``."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from jobs.registry import job
from support import service

# A check that waited this long is superseded by the next scheduled one: skip it, don't pile up.
BREACH_CHECK_EXPIRES_AFTER_MS = 10 * 60_000


MARK_BREACHES = jobs.name("support.mark_breaches")


@job(MARK_BREACHES, queue="notifications", max_retries=3, expires_after_ms=BREACH_CHECK_EXPIRES_AFTER_MS)
async def mark_breaches(session: AsyncSession) -> None:
    """Mark overdue running tickets breached (idempotent); a full batch sends the next one after commit."""
    # Every ticket selected gets at least one mark, so a full batch marks at least BREACH_BATCH;
    # the converse may send one needless follow-up, which finds nothing to do.
    if await service.mark_breaches(session) >= service.BREACH_BATCH:
        jobs.send_after_commit(session, MARK_BREACHES)
