"""The jobs of the webhooks worker (`virtuoz worker webhooks`, queue ``webhooks``).

``webhooks.deliver(delivery_id)`` makes one attempt (``delivery.attempt``): the outbox sends it after the
commit that created the delivery, a finished delivery sends it for the next one in its line, and
``webhooks.dispatch_due`` (scheduled every ``VIRTUOZ_WEBHOOK_DISPATCH_SECONDS``) sends it again for every
pending delivery whose time has come: retries, and messages lost in a crash. Retries are ours, not
Dramatiq's: a failed attempt is a recorded fact with its next time, never an exception.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from jobs.context import current_settings
from jobs.registry import job
from notifications.webhooks import delivery

# Above the longest POST a setting allows (60 s) plus the database work around it.
DELIVER_TIME_LIMIT_MS = 120_000


@job(delivery.DELIVER, queue="webhooks", max_retries=3, time_limit_ms=DELIVER_TIME_LIMIT_MS)
async def deliver(session: AsyncSession, delivery_id: str) -> None:
    """One attempt of delivery ``delivery_id`` (nothing if it is in flight, finished, not due or waiting its turn)."""
    await delivery.attempt(session, uuid.UUID(delivery_id), current_settings())


# The next dispatch supersedes a missed one, and a backlog of old dispatches would only send duplicates.
@job("webhooks.dispatch_due", queue="webhooks", max_retries=0, time_limit_ms=60_000, expires_after_ms=60_000)
async def dispatch_due(session: AsyncSession) -> None:
    """Send ``webhooks.deliver`` for the pending deliveries that are due (a bounded batch)."""
    await delivery.dispatch_due(session, current_settings())
