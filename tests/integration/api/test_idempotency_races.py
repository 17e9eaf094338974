"""Idempotency-Key under slowness: a request still running when its claim's lease ends is not run a
second time by a retry that takes the claim over. The claim carries a version; the first request's
completion is fenced by it, so the request that lost its claim rolls back whatever it did."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from aiohttp import web
from pydantic import BaseModel
from sqlalchemy import func, select

from api import idempotency
from api.access import AUTHENTICATED
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from core import audit
from core.audit import AuditEvent
from core.db import create_engine, session_factory
from core.errors import Conflict

LEASE = timedelta(seconds=0.4)
WORK_SECONDS = 1.2  # three leases: the retry finds the first claim stale while the first still runs

slow_payments = Routes(tag="test")


class SlowPaymentIn(BaseModel):
    reference: str
    amount: str


class SlowPaymentOut(BaseModel):
    id: uuid.UUID
    reference: str


@slow_payments.post("/test/slow-payments", access=AUTHENTICATED, body=SlowPaymentIn, responses={201: SlowPaymentOut},
                    idempotent=True)
async def pay_slowly(request: web.Request, body: SlowPaymentIn) -> SlowPaymentOut:
    """The effect first (one audit event per executed payment), then a slow dependency."""
    await audit.append(db_session(request), "test_slow_payment", f"{body.reference}:{uuid.uuid4()}", "payment.made",
                       {"reference": body.reference, "amount": body.amount}, actor=current(request).user_id)
    await asyncio.sleep(WORK_SECONDS)
    return SlowPaymentOut(id=uuid.uuid4(), reference=body.reference)


@pytest.fixture
async def slow_client(make_client, settings, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(idempotency, "IN_FLIGHT_LEASE", LEASE)
    return await make_client(settings, extra_routes=[slow_payments])


async def effects(database_url: str, reference: str) -> int:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return await session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.aggregate_type == "test_slow_payment", AuditEvent.data["reference"].astext == reference))
    finally:
        await engine.dispose()


async def test_slow_request_is_not_run_twice(slow_client, login_as, database_url) -> None:
    user = await login_as(slow_client)
    reference = uuid.uuid4().hex
    headers = {**user.headers, "Idempotency-Key": f"slow-{reference}"}
    payload = {"reference": reference, "amount": "5.00"}

    async def retry_after_the_lease() -> web.Response:
        await asyncio.sleep(LEASE.total_seconds() * 1.5)
        return await slow_client.post("/api/v1/test/slow-payments", json=payload, headers=headers)

    first, retry = await asyncio.gather(slow_client.post("/api/v1/test/slow-payments", json=payload, headers=headers),
                                        retry_after_the_lease())

    assert await effects(database_url, reference) == 1
    # The retry took the claim over and ran; the first lost its claim, so its effect was rolled back.
    assert retry.status == 201, await retry.text()
    assert first.status == 409, await first.text()
    assert (await first.json())["error"]["code"] == "idempotency_in_flight"
    again = await slow_client.post("/api/v1/test/slow-payments", json=payload, headers=headers)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.read() == await retry.read()
    assert await effects(database_url, reference) == 1


@slow_payments.post("/test/slow-refusals", access=AUTHENTICATED, body=SlowPaymentIn, responses={201: SlowPaymentOut},
                    idempotent=True)
async def refuse_slowly_once(request: web.Request, body: SlowPaymentIn) -> SlowPaymentOut:
    """Its first run is slow and ends in a refusal; a later run of the same payment is quick and succeeds."""
    runs = RUNS.setdefault(body.reference, 0)
    RUNS[body.reference] = runs + 1
    if runs == 0:
        await asyncio.sleep(WORK_SECONDS)
        raise Conflict("refused after a while", code="refused")
    return SlowPaymentOut(id=uuid.uuid4(), reference=body.reference)


RUNS: dict[str, int] = {}


async def test_a_request_that_lost_its_claim_does_not_overwrite_the_stored_answer(slow_client, login_as) -> None:
    """The retry took the stale claim over and finished first; the first request's late refusal is not
    stored over the retry's answer."""
    user = await login_as(slow_client)
    reference = uuid.uuid4().hex
    headers = {**user.headers, "Idempotency-Key": f"slow-{reference}"}
    payload = {"reference": reference, "amount": "1.00"}
    first = asyncio.ensure_future(slow_client.post("/api/v1/test/slow-refusals", json=payload, headers=headers))
    await asyncio.sleep(LEASE.total_seconds() * 1.5)
    retry = await slow_client.post("/api/v1/test/slow-refusals", json=payload, headers=headers)
    assert retry.status == 201, await retry.text()
    late = await first
    assert late.status in (409, 201), await late.text()

    replay = await slow_client.post("/api/v1/test/slow-refusals", json=payload, headers=headers)
    assert replay.status == 201, await replay.text()
    assert await replay.read() == await retry.read()
