"""The webhooks outbox: an audit event a user may hear of becomes a webhook event and its deliveries,
in the transaction that appends it.

``core.audit`` calls ``record`` (installed by ``cli.registry``) after every appended event. The
domains that own the resources are above this layer, so they register them here at process start
(``install_resource``, from ``cli.webhook_resources``): which of their audit events are announced, to
whom, and with what data — the resource as the API shows it to its owner, so a receiver gets the
same document a ``GET`` would answer.

Nothing is written for an event nobody subscribed to: no event row, no delivery, no message. When
someone did, one ``WebhookEvent`` and one pending ``WebhookDelivery`` per endpoint are written and
``webhooks.deliver`` is sent for each after the commit; a rolled-back change therefore announces
nothing, and a message lost after the commit is found again by the worker's sweep of due rows.

Only what the owner may see is announced: internal steps (sanctions hits, signer alerts, internal
notes, compliance review) are never registered, because a webhook about them would tip the customer off.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core.time import utcnow
from jobs.registry import BROKER_INFO_KEY
from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

DELIVER = jobs.name("webhooks.deliver")

ALL_EVENTS = "*"
TEST_EVENT = "webhook.test"  # sent on request to one endpoint (POST /webhooks/{id}/test); never subscribed to

# The public contract: every event type an endpoint may subscribe to, and what it announces. Each
# event's `data` is the resource as the API shows it to its owner. ``install_resource`` refuses a type
# missing here, so the documentation (the webhooks routes list these) cannot fall behind the code.
EVENT_TYPES: dict[str, str] = {
    "deposit.seen": "a transfer to one of your deposit addresses is on chain (or back on it after a reorg); "
                    "data: the deposit, as GET /wallet/deposits lists it",
    "deposit.credited": "the deposit has its confirmations: its amount is available",
    "deposit.reorged": "the deposit's block left the chain; a credit made is reversed",
    "deposit.orphaned": "the deposit's transaction, mined again, moves something else; a credit made is reversed",
    "deposit.reversed": "the deposit's credit was taken back",
    "withdrawal.requested": "your withdrawal is requested, its amount and fee held; "
                            "data: the withdrawal, as GET /platform/crypto/withdrawals/{id} shows it",
    "withdrawal.awaiting_travel_rule": "it waits for the beneficiary's VASP to accept its Travel Rule transfer",
    "withdrawal.approved": "it is approved and goes to signing",
    "withdrawal.broadcast": "its transaction is broadcast (tx_hash)",
    "withdrawal.confirmed": "its transaction is mined and confirmed: final",
    "withdrawal.failed": "it failed (failure_reason); the hold is released: final",
    "withdrawal.rolled_back": "it was rolled back before broadcast; the hold is released: final",
    "escrow.created": "an escrow you are a party to was created; "
                      "data: the contract, as GET /escrow/contracts/{id} shows it (to buyer and seller alike)",
    "escrow.funded": "the buyer funded it: the amount is held",
    "escrow.released": "the buyer released it to the seller",
    "escrow.cancelled": "it was cancelled before funding",
    "escrow.disputed": "a party opened a dispute",
    "escrow.dispute_rejected": "the dispute was rejected: the escrow is funded again",
    "escrow.resolved": "the dispute was resolved (release, refund or split)",
    "kyc.approved": "your identity verification is approved (level); data: your KYC case, as POST /me/kyc answers it",
    "kyc.rejected": "your identity verification is rejected",
    "kyc.needs_info": "more information is needed (reason): submit again",
    "ticket.reply": "support replied on your ticket; "
                    "data: the ticket and its public messages, as GET /helpdesk/tickets/{id} shows it to you",
    "ticket.state_changed": "your ticket moved (in_progress, pending_customer, resolved, closed, or reopened)",
}

# (owner user ids, the resource as the API shows it to them), or None when it no longer exists.
Loaded = tuple[list[uuid.UUID], dict[str, Any]]
Load = Callable[[AsyncSession, str], Awaitable[Loaded | None]]
# The webhook event type an audit event (type, data) is announced as, or None when it is not announced.
Announce = Callable[[str, dict[str, Any]], str | None]


@dataclass(frozen=True)
class Resource:
    """An audit aggregate whose changes users may subscribe to."""

    resource_type: str  # the audit aggregate type
    events: frozenset[str]  # the webhook event types it announces
    load: Load
    announce: Announce


_resources: dict[str, Resource] = {}

# session.info: (the transaction, {event type: whether any enabled endpoint subscribes to it}).
LISTENERS = "virtuoz.webhooks.listeners"


def install_resource(resource_type: str, events: tuple[str, ...], load: Load, *,
                     announce: Announce | None = None) -> None:
    """Announce the audit events ``events`` of the aggregate ``resource_type`` to its owners' endpoints.

    By default an audit event is announced under its own type when it is one of ``events``;
    ``announce`` decides otherwise (a reply counts only when staff wrote it, and is announced as
    ``ticket.reply``): it must return one of ``events`` or None. Installing again replaces.
    """
    undocumented = sorted(set(events) - set(EVENT_TYPES))
    if undocumented:
        raise ValueError(f"webhook event types {undocumented} are not in outbox.EVENT_TYPES: document them there")
    wanted = frozenset(events)

    def same_type(type: str, data: dict[str, Any]) -> str | None:
        return type if type in wanted else None

    _resources[resource_type] = Resource(resource_type, wanted, load, announce or same_type)


def event_types() -> list[str]:
    """Every event type an endpoint may subscribe to (besides ``*``), sorted."""
    return sorted({event for resource in _resources.values() for event in resource.events})


async def record(session: AsyncSession, aggregate_type: str, aggregate_id: str, type: str,
                 data: dict[str, Any]) -> None:
    """The ``core.audit`` observer: queue the deliveries of this audit event, if anyone subscribed."""
    resource = _resources.get(aggregate_type)
    if resource is None:
        return
    event_type = resource.announce(type, data)
    if event_type is None or event_type not in resource.events:
        return
    if not await _anyone_listens(session, event_type):
        return
    loaded = await resource.load(session, aggregate_id)
    if loaded is None:
        return
    owners, payload = loaded
    if not owners:
        return
    endpoints = list(await session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id.in_(owners), WebhookEndpoint.enabled.is_(True),
               WebhookEndpoint.events.op("&&")([event_type, ALL_EVENTS]))  # overlaps: this type or "*"
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)))
    if not endpoints:
        return
    event = await new_event(session, event_type, resource_type=aggregate_type, resource_id=aggregate_id, data=payload)
    for endpoint in endpoints:
        await queue_delivery(session, event, endpoint)


async def _anyone_listens(session: AsyncSession, event_type: str) -> bool:
    """Whether any enabled endpoint subscribes to ``event_type``: asked once per transaction and type.

    A scanner's catch-up announces hundreds of deposits in one transaction; while nobody listens to
    them, loading each one as the API shows it would be the most of what recording it costs.
    """
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(LISTENERS)
    if cached is None or cached[0] is not transaction:
        cached = (transaction, {})
        session.info[LISTENERS] = cached
    known: dict[str, bool] = cached[1]
    if event_type not in known:
        known[event_type] = bool(await session.scalar(select(exists().where(
            WebhookEndpoint.enabled.is_(True), WebhookEndpoint.events.op("&&")([event_type, ALL_EVENTS])))))
    return known[event_type]


def subscriptions_changed(session: AsyncSession) -> None:
    """An endpoint was created or changed in this transaction: what was known of the listeners is not."""
    session.info.pop(LISTENERS, None)


async def new_event(session: AsyncSession, type: str, *, resource_type: str, resource_id: str,
                    data: dict[str, Any]) -> WebhookEvent:
    event = WebhookEvent(id=uuid.uuid4(), type=type, resource_type=resource_type, resource_id=resource_id,
                         data=data, created_at=utcnow())
    session.add(event)
    # Its deliveries reference it: the row goes in before theirs, whatever order the flush would pick.
    await session.flush()
    return event


async def queue_delivery(session: AsyncSession, event: WebhookEvent, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A pending delivery of ``event`` to ``endpoint``, due now; the worker is told after the commit."""
    now = utcnow()
    delivery = WebhookDelivery(id=uuid.uuid4(), event_id=event.id, endpoint_id=endpoint.id,
                               resource_type=event.resource_type, resource_id=event.resource_id, state="pending",
                               attempts=0, next_attempt_at=now, created_at=now)
    session.add(delivery)
    await session.flush()
    # A process that sends no jobs (a CLI command, a seed) leaves the row to the scheduler's dispatch
    # of due deliveries, which also finds those whose message was lost.
    if BROKER_INFO_KEY in session.info:
        jobs.send_after_commit(session, DELIVER, str(delivery.id))
    return delivery
