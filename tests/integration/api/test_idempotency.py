"""Idempotency-Key on financial POSTs: one effect, whatever is retried or raced."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import func, select

from api.access import AUTHENTICATED
from api.principal import current
from api.middleware import db_session
from api.registry import Routes
from core import audit
from core.audit import AuditEvent
from core.db import create_engine, session_factory
from core.errors import Conflict

payments = Routes(tag="test")


class PaymentIn(BaseModel):
    reference: str
    amount: str


class PaymentOut(BaseModel):
    id: uuid.UUID
    reference: str
    amount: str


@payments.post("/test/payments", access=AUTHENTICATED, body=PaymentIn, responses={201: PaymentOut}, idempotent=True)
async def pay(request: web.Request, body: PaymentIn) -> PaymentOut:
    """An effect to count: one audit event per executed payment."""
    await asyncio.sleep(0.2)  # long enough for concurrent twins to overlap
    if body.amount == "refuse":
        raise Conflict("refused on purpose", code="refused")
    payment_id = uuid.uuid4()
    await audit.append(db_session(request), "test_payment", body.reference, "payment.made",
                       {"amount": body.amount}, actor=current(request).user_id)
    return PaymentOut(id=payment_id, reference=body.reference, amount=body.amount)


@pytest.fixture
async def app_client(make_client, settings):
    return await make_client(settings, extra_routes=[payments])


async def effects(database_url: str, reference: str) -> int:
    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        count = await session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.aggregate_type == "test_payment", AuditEvent.aggregate_id == reference))
    await engine.dispose()
    return count


async def test_same_key_and_body_returns_the_stored_response_byte_for_byte(app_client, login_as, database_url):
    user = await login_as(app_client)
    reference = uuid.uuid4().hex
    headers = {**user.headers, "Idempotency-Key": "key-1"}
    first = await app_client.post("/api/v1/test/payments", json={"reference": reference, "amount": "1.00"}, headers=headers)
    second = await app_client.post("/api/v1/test/payments", json={"reference": reference, "amount": "1.00"}, headers=headers)
    assert first.status == second.status == 201
    assert await first.read() == await second.read()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await effects(database_url, reference) == 1


async def test_same_key_other_body_is_422(app_client, login_as):
    user = await login_as(app_client)
    headers = {**user.headers, "Idempotency-Key": "key-2"}
    await app_client.post("/api/v1/test/payments", json={"reference": "a", "amount": "1.00"}, headers=headers)
    other = await app_client.post("/api/v1/test/payments", json={"reference": "a", "amount": "2.00"}, headers=headers)
    assert other.status == 422
    assert (await other.json())["error"]["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_per_user(app_client, login_as, database_url):
    alice, bob = await login_as(app_client), await login_as(app_client)
    reference = uuid.uuid4().hex
    for user in (alice, bob):
        response = await app_client.post("/api/v1/test/payments", json={"reference": reference, "amount": "1.00"},
                                         headers={**user.headers, "Idempotency-Key": "shared-key"})
        assert response.status == 201
    assert await effects(database_url, reference) == 2


async def test_refusals_are_stored_too(app_client, login_as, database_url):
    user = await login_as(app_client)
    headers = {**user.headers, "Idempotency-Key": "key-3"}
    body = {"reference": uuid.uuid4().hex, "amount": "refuse"}
    first = await app_client.post("/api/v1/test/payments", json=body, headers=headers)
    second = await app_client.post("/api/v1/test/payments", json=body, headers=headers)
    assert first.status == second.status == 409
    assert await first.read() == await second.read()


async def test_eight_concurrent_identical_requests_make_one_effect(app_client, login_as, database_url):
    user = await login_as(app_client)
    reference = uuid.uuid4().hex
    headers = {**user.headers, "Idempotency-Key": f"race-{reference}"}
    responses = await asyncio.gather(*(
        app_client.post("/api/v1/test/payments", json={"reference": reference, "amount": "5.00"}, headers=headers)
        for _ in range(8)
    ))
    statuses = sorted(response.status for response in responses)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    for response in responses:
        if response.status == 409:
            assert (await response.json())["error"]["code"] == "idempotency_in_flight"
    assert await effects(database_url, reference) == 1
    retry = await app_client.post("/api/v1/test/payments", json={"reference": reference, "amount": "5.00"}, headers=headers)
    assert retry.status == 201 and retry.headers["Idempotent-Replayed"] == "true"


async def test_an_invalid_key_is_refused(app_client, login_as):
    user = await login_as(app_client)
    response = await app_client.post("/api/v1/test/payments", json={"reference": "x", "amount": "1"},
                                     headers={**user.headers, "Idempotency-Key": "x" * 300})
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "invalid_idempotency_key"


async def test_openapi_documents_the_header(app_client):
    document = await (await app_client.get("/api/v1/openapi.json")).json()
    parameters = document["paths"]["/api/v1/test/payments"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in parameters)
