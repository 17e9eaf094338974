"""One attempt of one webhook delivery, and what follows from it: retry, give up, disable, move on.

``attempt`` is the body of the ``webhooks.deliver`` job. It locks the delivery row (``FOR UPDATE SKIP
LOCKED``) and holds it through the POST, so one delivery is never in flight twice: a second message
for it, from the scheduler's dispatch or a redelivery, skips it. A crash mid-POST rolls the attempt
back; the delivery stays pending and due, and ``dispatch_due`` sends it again (at least once: a
receiver dedupes on ``VirtuOZ-Event-Id``).

Order: deliveries of one endpoint about one resource go out in creation order (``position``). A
delivery with an earlier one still pending waits, untried; whoever finishes the earlier one (delivered
or failed for good) sends the next.

Retries: exponential backoff with full jitter, a random delay in ``[0, min(cap, base · 2^(n-1))]``
after the n-th failure, until the window after the event's creation has passed: then ``failed``.
An endpoint whose attempts have failed for ``webhook_disable_after`` without a success between is
disabled and its owner emailed.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

import jobs
from core import audit
from core.settings import Settings
from core.time import rfc3339, utcnow
from notifications.emails import product_email
from notifications.webhooks import outbox, sender
from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from notifications.webhooks.service import secrets_in_force
from notifications.webhooks.signing import signature_header

log = logging.getLogger(__name__)

DELIVER = jobs.name("webhooks.deliver")
USER_AGENT = "VirtuOZ-Webhooks/1"
ACTOR = "webhooks"
DISABLED_EMAIL = "webhook.disabled"
ENDPOINT_AGGREGATE = "webhook_endpoint"


def event_body(event: WebhookEvent) -> bytes:
    """The bytes sent and signed: canonical JSON (sorted keys, no spaces), the same on every retry."""
    document = {"id": str(event.id), "type": event.type, "created_at": rfc3339(event.created_at), "data": event.data}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def backoff(failures: int, base: timedelta, cap: timedelta, rng: random.Random | None = None) -> timedelta:
    """The wait after the ``failures``-th failed attempt: full jitter over the capped exponential."""
    ceiling = min(cap.total_seconds(), base.total_seconds() * 2.0 ** min(max(failures, 1) - 1, 62))
    return timedelta(seconds=(rng or random).uniform(0.0, ceiling))


def headers(settings: Settings, endpoint: WebhookEndpoint, event: WebhookEvent, body: bytes,
            timestamp: int) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "VirtuOZ-Event-Id": str(event.id),
        "VirtuOZ-Timestamp": str(timestamp),
        "VirtuOZ-Signature": signature_header(secrets_in_force(settings, endpoint), timestamp, body),
    }


async def attempt(session: AsyncSession, delivery_id: uuid.UUID, settings: Settings) -> str:
    """Try delivery ``delivery_id`` once if it is pending, due and first in its line; what happened:
    ``delivered``, ``retry``, ``failed``, or why nothing was sent (``busy``, ``finished``, ``not_due``,
    ``waiting``)."""
    delivery = await session.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                    .with_for_update(skip_locked=True))
    if delivery is None:
        return "busy"  # in flight in another worker (or no such delivery)
    if delivery.state != "pending":
        return "finished"
    if delivery.next_attempt_at > utcnow():
        return "not_due"
    if await _earlier_pending(session, delivery):
        return "waiting"
    endpoint = await session.get_one(WebhookEndpoint, delivery.endpoint_id)
    if not endpoint.enabled:
        await _give_up(session, delivery, utcnow(), "endpoint disabled")
        return "failed"
    event = await session.get_one(WebhookEvent, delivery.event_id)
    body = event_body(event)
    answer = await sender.post(endpoint.url, body, headers(settings, endpoint, event, body, int(time.time())),
                               timeout_seconds=settings.webhook_timeout_seconds,
                               allow_private=settings.webhook_private_allowed)
    now = utcnow()
    _record(delivery, answer, now)
    if answer.delivered:
        delivery.state, delivery.finished_at = "delivered", now
        await session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id,
                                                            WebhookEndpoint.failing_since.is_not(None))
                              .values(failing_since=None).execution_options(synchronize_session=False))
        await _send_next(session, delivery)
        return "delivered"
    log.info("webhook delivery %s: attempt %d failed: %s", delivery.id, delivery.attempts, answer.error,
             extra={"delivery_id": str(delivery.id), "endpoint_id": str(endpoint.id)})
    if await _note_failure(session, endpoint, now, settings):
        await _give_up(session, delivery, now, "endpoint disabled")
        return "failed"
    deadline = delivery.created_at + settings.webhook_retry_window
    if now >= deadline:
        await _give_up(session, delivery, now, None)
        return "failed"
    wait = backoff(delivery.attempts, settings.webhook_retry_base, settings.webhook_retry_max)
    delivery.next_attempt_at = min(now + wait, deadline)
    return "retry"


def _record(delivery: WebhookDelivery, answer: sender.Answer, now: datetime) -> None:
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.last_status_code = answer.status
    delivery.last_latency_ms = answer.latency_ms
    delivery.last_error = answer.error
    delivery.response_excerpt = answer.excerpt


async def _earlier_pending(session: AsyncSession, delivery: WebhookDelivery) -> bool:
    earlier = aliased(WebhookDelivery)
    return bool(await session.scalar(select(exists().where(
        earlier.endpoint_id == delivery.endpoint_id, earlier.resource_type == delivery.resource_type,
        earlier.resource_id == delivery.resource_id, earlier.state == "pending",
        earlier.position < delivery.position))))


async def _send_next(session: AsyncSession, finished: WebhookDelivery) -> None:
    """The next delivery in ``finished``'s line (same endpoint and resource) goes once this one is final."""
    following = await session.scalar(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.endpoint_id == finished.endpoint_id,
               WebhookDelivery.resource_type == finished.resource_type,
               WebhookDelivery.resource_id == finished.resource_id, WebhookDelivery.state == "pending",
               WebhookDelivery.position > finished.position)
        .order_by(WebhookDelivery.position).limit(1))
    if following is not None:
        jobs.send_after_commit(session, DELIVER, str(following))


