"""Webhook delivery against a real receiver on 127.0.0.1, real PostgreSQL and Redis.

Single attempts run the service (``delivery.attempt``) in this test's loop; retries and ordering run
through a real webhooks worker (Dramatiq threads of this process) with a stand-in for the scheduler's
dispatch that only sees this test's endpoints (the database is shared with the tests before).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import jobs
from content.seed import seed_content
from core.db import create_engine, session_factory, unit_of_work
from core.settings import Settings
from core.time import rfc3339, utcnow
from devnet.processes import free_port
from jobs.broker import close_broker, create_broker
from jobs.context import using_settings
from jobs.registry import bind_broker
from jobs.worker import start_worker
from notifications.product_emails import queue_product_email
from notifications.webhooks import delivery
from notifications.webhooks.emails import endpoint_variables
from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from notifications.webhooks.signing import new_secret, seal_secret
from tests.factories import make_user, wait_until
from tests.webhook_receiver import Receiver, Reply

WAIT = 30.0  # a bound for a hung test, not a performance limit


@pytest.fixture
def webhook_settings(settings: Settings) -> Settings:
    """Retries within a fraction of a second, a short timeout, and the local receiver allowed."""
    return settings.model_copy(update={
        "webhook_retry_base_seconds": 0.05, "webhook_retry_max_seconds": 0.2, "webhook_timeout_seconds": 1.0,
        "webhook_retry_window_hours": 1.0, "webhook_disable_after_hours": 72.0, "webhook_allow_private": True})


@pytest.fixture
def broker(redis_url: str, database_url: str) -> Iterator[RedisBroker]:
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=4,
                           namespace=f"test-{uuid.uuid4().hex}")
    yield broker
    broker.flush_all()
    close_broker(broker)


@pytest.fixture
async def factory(database_url: str, broker: RedisBroker) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=6)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    yield factory
    await engine.dispose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


class Hooks:
    """This test's endpoints, events and deliveries, made straight in the tables."""

    def __init__(self, factory: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.factory, self.settings = factory, settings
        self.endpoint_ids: list[uuid.UUID] = []

    async def endpoint(self, url: str, **fields: Any) -> tuple[uuid.UUID, str]:
        """A new user's endpoint and its secret."""
        user_id = await make_user(self.factory, tag="hook", display_name="Integrator")
        secret = new_secret()
        endpoint = WebhookEndpoint(id=uuid.uuid4(), user_id=user_id, url=url, events=["*"],
                                   secret_sealed=seal_secret(self.settings.secret_key.get_secret_value(), secret),
                                   **fields)
        async with unit_of_work(self.factory) as session:
            session.add(endpoint)
        self.endpoint_ids.append(endpoint.id)
        return endpoint.id, secret

    async def delivery(self, endpoint_id: uuid.UUID, *, resource_id: str | None = None, type: str = "deposit.credited",
                       send: bool = True, created_at: datetime | None = None) -> tuple[uuid.UUID, uuid.UUID]:
        """An event about ``resource_id`` and its pending delivery to the endpoint, due now: (event id, delivery id).
        ``send``: tell the worker after the commit, as the outbox does (else the message is "lost")."""
        created = created_at or utcnow()
        event = WebhookEvent(id=uuid.uuid4(), type=type, resource_type="deposit",
                             resource_id=resource_id or str(uuid.uuid4()),
                             data={"id": resource_id, "amount": "1.5", "note": "ünïcode"}, created_at=created)
        row = WebhookDelivery(id=uuid.uuid4(), event_id=event.id, endpoint_id=endpoint_id,
                              resource_type=event.resource_type, resource_id=event.resource_id, state="pending",
                              attempts=0, next_attempt_at=created, created_at=created)
        async with unit_of_work(self.factory) as session:
            session.add(event)
            await session.flush()
            session.add(row)
            await session.flush()
            if send:
                jobs.send_after_commit(session, delivery.DELIVER, str(row.id))
        return event.id, row.id

    async def attempt(self, delivery_id: uuid.UUID, settings: Settings | None = None) -> str:
        async with unit_of_work(self.factory) as session:
            return await delivery.attempt(session, delivery_id, settings or self.settings)

    async def row(self, delivery_id: uuid.UUID) -> WebhookDelivery:
        async with self.factory() as session:
            return await session.get_one(WebhookDelivery, delivery_id)

    async def endpoint_row(self, endpoint_id: uuid.UUID) -> WebhookEndpoint:
        async with self.factory() as session:
            return await session.get_one(WebhookEndpoint, endpoint_id)

    async def make_due(self, delivery_id: uuid.UUID) -> None:
        async with unit_of_work(self.factory) as session:
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                  .values(next_attempt_at=utcnow()))

    async def settled(self, delivery_id: uuid.UUID, state: str = "delivered") -> WebhookDelivery:
        async def check() -> WebhookDelivery | None:
            row = await self.row(delivery_id)
            return row if row.state == state else None

        return await wait_until(check, timeout=WAIT, what=f"delivery {delivery_id} {state}")

    async def audit_types(self, aggregate_type: str, aggregate_id: uuid.UUID) -> list[str]:
        async with self.factory() as session:
            rows = await session.execute(text("SELECT type FROM audit_events WHERE aggregate_type = :type"
                                              " AND aggregate_id = :id ORDER BY seq"),
                                         {"type": aggregate_type, "id": str(aggregate_id)})
            return [row.type for row in rows]


