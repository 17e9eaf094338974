"""The webhooks outbox: an audit event its owners subscribed to writes one event and one pending
delivery per endpoint in the same transaction, and sends ``webhooks.deliver`` after the commit; nothing
for an event nobody wants, for a change rolled back, or for an internal step. Real routes, real
PostgreSQL and Redis; the messages are read from the queue, not consumed."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.db import create_engine, session_factory, unit_of_work
from core.time import utcnow
from custody.deposits import tracking
from custody.escrow import service as escrow
from jobs.broker import DEFAULT_NAMESPACE, close_broker, create_broker
from jobs.registry import bind_broker
from notifications.webhooks.models import WebhookDelivery, WebhookEvent
from tests.factories import ETH, LoggedIn, credit_user, make_escrow, make_withdrawal

API = "/api/v1"


@pytest.fixture
async def client(make_client, settings) -> TestClient:
    """The app with play money for every new user (escrows are funded with it)."""
    return await make_client(settings.model_copy(update={"sandbox_credit": "USD:10000.00"}))


@pytest.fixture
def broker(redis_url: str) -> Iterator[RedisBroker]:
    """A sending broker on the namespace the app sends to: what our own sessions send lands with the app's."""
    broker = create_broker(redis_url)
    yield broker
    close_broker(broker)


@pytest.fixture
async def factory(database_url: str, broker: RedisBroker) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    yield factory
    await engine.dispose()


def queued_deliveries(redis_url: str) -> set[str]:
    """The delivery ids of the ``webhooks.deliver`` messages waiting in the app's queue."""
    client = redis.Redis.from_url(redis_url)
    try:
        encoded = client.hvals(f"{DEFAULT_NAMESPACE}:webhooks.msgs")
    finally:
        client.close()
    messages = [json.loads(raw) for raw in encoded]
    return {message["args"][0] for message in messages if message["actor_name"] == "webhooks.deliver"}


async def subscribe(client: TestClient, user: LoggedIn, events: list[str], **fields: Any) -> str:
    response = await client.post(f"{API}/webhooks", headers=user.headers,
                                 json={"url": "https://hooks.example.com/in", "events": events, **fields})
    assert response.status == 201, await response.text()
    return (await response.json())["id"]


async def events_about(factory: async_sessionmaker[AsyncSession], resource_id: str) -> list[WebhookEvent]:
    async with factory() as session:
        return list(await session.scalars(select(WebhookEvent).where(WebhookEvent.resource_id == resource_id)
                                          .order_by(WebhookEvent.created_at)))


async def deliveries_of(factory: async_sessionmaker[AsyncSession], event_id: uuid.UUID) -> list[WebhookDelivery]:
    async with factory() as session:
        return list(await session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event_id)
                                          .order_by(WebhookDelivery.position)))


async def test_a_subscribed_event_writes_one_event_and_one_delivery_and_sends_it(client, login_as, factory,
                                                                                 redis_url) -> None:
    buyer, seller = await login_as(client), await login_as(client)
    endpoint = await subscribe(client, buyer, ["escrow.created"])
    contract = await make_escrow(client, buyer, seller=seller)

    [event] = await events_about(factory, contract["id"])
    assert (event.type, event.resource_type) == ("escrow.created", "escrow")
    # The contract as the API shows it to its owner: one serialization.
    shown = await client.get(f"{API}/escrow/contracts/{contract['id']}", headers=buyer.headers)
    assert event.data == await shown.json()
    [delivery] = await deliveries_of(factory, event.id)
    assert delivery.endpoint_id == uuid.UUID(endpoint) and delivery.state == "pending" and delivery.attempts == 0
    assert (delivery.resource_type, delivery.resource_id) == ("escrow", contract["id"])
    assert delivery.next_attempt_at <= utcnow()
    assert str(delivery.id) in queued_deliveries(redis_url)


