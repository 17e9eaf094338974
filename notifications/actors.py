"""Email jobs of the notifications worker: ``notifications.send_email`` sends one queued delivery;
``notifications.product_email`` renders and queues a product email (``notifications.emails``)."""

from __future__ import annotations

import uuid

import dramatiq
from dramatiq.middleware import CurrentMessage
from sqlalchemy.ext.asyncio import AsyncSession

from content.email import SEND_EMAIL
from jobs.context import current_settings
from jobs.registry import job
from notifications import delivery
from notifications.emails import PRODUCT_EMAIL
from notifications.product_emails import queue_product_email

# The retry count that matters is VIRTUOZ_SMTP_MAX_RETRIES (≤ 20), read when the job runs; this
# is only Dramatiq's ceiling above it, so Dramatiq never dead-letters a delivery we still retry.
DRAMATIQ_RETRY_CEILING = 21
SMTP_TIME_LIMIT_MS = 180_000  # above the largest SMTP timeout (120 s) plus the render-free send


@job(SEND_EMAIL, queue="notifications", max_retries=DRAMATIQ_RETRY_CEILING, time_limit_ms=SMTP_TIME_LIMIT_MS)
async def send_email(session: AsyncSession, delivery_id: str) -> None:
    """Hand delivery ``delivery_id`` to SMTP; on a temporary failure, record it and retry later."""
    message = CurrentMessage.get_current_message()
    retries_so_far = int(message.options.get("retries", 0)) if message else 0
    attempt = await delivery.attempt_delivery(session, uuid.UUID(delivery_id), current_settings(),
                                              retries_so_far=retries_so_far)
    if attempt.outcome == "retry":
        # The failed attempt (count, last error) is a fact the admin must see while we wait:
        # commit it before asking Dramatiq to run the message again after the backoff.
        await session.commit()
        raise dramatiq.Retry(f"delivery {delivery_id}: retrying in {attempt.retry_in_ms} ms",
                             delay=attempt.retry_in_ms)


@job(PRODUCT_EMAIL, queue="notifications")
async def product_email(session: AsyncSession, delivery_id: str, user_id: str, template: str, ref: str | None) -> None:
    """Render the product email ``template`` about ``ref`` for ``user_id`` and queue its delivery
    (``notifications.emails.product_email`` sends this after the business change commits)."""

    await queue_product_email(session, uuid.UUID(delivery_id), uuid.UUID(user_id), template,
                              None if ref is None else uuid.UUID(ref))