@pytest.fixture
def hooks(factory: async_sessionmaker[AsyncSession], webhook_settings: Settings) -> Hooks:
    return Hooks(factory, webhook_settings)


@asynccontextmanager
async def webhooks_worker(broker: RedisBroker, hooks: Hooks) -> AsyncIterator[None]:
    """A real worker on the ``webhooks`` queue, and the scheduler's dispatch for this test's endpoints."""
    stop = asyncio.Event()

    async def dispatch() -> None:
        while not stop.is_set():
            async with unit_of_work(hooks.factory) as session:
                due = await session.scalars(select(WebhookDelivery.id).where(
                    WebhookDelivery.endpoint_id.in_(hooks.endpoint_ids), WebhookDelivery.state == "pending",
                    WebhookDelivery.next_attempt_at <= utcnow()))
                for delivery_id in due:
                    jobs.send_after_commit(session, delivery.DELIVER, str(delivery_id))
            await asyncio.sleep(0.1)

    with using_settings(hooks.settings):
        worker = start_worker(broker, ["webhooks"], worker_threads=3, poll_ms=50)
        dispatching = asyncio.create_task(dispatch())
        try:
            yield
        finally:
            stop.set()
            await dispatching
            await asyncio.to_thread(worker.stop, timeout=20_000)


# --- one attempt ----------------------------------------------------------------------------------

async def test_a_delivery_is_the_signed_event_and_a_success_clears_the_failing_mark(hooks, receiver) -> None:
    endpoint_id, secret = await hooks.endpoint(receiver.url("/hook?token=abc"), failing_since=utcnow())
    event_id, delivery_id = await hooks.delivery(endpoint_id, resource_id="dep-1", send=False)

    assert await hooks.attempt(delivery_id) == "delivered"

    [request] = receiver.requests
    assert request.path == "/hook?token=abc"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "VirtuOZ-Webhooks/1"
    assert request.event_id == str(event_id)
    assert request.verifies(secret)
    assert not request.verifies(new_secret())
    signature = request.headers["VirtuOZ-Signature"]
    assert signature.startswith(f"t={request.headers['VirtuOZ-Timestamp']},v1=")
    assert abs(int(request.headers["VirtuOZ-Timestamp"]) - time.time()) < 300
    # The body as signed: canonical JSON of the event, its id the one receivers dedupe on.
    async with hooks.factory() as session:
        event = await session.get_one(WebhookEvent, event_id)
    assert request.document == {"id": str(event_id), "type": "deposit.credited",
                                "created_at": rfc3339(event.created_at),
                                "data": {"id": "dep-1", "amount": "1.5", "note": "ünïcode"}}
    assert request.body == json.dumps(request.document, sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False).encode()

    row = await hooks.row(delivery_id)
    assert (row.state, row.attempts, row.last_status_code, row.last_error, row.response_excerpt) == \
        ("delivered", 1, 200, None, "ok")
    assert row.finished_at is not None and row.last_latency_ms is not None and row.last_latency_ms >= 0
    assert (await hooks.endpoint_row(endpoint_id)).failing_since is None
    # A second message about it (the dispatch, a redelivery) sends nothing more.
    assert await hooks.attempt(delivery_id) == "finished"
    assert len(receiver.requests) == 1


