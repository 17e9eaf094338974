"""A user's webhook endpoints: create, change, rotate the secret, read their deliveries, send again.

An endpoint is an absolute URL — https, unless ``VIRTUOZ_WEBHOOK_ALLOW_PRIVATE`` admits plain http
and private addresses (devnet and test) — and the event types it wants (``outbox.event_types()``, or
``*``). Its signing secret is shown twice only: in the answer that creates it and in the answer
that rotates it; stored sealed (the worker needs it back to sign), never in an audit event. After a
rotation the previous secret keeps signing for ``VIRTUOZ_WEBHOOK_SECRET_ROTATION_HOURS``
(``secrets_in_force``), so a receiver can switch without refusing a delivery.

Changes of one user's endpoints are serialized by a transaction-scoped lock per user, so two creates
at once cannot both pass the cap. Each change is an event of the ``webhook_endpoint`` aggregate in the
same transaction. Someone else's endpoint or delivery does not exist, as far as the caller can tell (404).
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.db import advisory_lock
from core.errors import Conflict, InvalidInput, NotFound
from core.pagination import encode_cursor, keyset_before, next_page
from core.settings import Settings
from core.time import rfc3339, utcnow
from notifications.webhooks import outbox, signing, ssrf
from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

AGGREGATE = "webhook_endpoint"
DISABLED_BY_OWNER = "disabled_by_owner"
_UNSET: Any = object()


class WebhookNotFound(NotFound):
    code, message = "webhook_not_found", "No such webhook endpoint."


class WebhookDeliveryNotFound(NotFound):
    code, message = "webhook_delivery_not_found", "No such delivery of this webhook endpoint."


class WebhookLimitReached(Conflict):
    code, message = "webhook_limit_reached", "You have as many webhook endpoints as allowed: delete one first."


class WebhookDisabled(Conflict):
    code, message = "webhook_disabled", "This webhook endpoint is disabled: enable it first (PATCH enabled=true)."


class InvalidWebhookUrl(InvalidInput):
    code, message = "invalid_url", "A webhook URL must be an absolute https URL."


class UnknownEventType(InvalidInput):
    code, message = "unknown_event_type", "An event type is not one this platform sends."


@dataclass(frozen=True)
class Created:
    """A new endpoint and its secret: the one answer that shows it (with the rotation's)."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class EndpointPage:
    items: list[WebhookEndpoint]
    next_cursor: str | None


@dataclass(frozen=True)
class DeliveryItem:
    delivery: WebhookDelivery
    event_type: str


@dataclass(frozen=True)
class DeliveryPage:
    items: list[DeliveryItem]
    next_cursor: str | None


# --- rules --------------------------------------------------------------------------------------

def checked_url(settings: Settings, url: str) -> str:
    """The URL if an endpoint may have it; else 422 ``invalid_url`` naming the field. Only its form and a
    literal address are judged here: a name is resolved, and its addresses checked, at every send."""
    allow_private = settings.webhook_private_allowed
    url = url.strip()
    try:
        parsed = ssrf.check_url(url, allow_private=allow_private)
    except ssrf.RefusedDestination as refused:
        raise InvalidWebhookUrl(details={"field": "url", "reason": str(refused)}) from None
    try:
        literal = ipaddress.ip_address((parsed.raw_host or "").strip("[]"))
    except ValueError:
        return url
    reason = ssrf.refusal(literal, allow_private=allow_private)
    if reason is not None:
        raise InvalidWebhookUrl(f"A webhook URL may not point at a {reason} address.",
                                details={"field": "url", "reason": f"{reason} address"})
    return url


def checked_events(events: list[str]) -> list[str]:
    """The subscription, sorted and without repeats (``["*"]`` when it names ``*``); 422
    ``unknown_event_type`` naming the field and the types it does not know."""
    wanted = set(events)
    if outbox.ALL_EVENTS in wanted:
        return [outbox.ALL_EVENTS]
    unknown = sorted(wanted - set(outbox.event_types()))
    if unknown:
        raise UnknownEventType(details={"field": "events", "unknown": unknown, "known": outbox.event_types()})
    if not wanted:
        raise UnknownEventType("Subscribe to at least one event type, or to \"*\".", details={"field": "events"})
    return sorted(wanted)


def audit_url(url: str) -> str:
    """The URL as audit events keep it: without its query and fragment, where integrators put tokens."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl() + ("?…" if parts.query else "")


def secrets_in_force(settings: Settings, endpoint: WebhookEndpoint) -> list[str]:
    """The secrets a delivery is signed with now: the current one, then the previous one until it expires."""
    platform_secret = settings.secret_key.get_secret_value()
    found = [signing.unseal_secret(platform_secret, endpoint.secret_sealed)]
    if (endpoint.previous_secret_sealed is not None and endpoint.previous_secret_expires_at is not None
            and endpoint.previous_secret_expires_at > utcnow()):
        found.append(signing.unseal_secret(platform_secret, endpoint.previous_secret_sealed))
    return found


# --- reading ------------------------------------------------------------------------------------

async def get(session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID, *,
              lock: bool = False) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.user_id == user_id)
    endpoint = await session.scalar(query.with_for_update() if lock else query)
    if endpoint is None:
        raise WebhookNotFound()
    return endpoint


async def page(session: AsyncSession, user_id: uuid.UUID, *, limit: int = 50,
               cursor: str | None = None) -> EndpointPage:
    """The user's endpoints, newest first."""
    query = (select(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id)
             .order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc()).limit(limit + 1))
    if cursor:
        query = query.where(keyset_before(cursor, WebhookEndpoint.created_at, WebhookEndpoint.id))
    return EndpointPage(*next_page(list(await session.scalars(query)), limit))