async def test_an_escrow_event_reaches_both_parties(client, login_as, factory) -> None:
    buyer, seller = await login_as(client), await login_as(client)
    buyer_endpoint, seller_endpoint = await subscribe(client, buyer, ["*"]), await subscribe(client, seller, ["*"])
    await subscribe(client, seller, ["withdrawal.confirmed"])  # not this one
    contract = await make_escrow(client, buyer, seller=seller)
    funded = await client.post(f"{API}/escrow/{contract['id']}/fund", json={}, headers=buyer.headers)
    assert funded.status == 200, await funded.text()

    events = await events_about(factory, contract["id"])
    assert [event.type for event in events] == ["escrow.created", "escrow.funded"]
    assert events[1].data["state"] == "funded"
    for event in events:
        deliveries = await deliveries_of(factory, event.id)
        assert sorted(str(delivery.endpoint_id) for delivery in deliveries) == sorted([buyer_endpoint, seller_endpoint])
        assert len({delivery.event_id for delivery in deliveries}) == 1  # one event, its id the same for both


async def test_an_event_nobody_subscribed_to_writes_nothing(client, login_as, factory) -> None:
    buyer, seller, stranger = await login_as(client), await login_as(client), await login_as(client)
    await subscribe(client, buyer, ["withdrawal.confirmed", "escrow.funded"])
    paused = await subscribe(client, seller, ["*"])
    await client.patch(f"{API}/webhooks/{paused}", json={"enabled": False}, headers=seller.headers)
    await subscribe(client, stranger, ["*"])  # not a party
    contract = await make_escrow(client, buyer, seller=seller)
    assert await events_about(factory, contract["id"]) == []


async def test_a_rolled_back_change_writes_and_sends_nothing(client, login_as, factory, redis_url) -> None:
    buyer = await login_as(client)
    endpoint = uuid.UUID(await subscribe(client, buyer, ["*"]))

    class Abandoned(Exception):
        pass

    inside: list[tuple[uuid.UUID, str]] = []  # (delivery id, resource id) seen in the transaction
    with pytest.raises(Abandoned):
        async with unit_of_work(factory) as session:
            view = await escrow.create(session, escrow.Actor(buyer.user_id, frozenset({"customer"})), title="Lamps",
                                       description="Two lamps", amount="10.00", currency="USD", seller_email=None)
            contract_id = str(view.contract.id)
            inside.extend((row.id, row.resource_id) for row in await session.execute(
                select(WebhookDelivery.id, WebhookDelivery.resource_id).where(WebhookDelivery.endpoint_id == endpoint)))
            raise Abandoned
    # The outbox did write, in the transaction that was then rolled back.
    [(delivery_id, resource_id)] = inside
    assert resource_id == contract_id
    assert await events_about(factory, contract_id) == []
    async with factory() as session:
        assert await session.get(WebhookDelivery, delivery_id) is None
    assert str(delivery_id) not in queued_deliveries(redis_url)


async def test_internal_ticket_steps_write_nothing_and_a_staff_reply_is_announced(client, login_as, factory) -> None:
    customer, staff = await login_as(client), await login_as(client, "support")
    await subscribe(client, customer, ["*"])
    created = await client.post(f"{API}/helpdesk/tickets", json={"subject": "Missing deposit", "body": "Where is it?"},
                                headers=customer.headers)
    ticket = (await created.json())["id"]
    tickets = f"{API}/helpdesk/tickets/{ticket}"
    note = await client.post(f"{tickets}/internal-notes", json={"body": "SECRET: screening match, do not tell"},
                             headers=staff.headers)
    assert note.status == 201, await note.text()
    link = await client.post(f"{tickets}/context-links", json={"kind": "url", "ref": "https://intranet.example/case/1"},
                             headers=staff.headers)
    assert link.status == 201, await link.text()
    own = await client.post(f"{tickets}/messages", json={"body": "Any news?"}, headers=customer.headers)
    assert own.status in (200, 201), await own.text()
    assert await events_about(factory, ticket) == []  # internal steps, and the customer's own words

    reply = await client.post(f"{tickets}/messages", json={"body": "Found it: credited."}, headers=staff.headers)
    assert reply.status in (200, 201), await reply.text()
    events = await events_about(factory, ticket)
    assert [event.type for event in events] == ["ticket.reply", "ticket.state_changed"]
    shown = await (await client.get(tickets, headers=customer.headers)).json()
    # The ticket as its customer sees it, as of the move: the service stamps updated_at after its last event.
    assert {**events[-1].data, "updated_at": None} == {**shown, "updated_at": None}
    assert events[0].data["state"] == "open" and events[-1].data["state"] == "in_progress"
    assert [message["body"] for message in events[0].data["messages"]] == ["Where is it?", "Any news?",
                                                                           "Found it: credited."]
    everything = json.dumps([event.data for event in events])
    assert "SECRET" not in everything and "intranet" not in everything and "internal_notes" not in everything