async def test_a_rotated_secret_signs_beside_the_new_one_until_it_expires(hooks, receiver, webhook_settings) -> None:
    old = new_secret()
    endpoint_id, secret = await hooks.endpoint(receiver.url(), previous_secret_sealed=seal_secret(
        webhook_settings.secret_key.get_secret_value(), old), previous_secret_expires_at=utcnow() + timedelta(hours=1))
    _, delivery_id = await hooks.delivery(endpoint_id, send=False)
    assert await hooks.attempt(delivery_id) == "delivered"
    [request] = receiver.requests
    assert request.verifies(secret) and request.verifies(old)
    assert request.headers["VirtuOZ-Signature"].count("v1=") == 2


async def test_a_delivery_in_flight_elsewhere_or_not_yet_due_is_skipped(hooks, receiver) -> None:
    endpoint_id, _ = await hooks.endpoint(receiver.url())
    _, delivery_id = await hooks.delivery(endpoint_id, send=False)
    async with hooks.factory() as holder:  # another worker's attempt, holding the row
        await holder.execute(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update())
        assert await hooks.attempt(delivery_id) == "busy"
        await holder.rollback()
    async with unit_of_work(hooks.factory) as session:
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                              .values(next_attempt_at=utcnow() + timedelta(minutes=5)))
    assert await hooks.attempt(delivery_id) == "not_due"
    assert receiver.requests == []


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(hooks, receiver) -> None:
    endpoint_id, _ = await hooks.endpoint(receiver.url())
    receiver.answer(Reply(302, b"moved", {"Location": receiver.url("/elsewhere")}))
    _, delivery_id = await hooks.delivery(endpoint_id, send=False)

    assert await hooks.attempt(delivery_id) == "retry"

    assert [request.path for request in receiver.requests] == ["/hook"]
    row = await hooks.row(delivery_id)
    assert (row.state, row.attempts, row.last_status_code) == ("pending", 1, 302)
    assert "redirect" in row.last_error
    assert (await hooks.endpoint_row(endpoint_id)).failing_since is not None


async def test_the_response_excerpt_keeps_at_most_1_kb_of_the_answer(hooks, receiver) -> None:
    endpoint_id, _ = await hooks.endpoint(receiver.url())
    receiver.answer(Reply(500, b"x" * 5000 + b"tail" * 200_000))
    _, delivery_id = await hooks.delivery(endpoint_id, send=False)

    assert await hooks.attempt(delivery_id) == "retry"

    row = await hooks.row(delivery_id)
    assert (row.last_status_code, row.last_error, row.response_excerpt) == (500, "HTTP 500", "x" * 1024)


async def test_a_failure_is_retried_after_a_jittered_backoff_within_the_window(hooks, receiver,
                                                                              webhook_settings) -> None:
    settings = webhook_settings.model_copy(update={"webhook_retry_base_seconds": 60.0,
                                                   "webhook_retry_max_seconds": 600.0})
    endpoint_id, _ = await hooks.endpoint(receiver.url())
    receiver.answer(Reply(503, b"busy"))
    _, delivery_id = await hooks.delivery(endpoint_id, send=False)

    assert await hooks.attempt(delivery_id, settings) == "retry"

    row = await hooks.row(delivery_id)
    assert row.last_attempt_at <= row.next_attempt_at <= row.last_attempt_at + timedelta(seconds=60)
    assert (row.state, row.response_excerpt) == ("pending", "busy")
    assert await hooks.attempt(delivery_id, settings) == "not_due"


# --- refused destinations ---------------------------------------------------------------------------

async def test_loopback_and_private_urls_are_refused_without_the_flag_and_nothing_is_sent(hooks, receiver,
                                                                                         webhook_settings) -> None:
    strict = webhook_settings.model_copy(update={"webhook_allow_private": False})
    urls = [receiver.url(), f"https://127.0.0.1:{receiver.port}/hook", f"https://localhost:{receiver.port}/hook",
            f"https://[::ffff:127.0.0.1]:{receiver.port}/hook", "https://10.0.0.1/hook",
            "https://169.254.169.254/latest/meta-data/"]
    for url in urls:
        endpoint_id, _ = await hooks.endpoint(url)
        _, delivery_id = await hooks.delivery(endpoint_id, send=False)
        assert await hooks.attempt(delivery_id, strict) == "retry", url
        row = await hooks.row(delivery_id)
        assert row.last_status_code is None and row.last_error.startswith("refused: "), (url, row.last_error)
        assert "token" not in row.last_error
    assert receiver.requests == []