async def deliveries(session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID, *, state: str | None = None,
                     limit: int = 50, cursor: str | None = None) -> DeliveryPage:
    """The endpoint's deliveries, newest first, with their event's type."""
    endpoint = await get(session, user_id, endpoint_id)
    query = (select(WebhookDelivery, WebhookEvent.type)
             .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
             .where(WebhookDelivery.endpoint_id == endpoint.id)
             .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit + 1))
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    if cursor:
        query = query.where(keyset_before(cursor, WebhookDelivery.created_at, WebhookDelivery.id))
    rows = [DeliveryItem(delivery, event_type) for delivery, event_type in await session.execute(query)]
    items = rows[:limit]
    last = items[-1].delivery if len(rows) > limit else None
    return DeliveryPage(items, None if last is None else encode_cursor(last.created_at.isoformat(), last.id))


# --- changing -----------------------------------------------------------------------------------

async def _lock_endpoints(session: AsyncSession, user_id: uuid.UUID) -> None:
    await advisory_lock(session, f"webhook_endpoints:{user_id}")


async def _record(session: AsyncSession, endpoint: WebhookEndpoint, event: str, data: dict[str, Any],
                  actor: uuid.UUID) -> None:
    await audit.append(session, AGGREGATE, endpoint.id, event, data, actor=actor)


def _view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What audit events say of an endpoint: never its secret, nor its URL's query."""
    return {"url": audit_url(endpoint.url), "events": list(endpoint.events), "description": endpoint.description,
            "enabled": endpoint.enabled}


async def create(session: AsyncSession, settings: Settings, user_id: uuid.UUID, *, url: str, events: list[str],
                 description: str | None = None) -> Created:
    """422 for a URL or event type refused, 409 ``webhook_limit_reached`` past the cap; the new endpoint
    and its secret."""
    url, events = checked_url(settings, url), checked_events(events)
    await _lock_endpoints(session, user_id)
    count = await session.scalar(select(func.count()).select_from(WebhookEndpoint)
                                 .where(WebhookEndpoint.user_id == user_id))
    if (count or 0) >= settings.webhook_max_per_user:
        raise WebhookLimitReached(details={"limit": settings.webhook_max_per_user})
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(id=uuid.uuid4(), user_id=user_id, url=url, events=events, description=description,
                               enabled=True, secret_sealed=signing.seal_secret(settings.secret_key.get_secret_value(),
                                                                                secret))
    session.add(endpoint)
    await session.flush()
    outbox.subscriptions_changed(session)
    await _record(session, endpoint, "webhook.created", _view(endpoint), user_id)
    return Created(endpoint, secret)