async def test_a_kyc_decision_carries_what_the_customer_sees(client, login_as, factory) -> None:
    customer, officer = await login_as(client), await login_as(client, "compliance")
    await subscribe(client, customer, ["kyc.needs_info", "kyc.approved"])
    application = {"first_name": "Ada", "last_name": f"Lovelace-{uuid.uuid4().hex[:6]}", "date_of_birth": "1985-12-10",
                   "country": "CA", "address": {"street_name": "Rue Sherbrooke O", "building_number": "1380",
                                                "post_code": "H3G 1J5", "town_name": "Montreal", "country": "CA"}}
    submitted = await client.post(f"{API}/me/kyc", json=application, headers=customer.headers)
    assert submitted.status == 201, await submitted.text()
    assert await events_about(factory, str(customer.user_id)) == []  # kyc.submitted: not announced
    decided = await client.post(f"{API}/admin/kyc/{customer.user_id}/decision", headers=officer.headers,
                                json={"decision": "needs_info", "reason": "A clearer photo of the passport, please."})
    assert decided.status == 200, await decided.text()

    [event] = await events_about(factory, str(customer.user_id))
    assert (event.type, event.resource_type) == ("kyc.needs_info", "kyc_case")
    assert event.data["state"] == "needs_info" and event.data["reason"] == "A clearer photo of the passport, please."
    assert "screening_hit" not in event.data and "first_name" not in event.data


async def test_withdrawal_steps_carry_the_withdrawal_and_internal_ones_nothing(client, login_as, factory) -> None:
    owner = await login_as(client)
    await subscribe(client, owner, ["*"])
    await credit_user(factory, owner.user_id, "ETH", ETH)
    withdrawal = await make_withdrawal(factory, owner.user_id, "ethereum", amount=ETH // 10, state="broadcast",
                                       tx_hash="0x" + "ab" * 32, nonce=7)
    async with unit_of_work(factory) as session:
        await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.signer_alert", {"reason": "fee cap"})
        await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.approval_added", {"approvals": 1})
    assert await events_about(factory, str(withdrawal.id)) == []
    async with unit_of_work(factory) as session:
        await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.broadcast", {"state": "broadcast"})
    [event] = await events_about(factory, str(withdrawal.id))
    shown = await client.get(f"{API}/platform/crypto/withdrawals/{withdrawal.id}", headers=owner.headers)
    assert event.type == "withdrawal.broadcast" and event.data == await shown.json()


async def test_a_deposit_seen_by_the_scanner_is_announced_with_the_deposit(client, login_as, factory) -> None:
    owner = await login_as(client)
    await subscribe(client, owner, ["deposit.seen"])
    seen = tracking.Observed(chain="ethereum", tx_hash="0x" + uuid.uuid4().hex * 2, log_index=-1,
                             block_number=1_000, block_hash="0x" + uuid.uuid4().hex * 2, from_address=None,
                             to_address="0x70997970C51812dc3A010C7d01b50e0d17dc79C8", user_id=owner.user_id,
                             asset="ETH", amount=ETH // 2)
    async with unit_of_work(factory) as session:
        announcements = tracking.Announcements()
        [recorded] = await tracking.record(session, [seen], announcements, required_confirmations=12, source="scanner")
        await announcements.write(session, "scanner")  # the batch's first events: audit.append_first
    [event] = await events_about(factory, str(recorded.deposit_id))
    listed = await (await client.get(f"{API}/wallet/deposits", headers=owner.headers)).json()
    assert event.type == "deposit.seen" and [event.data] == listed["items"]