# --- giving up, disabling -----------------------------------------------------------------------------

async def test_a_delivery_failing_past_its_window_fails_for_good_and_the_next_in_line_goes(hooks, receiver,
                                                                                         broker) -> None:
    endpoint_id, _ = await hooks.endpoint(receiver.url())
    receiver.answer(Reply(500))
    long_ago = utcnow() - timedelta(hours=1, minutes=1)
    _, first = await hooks.delivery(endpoint_id, resource_id="dep-w", send=False, created_at=long_ago)
    _, second = await hooks.delivery(endpoint_id, resource_id="dep-w", send=False)

    assert await hooks.attempt(second) == "waiting"  # behind the first, untried
    assert await hooks.attempt(first) == "failed"

    row = await hooks.row(first)
    assert (row.state, row.attempts, row.last_status_code) == ("failed", 1, 500)
    assert row.finished_at is not None
    assert await hooks.audit_types("webhook_delivery", first) == ["webhook_delivery.failed"]
    # The next one of that resource was sent to the worker after the commit.
    assert [message["args"] for message in queued(broker, "webhooks")] == [[str(second)]]
    assert await hooks.attempt(second) == "delivered"


async def test_an_endpoint_failing_for_the_disable_window_is_disabled_and_its_owner_emailed(
        hooks, receiver, broker) -> None:
    endpoint_id, _ = await hooks.endpoint(receiver.url("/hook?token=s3cret"),
                                          failing_since=utcnow() - timedelta(hours=71, minutes=59))
    receiver.answer(Reply(500), Reply(500))
    _, first = await hooks.delivery(endpoint_id, send=False)
    _, other = await hooks.delivery(endpoint_id, send=False)

    assert await hooks.attempt(first) == "retry"  # 71 h 59 min: not yet
    assert (await hooks.endpoint_row(endpoint_id)).enabled
    async with unit_of_work(hooks.factory) as session:
        await session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                              .values(failing_since=utcnow() - timedelta(hours=72, seconds=1)))

    assert await hooks.attempt(other) == "failed"

    endpoint = await hooks.endpoint_row(endpoint_id)
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "failing")
    assert await hooks.audit_types("webhook_endpoint", endpoint_id) == ["webhook.disabled"]
    [email] = [message for message in queued(broker, "notifications")
               if message["actor_name"] == "notifications.product_email"]
    assert email["args"][1:] == [str(endpoint.user_id), "webhook.disabled", str(endpoint_id)]
    async with hooks.factory() as session:
        variables = await endpoint_variables(session, "webhook.disabled", endpoint_id)
    assert variables == {"endpoint_url": receiver.url("/hook"), "failing_since": rfc3339(endpoint.failing_since)}
    # The message, as the notifications worker renders it from the seeded template: no token of the URL's.
    async with unit_of_work(hooks.factory) as session:
        await seed_content(session)
    async with unit_of_work(hooks.factory) as session:
        email_row = await queue_product_email(session, uuid.UUID(email["args"][0]), endpoint.user_id,
                                              "webhook.disabled", endpoint_id)
    assert (email_row.state, email_row.subject) == ("queued", "Your webhook endpoint was disabled")
    assert receiver.url("/hook") in email_row.text and "s3cret" not in email_row.text + email_row.html
    assert (await hooks.row(other)).last_error.startswith("endpoint disabled")
    # What was still pending for it fails without a request.
    await hooks.make_due(first)
    assert await hooks.attempt(first) == "failed"
    assert len(receiver.requests) == 2


def queued(broker: RedisBroker, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in broker.client.hgetall(f"{broker.namespace}:{queue}.msgs").values()]


# --- through the worker ---------------------------------------------------------------------------