async def update(session: AsyncSession, settings: Settings, user_id: uuid.UUID, endpoint_id: uuid.UUID, *,
                 url: str = _UNSET, events: list[str] = _UNSET, description: str | None = _UNSET,
                 enabled: bool = _UNSET) -> WebhookEndpoint:
    """Change what is given. Re-enabling (or a new URL) starts the failure clock again: the
    worker's ``failing_since`` and a ``disabled_reason`` are cleared."""
    checked: dict[str, Any] = {}
    if url is not _UNSET:
        checked["url"] = checked_url(settings, url)
    if events is not _UNSET:
        checked["events"] = checked_events(events)
    if description is not _UNSET:
        checked["description"] = description
    if enabled is not _UNSET:
        checked["enabled"] = enabled
    await _lock_endpoints(session, user_id)
    endpoint = await get(session, user_id, endpoint_id, lock=True)
    changes = {name: value for name, value in checked.items() if getattr(endpoint, name) != value}
    if not changes:
        return endpoint
    for name, value in changes.items():
        setattr(endpoint, name, value)
    if changes.get("enabled") is True or "url" in changes:
        endpoint.failing_since = None
    if changes.get("enabled") is True:
        endpoint.disabled_reason = None
    elif changes.get("enabled") is False:
        endpoint.disabled_reason = DISABLED_BY_OWNER
    await session.flush()
    outbox.subscriptions_changed(session)
    recorded = {name: audit_url(value) if name == "url" else value for name, value in changes.items()}
    await _record(session, endpoint, "webhook.updated", {"changes": recorded}, user_id)
    return endpoint


async def remove(session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    """Delete the endpoint; its deliveries go with it (pending ones are never sent)."""
    await _lock_endpoints(session, user_id)
    endpoint = await get(session, user_id, endpoint_id, lock=True)
    await _record(session, endpoint, "webhook.deleted", _view(endpoint), user_id)
    await session.delete(endpoint)  # the database deletes its deliveries (ON DELETE CASCADE)
    await session.flush()


async def rotate_secret(session: AsyncSession, settings: Settings, user_id: uuid.UUID,
                        endpoint_id: uuid.UUID) -> Created:
    """A new secret, in force at once; the one it replaces still signs until ``previous_secret_expires_at``
    (none with a rotation window of 0). A secret rotated out before is dropped."""
    await _lock_endpoints(session, user_id)
    endpoint = await get(session, user_id, endpoint_id, lock=True)
    secret = signing.new_secret()
    overlap = timedelta(hours=settings.webhook_secret_rotation_hours)
    if overlap:
        endpoint.previous_secret_sealed = endpoint.secret_sealed
        endpoint.previous_secret_expires_at = utcnow() + overlap
    else:
        endpoint.previous_secret_sealed = endpoint.previous_secret_expires_at = None
    endpoint.secret_sealed = signing.seal_secret(settings.secret_key.get_secret_value(), secret)
    await session.flush()
    expires = endpoint.previous_secret_expires_at
    await _record(session, endpoint, "webhook.secret_rotated",
                  {"previous_secret_expires_at": None if expires is None else rfc3339(expires)}, user_id)
    return Created(endpoint, secret)


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise WebhookDisabled(details={"disabled_reason": endpoint.disabled_reason})


async def redeliver(session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID,
                    delivery_id: uuid.UUID) -> DeliveryItem:
    """A new pending delivery of the same event (same event id: a receiver deduplicating on it sees a
    repeat) to this endpoint; the original keeps its history."""
    endpoint = await get(session, user_id, endpoint_id)
    found = (await session.execute(
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id))).first()
    if found is None:
        raise WebhookDeliveryNotFound()
    original, event = found
    _require_enabled(endpoint)
    delivery = await outbox.queue_delivery(session, event, endpoint)
    await _record(session, endpoint, "webhook.redelivery_requested",
                  {"delivery_id": str(delivery.id), "of_delivery_id": str(original.id), "event_id": str(event.id),
                   "event_type": event.type}, user_id)
    return DeliveryItem(delivery, event.type)


async def send_test(session: AsyncSession, user_id: uuid.UUID, endpoint_id: uuid.UUID) -> DeliveryItem:
    """A ``webhook.test`` event for this endpoint only, whatever it subscribes to."""
    endpoint = await get(session, user_id, endpoint_id)
    _require_enabled(endpoint)
    event = await outbox.new_event(session, outbox.TEST_EVENT, resource_type=AGGREGATE, resource_id=str(endpoint.id),
                                   data={"webhook_id": str(endpoint.id), "test": True})
    delivery = await outbox.queue_delivery(session, event, endpoint)
    await _record(session, endpoint, "webhook.test_requested",
                  {"delivery_id": str(delivery.id), "event_id": str(event.id)}, user_id)
    return DeliveryItem(delivery, event.type)
