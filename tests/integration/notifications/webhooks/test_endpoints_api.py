"""The webhook endpoints API through the real routes: a user's own endpoints, their secrets shown twice
only (create, rotate) and never in a read or an audit event, refusals that write nothing, and the test
and redeliver routes queueing deliveries."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.webhooks.routes import create_webhook, update_webhook
from core import audit
from core.db import create_engine, session_factory, unit_of_work
from core.time import utcnow
from notifications.webhooks import outbox, service
from notifications.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from notifications.webhooks.signing import signature_header, verify
from tests.factories import LoggedIn

API = "/api/v1"
WEBHOOKS = f"{API}/webhooks"
URL = "https://hooks.example.com/virtuoz?token=abc123"


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


async def create(client: TestClient, user: LoggedIn, *, status: int = 201, **fields: Any) -> dict[str, Any]:
    payload = {"url": URL, "events": ["deposit.credited", "escrow.funded"], **fields}
    response = await client.post(WEBHOOKS, json=payload, headers=user.headers)
    body = await response.json()
    assert response.status == status, body
    return body


async def listed(client: TestClient, user: LoggedIn) -> list[dict[str, Any]]:
    response = await client.get(WEBHOOKS, headers=user.headers)
    assert response.status == 200
    return (await response.json())["items"]


async def endpoint_row(factory: async_sessionmaker[AsyncSession], endpoint_id: str) -> WebhookEndpoint:
    async with factory() as session:
        return await session.get_one(WebhookEndpoint, uuid.UUID(endpoint_id))


async def test_create_list_get_patch_and_delete(client, login_as) -> None:
    user = await login_as(client)
    created = await create(client, user, description="Ledger sync", events=["escrow.funded", "deposit.credited"])
    assert created["secret"].startswith("whsec_")
    assert created["url"] == URL and created["events"] == ["deposit.credited", "escrow.funded"]
    assert created["enabled"] is True and created["description"] == "Ledger sync"
    assert {"id", "created_at", "updated_at"} <= set(created)

    items = await listed(client, user)
    assert [item["id"] for item in items] == [created["id"]]
    assert "secret" not in items[0]
    one = await client.get(f"{WEBHOOKS}/{created['id']}", headers=user.headers)
    assert one.status == 200 and "secret" not in (await one.json())

    patched = await client.patch(f"{WEBHOOKS}/{created['id']}", headers=user.headers,
                                 json={"events": ["*"], "description": None, "url": "https://other.example.com/h"})
    body = await patched.json()
    assert patched.status == 200, body
    assert body["events"] == ["*"] and body["description"] is None and body["url"] == "https://other.example.com/h"

    deleted = await client.delete(f"{WEBHOOKS}/{created['id']}", headers=user.headers)
    assert deleted.status == 204
    gone = await client.get(f"{WEBHOOKS}/{created['id']}", headers=user.headers)
    assert gone.status == 404 and (await gone.json())["error"]["code"] == "webhook_not_found"
    assert await listed(client, user) == []


async def test_rotation_shows_a_new_secret_and_keeps_the_old_one_signing_for_a_while(client, login_as, factory,
                                                                                     settings) -> None:
    user = await login_as(client)
    created = await create(client, user)
    response = await client.post(f"{WEBHOOKS}/{created['id']}/rotate-secret", headers=user.headers)
    rotated = await response.json()
    assert response.status == 200, rotated
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    assert rotated["previous_secret_expires_at"] is not None

    endpoint = await endpoint_row(factory, created["id"])
    expected = utcnow() + timedelta(hours=settings.webhook_secret_rotation_hours)
    assert abs(endpoint.previous_secret_expires_at - expected) < timedelta(minutes=1)
    in_force = service.secrets_in_force(settings, endpoint)
    assert in_force == [rotated["secret"], created["secret"]]
    # A receiver holding either secret verifies a delivery signed now.
    header = signature_header(in_force, 1_700_000_000, b"{}")
    assert verify(created["secret"], header, b"{}", now=1_700_000_000)
    assert verify(rotated["secret"], header, b"{}", now=1_700_000_000)

    shown = await (await client.get(f"{WEBHOOKS}/{created['id']}", headers=user.headers)).json()
    assert shown["previous_secret_expires_at"] is not None and "secret" not in shown
    # Past its time the previous secret signs no more.
    endpoint.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
    assert service.secrets_in_force(settings, endpoint) == [rotated["secret"]]


async def test_secrets_never_reach_reads_nor_audit_events(client, login_as, factory) -> None:
    user = await login_as(client)
    created = await create(client, user)
    rotated = await (await client.post(f"{WEBHOOKS}/{created['id']}/rotate-secret", headers=user.headers)).json()
    await client.patch(f"{WEBHOOKS}/{created['id']}", json={"enabled": False}, headers=user.headers)
    reads = [await (await client.get(WEBHOOKS, headers=user.headers)).text(),
             await (await client.get(f"{WEBHOOKS}/{created['id']}", headers=user.headers)).text()]
    async with factory() as session:
        events = await audit.events_of(session, service.AGGREGATE, created["id"])
    assert [event.type for event in events] == ["webhook.created", "webhook.secret_rotated", "webhook.updated"]
    recorded = json.dumps([event.data for event in events])
    for text in [*reads, recorded]:
        assert created["secret"] not in text and rotated["secret"] not in text
        assert "whsec_" not in text
    # Nor the URL's query, where integrators put tokens.
    assert "abc123" not in recorded and events[0].data["url"] == "https://hooks.example.com/virtuoz?…"
    assert all(event.actor == str(user.user_id) for event in events)


@pytest.mark.parametrize(("fields", "code", "field"), [
    ({"url": "not a url"}, "invalid_url", "url"),
    ({"url": "/relative/path"}, "invalid_url", "url"),
    ({"url": "ftp://example.com/hook"}, "invalid_url", "url"),
    ({"url": "https://user:pass@example.com/hook"}, "invalid_url", "url"),
    ({"events": ["deposit.credited", "kyc.submitted"]}, "unknown_event_type", "events"),
    ({"events": ["withdrawal.sanctions_hit"]}, "unknown_event_type", "events"),
    ({"events": ["ticket.internal_note_added"]}, "unknown_event_type", "events"),
    ({"events": []}, "validation_error", None),
    ({"secret": "whsec_mine"}, "validation_error", None),
    ({"url": None}, "validation_error", None),
])
async def test_bad_input_is_a_422_and_creates_nothing(client, login_as, fields, code, field) -> None:
    user = await login_as(client)
    refused = (await create(client, user, status=422, **fields))["error"]
    assert refused["code"] == code, refused
    if field is not None:
        assert refused["details"]["field"] == field
    if code == "unknown_event_type":
        assert refused["details"]["unknown"] == sorted(set(fields["events"]) - {"deposit.credited"})
    assert await listed(client, user) == []


async def test_plain_http_and_private_addresses_need_the_flag(make_client, settings, login_as) -> None:
    strict = await make_client(settings.model_copy(update={"webhook_allow_private": False}))
    user = await login_as(strict)
    for url in ("http://hooks.example.com/virtuoz", "https://127.0.0.1/hook", "https://10.1.2.3/hook",
                "https://[::1]/hook", "https://169.254.169.254/latest"):
        refused = (await create(strict, user, status=422, url=url))["error"]
        assert (refused["code"], refused["details"]["field"]) == ("invalid_url", "url"), (url, refused)
    assert await listed(strict, user) == []
    # devnet and test allow a local receiver by default
    local = await make_client(settings)
    other = await login_as(local)
    assert (await create(local, other, url="http://127.0.0.1:8999/hook"))["url"] == "http://127.0.0.1:8999/hook"


async def test_a_patch_is_checked_like_a_create_and_changes_nothing_when_refused(client, login_as) -> None:
    user = await login_as(client)
    created = await create(client, user)
    for payload, code in (({"url": "ftp://example.com"}, "invalid_url"),
                          ({"events": ["nope.never"]}, "unknown_event_type"),
                          ({"enabled": None}, "validation_error"), ({"secret": "x"}, "validation_error")):
        response = await client.patch(f"{WEBHOOKS}/{created['id']}", json=payload, headers=user.headers)
        assert (response.status, (await response.json())["error"]["code"]) == (422, code), payload
    unchanged = await (await client.get(f"{WEBHOOKS}/{created['id']}", headers=user.headers)).json()
    assert unchanged["url"] == URL and unchanged["events"] == created["events"]
    assert unchanged["updated_at"] == created["updated_at"]


async def test_over_the_cap_is_a_conflict(make_client, settings, login_as) -> None:
    client = await make_client(settings.model_copy(update={"webhook_max_per_user": 2}))
    user = await login_as(client)
    await create(client, user)
    await create(client, user)
    refused = (await create(client, user, status=409))["error"]
    assert refused["code"] == "webhook_limit_reached" and refused["details"]["limit"] == 2
    assert len(await listed(client, user)) == 2
    # the cap is per user
    assert (await create(client, await login_as(client)))["id"]


async def test_creates_at_once_cannot_pass_the_cap_together(make_client, settings, login_as) -> None:
    client = await make_client(settings.model_copy(update={"webhook_max_per_user": 2}))
    user = await login_as(client)
    answers = await asyncio.gather(*(client.post(WEBHOOKS, json={"url": URL, "events": ["*"]}, headers=user.headers)
                                     for _ in range(5)))
    assert sorted(answer.status for answer in answers) == [201, 201, 409, 409, 409]
    assert len(await listed(client, user)) == 2


async def test_another_users_endpoint_does_not_exist(client, login_as) -> None:
    owner, other = await login_as(client), await login_as(client)
    created = await create(client, owner)
    test = await (await client.post(f"{WEBHOOKS}/{created['id']}/test", headers=owner.headers)).json()
    paths = [("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/rotate-secret"), ("GET", "/deliveries"),
             ("POST", "/test"), ("POST", f"/deliveries/{test['id']}/redeliver")]
    for method, tail in paths:
        kwargs = {"json": {"enabled": False}} if method == "PATCH" else {}
        response = await client.request(method, f"{WEBHOOKS}/{created['id']}{tail}", headers=other.headers, **kwargs)
        assert (response.status, (await response.json())["error"]["code"]) == (404, "webhook_not_found"), tail
    assert await listed(client, other) == []
    # Untouched by all that.
    kept = await (await client.get(f"{WEBHOOKS}/{created['id']}", headers=owner.headers)).json()
    assert kept["enabled"] is True and kept["url"] == URL
    # Another endpoint's delivery, through one's own endpoint.
    mine = await create(client, other)
    response = await client.post(f"{WEBHOOKS}/{mine['id']}/deliveries/{test['id']}/redeliver", headers=other.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (404, "webhook_delivery_not_found")


async def test_test_and_redeliver_queue_deliveries_of_one_event(client, login_as, factory) -> None:
    user = await login_as(client)
    created = await create(client, user, events=["withdrawal.confirmed"])  # a test is sent whatever it wants
    response = await client.post(f"{WEBHOOKS}/{created['id']}/test", headers=user.headers)
    test = await response.json()
    assert response.status == 202, test
    assert test["event_type"] == "webhook.test" and test["state"] == "pending" and test["attempts"] == 0
    response = await client.post(f"{WEBHOOKS}/{created['id']}/deliveries/{test['id']}/redeliver", headers=user.headers)
    again = await response.json()
    assert response.status == 202, again
    assert again["id"] != test["id"] and again["event_id"] == test["event_id"] and again["state"] == "pending"

    page = await (await client.get(f"{WEBHOOKS}/{created['id']}/deliveries?limit=1", headers=user.headers)).json()
    assert [item["id"] for item in page["items"]] == [again["id"]] and page["next_cursor"]
    rest = await (await client.get(f"{WEBHOOKS}/{created['id']}/deliveries",
                                   params={"cursor": page["next_cursor"]}, headers=user.headers)).json()
    assert [item["id"] for item in rest["items"]] == [test["id"]] and rest["next_cursor"] is None
    async with factory() as session:
        event = await session.get_one(WebhookEvent, uuid.UUID(test["event_id"]))
        rows = list(await session.scalars(select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)))
    assert event.data == {"webhook_id": created["id"], "test": True}
    assert {row.endpoint_id for row in rows} == {uuid.UUID(created["id"])} and len(rows) == 2
    delivered = await (await client.get(f"{WEBHOOKS}/{created['id']}/deliveries", params={"state": "delivered"},
                                        headers=user.headers)).json()
    assert delivered["items"] == []
    bad = await client.get(f"{WEBHOOKS}/{created['id']}/deliveries", params={"cursor": "nope"}, headers=user.headers)
    assert (bad.status, (await bad.json())["error"]["code"]) == (422, "invalid_cursor")


async def test_disabling_and_enabling_again(client, login_as, factory) -> None:
    user = await login_as(client)
    created = await create(client, user)
    off = await (await client.patch(f"{WEBHOOKS}/{created['id']}", json={"enabled": False},
                                    headers=user.headers)).json()
    assert off["enabled"] is False and off["disabled_reason"] == "disabled_by_owner"
    refused = await client.post(f"{WEBHOOKS}/{created['id']}/test", headers=user.headers)
    assert (refused.status, (await refused.json())["error"]["code"]) == (409, "webhook_disabled")
    # As the worker leaves an endpoint it disabled after failing for long.
    async with unit_of_work(factory) as session:
        await session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == uuid.UUID(created["id"]))
                              .values(failing_since=utcnow() - timedelta(days=3), disabled_reason="failing"))
    on = await (await client.patch(f"{WEBHOOKS}/{created['id']}", json={"enabled": True},
                                   headers=user.headers)).json()
    assert on["enabled"] is True and on["disabled_reason"] is None and on["failing_since"] is None


def test_the_routes_describe_every_event_type_and_the_signature() -> None:
    for handler in (create_webhook, update_webhook):
        doc = handler.__doc__ or ""
        assert all(f"`{event}`" in doc for event in outbox.event_types())
        assert "HMAC-SHA256" in doc and "VirtuOZ-Signature" in doc
    assert outbox.event_types() == sorted(outbox.EVENT_TYPES)