async def test_a_500_then_a_200_is_one_event_delivered_on_the_second_attempt(hooks, receiver, broker) -> None:
    endpoint_id, secret = await hooks.endpoint(receiver.url())
    receiver.answer(Reply(500, b"oops"), Reply(200, b"thanks"))
    async with webhooks_worker(broker, hooks):
        event_id, delivery_id = await hooks.delivery(endpoint_id)
        row = await hooks.settled(delivery_id)
    assert (row.attempts, row.last_status_code, row.response_excerpt) == (2, 200, "thanks")
    requests = receiver.of_event(str(event_id))
    assert len(requests) == 2 and requests[0].body == requests[1].body
    assert all(request.verifies(secret) for request in requests)


async def test_a_timeout_and_a_refused_connection_are_retried_until_delivered(hooks, receiver, broker) -> None:
    slow_id, _ = await hooks.endpoint(receiver.url())
    receiver.answer(Reply(200, hold=True))  # held past the 1 s timeout
    closed = Receiver(free_port())  # nothing listens there yet
    down_id, _ = await hooks.endpoint(closed.url())
    try:
        async with webhooks_worker(broker, hooks):
            slow_event, slow = await hooks.delivery(slow_id)
            _, down = await hooks.delivery(down_id)
            row = await hooks.settled(slow)
            assert row.attempts == 2 and len(receiver.of_event(str(slow_event))) == 2

            async def refused_twice() -> WebhookDelivery | None:
                found = await hooks.row(down)
                return found if found.attempts >= 2 else None

            refused = await wait_until(refused_twice, timeout=WAIT, what="two refused connections")
            assert refused.state == "pending" and refused.last_error.startswith("connection failed")
            assert refused.last_status_code is None
            await closed.start()  # the receiver comes back
            assert (await hooks.settled(down)).last_status_code == 200
    finally:
        await closed.stop()
    assert len(closed.requests) == 1


async def test_a_later_event_of_a_resource_waits_for_the_earlier_one_and_other_resources_do_not(
        hooks, receiver, broker) -> None:
    endpoint_id, _ = await hooks.endpoint(receiver.url())
    # The first event of the resource fails twice; the second is created meanwhile.
    receiver.answer(Reply(500, event_type="deposit.seen"), Reply(500, event_type="deposit.seen"))
    async with webhooks_worker(broker, hooks):
        first_event, first = await hooks.delivery(endpoint_id, resource_id="dep-o", type="deposit.seen")
        second_event, second = await hooks.delivery(endpoint_id, resource_id="dep-o")
        other_event, other = await hooks.delivery(endpoint_id, resource_id="dep-x")
        for delivery_id in (first, second, other):
            await hooks.settled(delivery_id)
    order = [request.event_id for request in receiver.requests]
    assert order.count(str(first_event)) == 3 and order.count(str(second_event)) == 1
    # Not one request about the second before the first was delivered (its last request).
    assert order.index(str(second_event)) > len(order) - 1 - order[::-1].index(str(first_event))
    assert (await hooks.row(second)).attempts == 1
    assert order.count(str(other_event)) == 1


async def test_the_dispatch_sends_due_deliveries_first_in_line_and_skips_those_in_flight(hooks, receiver,
                                                                                         broker) -> None:
    endpoint_id, _ = await hooks.endpoint(receiver.url())
    _, lost = await hooks.delivery(endpoint_id, resource_id="dep-d", send=False)  # its message was lost
    _, behind = await hooks.delivery(endpoint_id, resource_id="dep-d", send=False)
    _, in_flight = await hooks.delivery(endpoint_id, send=False)
    _, later = await hooks.delivery(endpoint_id, send=False)
    async with unit_of_work(hooks.factory) as session:
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == later)
                              .values(next_attempt_at=utcnow() + timedelta(minutes=5)))
    async with hooks.factory() as holder:
        await holder.execute(select(WebhookDelivery).where(WebhookDelivery.id == in_flight).with_for_update())
        async with unit_of_work(hooks.factory) as session:
            sent = await delivery.dispatch_due(session, hooks.settings)
        await holder.rollback()
    ids = {message["args"][0] for message in queued(broker, "webhooks")}
    assert str(lost) in ids and not ids & {str(behind), str(in_flight), str(later)}
    assert sent == len(ids)
    assert all(message["actor_name"] == "webhooks.deliver" for message in queued(broker, "webhooks"))


def test_backoff_uses_its_random_source() -> None:
    assert delivery.backoff(3, timedelta(seconds=1), timedelta(hours=1), random.Random(1)) == \
        delivery.backoff(3, timedelta(seconds=1), timedelta(hours=1), random.Random(1))
