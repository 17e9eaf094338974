"""Delivering one queued email: the body of the ``notifications.send_email`` job.

A failed attempt is recorded on the row (``attempts``, ``last_error``) and retried with
exponential backoff from ``smtp_retry_backoff_ms``; after ``smtp_max_retries`` retries, or at once
on a permanent refusal (5xx), the delivery is ``failed`` for good, with its audit event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from content.models import EmailDelivery
from core import audit
from core.settings import Settings
from core.time import utcnow
from notifications import mailer

AGGREGATE = "email_delivery"
MAX_BACKOFF_MS = 3_600_000
Outcome = Literal["sent", "failed", "retry", "skipped"]


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    retry_in_ms: int | None = None


def retry_delay_ms(settings: Settings, retries_so_far: int) -> int:
    return min(settings.smtp_retry_backoff_ms * 2 ** min(retries_so_far, 30), MAX_BACKOFF_MS)


async def attempt_delivery(session: AsyncSession, delivery_id: uuid.UUID, settings: Settings, *,
                           retries_so_far: int) -> Attempt:
    """One SMTP attempt for a queued delivery; a delivery already sent or failed is left alone
    (a redelivered message changes nothing). The row stays locked during the attempt, so two
    workers never send the same delivery at once."""
    delivery = await session.get(EmailDelivery, delivery_id, with_for_update=True, populate_existing=True)
    if delivery is None or delivery.state != "queued":
        return Attempt("skipped")
    outgoing = mailer.Outgoing(str(delivery.id), delivery.recipient, delivery.subject, delivery.html, delivery.text)
    delivery.attempts += 1
    try:
        await mailer.send(settings, outgoing)
    except mailer.SendFailed as error:
        delivery.last_error = str(error)[:1000]
        if error.permanent or retries_so_far >= settings.smtp_max_retries:
            delivery.state = "failed"
            await audit.append(session, AGGREGATE, delivery.id, "email.failed", {
                "attempts": delivery.attempts, "error": delivery.last_error, "permanent": error.permanent,
            })
            return Attempt("failed")
        await session.flush()
        return Attempt("retry", retry_delay_ms(settings, retries_so_far))
    delivery.state = "sent"
    delivery.sent_at = utcnow()
    await audit.append(session, AGGREGATE, delivery.id, "email.sent", {"attempts": delivery.attempts})
    return Attempt("sent")
