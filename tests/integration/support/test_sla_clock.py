"""The SLA clock on real tickets: the preview, pauses, and the breach job (in-process and on a worker)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import select

from support import actors, service, sla
from support.models import Ticket, TicketSlaPause
from core.db import unit_of_work
from core.time import rfc3339, utcnow
from jobs.broker import close_broker, create_broker
from jobs.registry import registered_jobs
from jobs.scheduler import build_scheduler
from jobs.worker import start_worker
from tests.integration.support.conftest import TICKETS, error_of, notifications_of, ticket_events

API = "/api/v1"
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


async def new_ticket(db, customer_id: uuid.UUID, *, priority: str = "high", now: datetime) -> uuid.UUID:
    async with unit_of_work(db) as session:
        view = await service.create_ticket(session, customer_id, subject="Deposit missing", body="Sent 1 ETH.",
                                           priority=priority, now=now)
        return view.ticket.id


async def load(db, ticket_id: uuid.UUID) -> Ticket:
    async with db() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket


async def run_breach_job(db) -> None:
    async with unit_of_work(db) as session:  # what the worker's actor wrapper does
        await actors.mark_breaches.fn(session)


async def test_the_preview_gives_the_due_times_of_the_sla_function(app_client, login_as) -> None:
    support = await login_as(app_client, "support")
    payload = {"priority": "high", "created_at": "2026-03-06T17:00:00Z",
               "paused": [{"start": "2026-03-09T10:00:00Z", "end": "2026-03-09T11:00:00+00:00"}]}
    response = await app_client.post(f"{API}/platform/helpdesk/sla", json=payload, headers=support.headers)
    body = await response.json()
    assert response.status == 200, body
    # Fri 17–18, then Mon 09–10 and 11–13 (the pause in between): due Mon 13:00.
    assert body == {"priority": "high", "calendar": "business", "created_at": "2026-03-06T17:00:00Z",
                    "first_response_due": "2026-03-09T13:00:00Z", "resolution_due": "2026-03-10T18:00:00Z"}
    urgent = await (await app_client.post(f"{API}/platform/helpdesk/sla", headers=support.headers,
                                          json={"priority": "urgent", "created_at": "2026-03-07T23:30:00+02:00"})).json()
    # urgent runs 24/7: Saturday 21:30 UTC + 1 h, answered in UTC
    assert urgent == {"priority": "urgent", "calendar": "always", "created_at": "2026-03-07T21:30:00Z",
                      "first_response_due": "2026-03-07T22:30:00Z", "resolution_due": "2026-03-08T05:30:00Z"}


async def test_the_preview_refuses_what_it_cannot_compute(app_client, login_as) -> None:
    support, customer = await login_as(app_client, "support"), await login_as(app_client)
    url = f"{API}/platform/helpdesk/sla"
    for payload in ({"priority": "high", "created_at": "2026-03-06T17:00:00"},  # naive
                    {"priority": "asap", "created_at": "2026-03-06T17:00:00Z"},
                    {"priority": "high", "created_at": "2026-03-06T17:00:00Z",
                     "paused": [{"start": "2026-03-09T11:00:00Z", "end": "2026-03-09T10:00:00Z"}]}):
        assert (await error_of(await app_client.post(url, json=payload, headers=support.headers), 422))["code"] == \
            "validation_error"
    response = await app_client.post(url, json={"priority": "high", "created_at": "2026-03-06T17:00:00Z"},
                                      headers=customer.headers)
    assert response.status == 403


async def test_a_ticket_gets_the_due_times_the_preview_shows(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket_id = await new_ticket(db, customer.user_id, priority="low", now=MONDAY_9)
    preview = await (await app_client.post(f"{API}/platform/helpdesk/sla", headers=support.headers,
                                           json={"priority": "low", "created_at": rfc3339(MONDAY_9)})).json()
    detail = await (await app_client.get(f"{TICKETS}/{ticket_id}", headers=customer.headers)).json()
    assert detail["sla"]["first_response_due"] == preview["first_response_due"]
    assert detail["sla"]["resolution_due"] == preview["resolution_due"]


async def test_waiting_on_the_customer_pauses_the_clock_and_shifts_the_due_times(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket_id = await new_ticket(db, customer.user_id, priority="high", now=MONDAY_9)
    before = await load(db, ticket_id)
    # high: first response Mon 13:00; resolution 18 business hours → Tue 18:00
    assert (before.first_response_due, before.resolution_due) == (MONDAY_9 + hours(4), MONDAY_9 + hours(33))
    staff, owner = service.Viewer(support.user_id, True), service.Viewer(customer.user_id, False)
    async with unit_of_work(db) as session:
        await service.add_message(session, staff, ticket_id, "Which address?", now=MONDAY_9 + hours(1))
    async with unit_of_work(db) as session:
        await service.transition(session, support.user_id, ticket_id, "pending_customer", now=MONDAY_9 + hours(2))
    paused = await load(db, ticket_id)
    assert paused.paused_since == MONDAY_9 + hours(2)
    assert paused.resolution_due == before.resolution_due  # unknown until the pause ends
    async with unit_of_work(db) as session:  # the customer answers at 15:00: 4 business hours paused
        await service.add_message(session, owner, ticket_id, "0xabc", now=MONDAY_9 + hours(6))
    resumed = await load(db, ticket_id)
    assert resumed.state == "in_progress" and resumed.paused_since is None
    assert resumed.resolution_due == datetime(2026, 3, 4, 13, 0, tzinfo=UTC)  # Tue 18:00 + 4 h → Wed 13:00
    assert resumed.first_response_due == MONDAY_9 + hours(8)
    async with db() as session:
        pauses = list(await session.execute(select(TicketSlaPause.started_at, TicketSlaPause.ended_at)
                                            .where(TicketSlaPause.ticket_id == ticket_id)))
    assert [tuple(p) for p in pauses] == [(MONDAY_9 + hours(2), MONDAY_9 + hours(6))]
    # the very function the preview uses agrees
    assert sla.due_times("high", MONDAY_9, pauses).resolution_due == resumed.resolution_due
    [event] = [e for e in await ticket_events(db, ticket_id)
               if e["type"] == "ticket.state_changed" and e["data"]["action"] == "customer_reply"]
    assert event["data"]["resolution_due"] == "2026-03-04T13:00:00Z"


async def test_a_pause_over_the_night_shifts_nothing(login_as, app_client, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket_id = await new_ticket(db, customer.user_id, priority="high", now=MONDAY_9)
    before = await load(db, ticket_id)
    async with unit_of_work(db) as session:
        await service.transition(session, support.user_id, ticket_id, "pending_customer", now=MONDAY_9 + hours(10))
    async with unit_of_work(db) as session:
        await service.transition(session, support.user_id, ticket_id, "in_progress", now=MONDAY_9 + hours(23))
    after = await load(db, ticket_id)
    assert (after.first_response_due, after.resolution_due) == (before.first_response_due, before.resolution_due)


async def test_the_breach_job_marks_an_overdue_ticket_once(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    created = utcnow() - timedelta(days=30)
    ticket_id = await new_ticket(db, customer.user_id, now=created)
    async with unit_of_work(db) as session:  # support took it (so is told of breaches) but never answered
        await service.transition(session, support.user_id, ticket_id, "in_progress", now=created + hours(0.1))
    await run_breach_job(db)
    ticket = await load(db, ticket_id)
    assert ticket.first_response_breached_at is not None and ticket.resolution_breached_at is not None
    breaches = [e["data"] for e in await ticket_events(db, ticket_id) if e["type"] == "ticket.sla_breached"]
    assert [b["sla"] for b in breaches] == ["first_response", "resolution"]
    assert breaches[0]["due"] == rfc3339(ticket.first_response_due)

    await run_breach_job(db)  # idempotent: nothing new
    assert len([e for e in await ticket_events(db, ticket_id) if e["type"] == "ticket.sla_breached"]) == 2
    alerts = [n for n in await notifications_of(db, support.user_id) if n.type == "ticket.sla_breached"]
    assert sorted(n.data["sla"] for n in alerts) == ["first_response", "resolution"]
    assert all(n.type != "ticket.sla_breached" for n in await notifications_of(db, customer.user_id))

    # staff find it with the breached filter; the customer never sees breach marks
    listed = await (await app_client.get(f"{TICKETS}?breached=true&state=in_progress&limit=200",
                                         headers=support.headers)).json()
    assert str(ticket_id) in {item["id"] for item in listed["items"]}
    text = await (await app_client.get(f"{TICKETS}/{ticket_id}", headers=customer.headers)).text()
    assert "breached" not in text


async def test_the_breach_job_leaves_a_paused_ticket_alone(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    created = utcnow() - timedelta(days=30)
    ticket_id = await new_ticket(db, customer.user_id, now=created)
    async with unit_of_work(db) as session:
        await service.add_message(session, service.Viewer(support.user_id, True), ticket_id, "Send the tx hash?",
                                  now=created + hours(0.1))
    async with unit_of_work(db) as session:
        await service.transition(session, support.user_id, ticket_id, "pending_customer", now=created + hours(0.2))
    await run_breach_job(db)
    ticket = await load(db, ticket_id)
    assert ticket.first_response_breached_at is None and ticket.resolution_breached_at is None
    # when the customer answers a month later, the month did not count
    async with unit_of_work(db) as session:
        await service.add_message(session, service.Viewer(customer.user_id, False), ticket_id, "0xabc")
    ticket = await load(db, ticket_id)
    assert ticket.state == "in_progress" and ticket.resolution_due > utcnow()
    await run_breach_job(db)
    assert (await load(db, ticket_id)).resolution_breached_at is None


async def test_a_late_first_reply_is_marked_when_it_is_sent(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket_id = await new_ticket(db, customer.user_id, now=utcnow() - timedelta(days=30))
    body = await (await app_client.post(f"{TICKETS}/{ticket_id}/messages", json={"body": "Sorry for the wait."},
                                        headers=support.headers)).json()
    assert body["sla"]["first_response_breached_at"] is not None
    assert body["sla"]["resolution_breached_at"] is None  # still open: the job marks that one


async def test_resolving_while_paused_is_not_a_breach(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket_id = await new_ticket(db, customer.user_id, now=MONDAY_9)
    async with unit_of_work(db) as session:
        await service.transition(session, support.user_id, ticket_id, "pending_customer", now=MONDAY_9 + hours(1))
    async with unit_of_work(db) as session:  # a week later: resolution was due Tue 18:00, but the clock stood still
        await service.transition(session, support.user_id, ticket_id, "resolved", now=MONDAY_9 + timedelta(days=7))
    assert (await load(db, ticket_id)).resolution_breached_at is None


# --- the real path: scheduler entry → Redis → notifications worker → PostgreSQL -------------------


@pytest.fixture
def broker(redis_url: str, database_url: str) -> Iterator[RedisBroker]:
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=2,
                           namespace=f"test-{uuid.uuid4().hex}")
    yield broker
    broker.flush_all()
    close_broker(broker)


def test_the_breach_check_is_a_notifications_job_on_the_schedule(broker, settings) -> None:
    [spec] = [spec for spec in registered_jobs() if spec.name == "support.mark_breaches"]
    assert spec.queue == "notifications"
    scheduled = build_scheduler(settings.model_copy(update={"helpdesk_breach_check_seconds": 30.0}), broker) \
        .get_job("helpdesk-sla-breaches")
    assert scheduled is not None and scheduled.trigger.interval == timedelta(seconds=30)


async def test_the_scheduled_check_marks_breaches_on_a_worker(broker, settings, app_client, login_as, db) -> None:
    customer = await login_as(app_client)
    ticket_id = await new_ticket(db, customer.user_id, now=utcnow() - timedelta(days=30))
    scheduled = build_scheduler(settings, broker).get_job("helpdesk-sla-breaches")
    scheduled.func(*scheduled.args)
    worker = start_worker(broker, {"notifications"}, worker_threads=1)
    try:
        await asyncio.to_thread(broker.join, "notifications", timeout=20_000)
    finally:
        await asyncio.to_thread(worker.stop, timeout=20_000)
    ticket = await load(db, ticket_id)
    assert ticket.first_response_breached_at is not None and ticket.resolution_breached_at is not None