async def _give_up(session: AsyncSession, delivery: WebhookDelivery, now: datetime, reason: str | None) -> None:
    delivery.state, delivery.finished_at = "failed", now
    if reason is not None:
        delivery.last_error = reason if delivery.last_error is None else f"{reason}; last: {delivery.last_error}"[:300]
    await audit.append(session, "webhook_delivery", delivery.id, "webhook_delivery.failed", {
        "event_id": str(delivery.event_id), "endpoint_id": str(delivery.endpoint_id), "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code, "last_error": delivery.last_error}, actor=ACTOR)
    await _send_next(session, delivery)


async def _note_failure(session: AsyncSession, endpoint: WebhookEndpoint, now: datetime, settings: Settings) -> bool:
    """Mark the endpoint failing (from the first failure since its last success) and disable it once it has
    failed long enough; whether this attempt disabled it. Statements, not the loaded row: deliveries of
    other resources of the endpoint finish concurrently, and exactly one of them may disable it."""
    await session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id,
                                                        WebhookEndpoint.failing_since.is_(None))
                          .values(failing_since=now).execution_options(synchronize_session=False))
    disabled = (await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint.id, WebhookEndpoint.enabled.is_(True),
               WebhookEndpoint.failing_since <= now - settings.webhook_disable_after)
        .values(enabled=False, disabled_reason="failing")
        .returning(WebhookEndpoint.user_id, WebhookEndpoint.failing_since)
        .execution_options(synchronize_session=False))).one_or_none()
    if disabled is None:
        return False
    user_id, failing_since = disabled
    outbox.subscriptions_changed(session)
    # Shaped as the owner's own changes are (``service.update``), with the failure it answers.
    data: dict[str, Any] = {"changes": {"enabled": False, "disabled_reason": "failing"},
                            "failing_since": rfc3339(failing_since)}
    await audit.append(session, ENDPOINT_AGGREGATE, endpoint.id, "webhook.disabled", data, actor=ACTOR)
    product_email(session, user_id, DISABLED_EMAIL, endpoint.id)
    log.warning("webhook endpoint %s disabled: failing since %s", endpoint.id, rfc3339(failing_since),
                extra={"endpoint_id": str(endpoint.id)})
    return True


async def due_deliveries(session: AsyncSession, limit: int) -> list[uuid.UUID]:
    """Pending deliveries whose time has come and that are first in their line, oldest due first; the
    ones in flight (locked) are skipped."""
    earlier = aliased(WebhookDelivery)
    rows = await session.scalars(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= utcnow(),
               ~exists().where(earlier.endpoint_id == WebhookDelivery.endpoint_id,
                               earlier.resource_type == WebhookDelivery.resource_type,
                               earlier.resource_id == WebhookDelivery.resource_id, earlier.state == "pending",
                               earlier.position < WebhookDelivery.position))
        .order_by(WebhookDelivery.next_attempt_at).limit(limit)
        .with_for_update(skip_locked=True))
    return list(rows)


async def dispatch_due(session: AsyncSession, settings: Settings) -> int:
    """Send ``webhooks.deliver`` for each due delivery (retries, messages lost in a crash): how many."""
    due = await due_deliveries(session, settings.webhook_dispatch_batch)
    for delivery_id in due:
        jobs.send_after_commit(session, DELIVER, str(delivery_id))
    return len(due)
