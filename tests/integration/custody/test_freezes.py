"""Withdrawal freezes for staff: listed to staff, lifted one by one only by compliance (or an admin),
with a reason, audited; an unknown freeze is 404 and a lifted one 409."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from core.audit import AuditEvent
from core.db import create_engine, session_factory, unit_of_work
from custody import freezes

API = "/api/v1"


def lift_url(user_id: uuid.UUID | str, freeze_id: uuid.UUID | str) -> str:
    return f"{API}/admin/users/{user_id}/freezes/{freeze_id}/lift"


async def freeze(database_url: str, user_id: uuid.UUID, reason: str) -> uuid.UUID:
    engine = create_engine(database_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            return (await freezes.freeze(session, user_id, reason)).id
    finally:
        await engine.dispose()


async def user_events(database_url: str, user_id: uuid.UUID) -> list[AuditEvent]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return list(await session.scalars(select(AuditEvent).where(
                AuditEvent.aggregate_type == "user", AuditEvent.aggregate_id == str(user_id)).order_by(AuditEvent.seq)))
    finally:
        await engine.dispose()


async def frozen(database_url: str, user_id: uuid.UUID) -> bool:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return await freezes.withdrawals_frozen(session, user_id)
    finally:
        await engine.dispose()


async def test_a_freeze_is_lifted_by_compliance_with_a_reason_and_audited(client, login_as, database_url) -> None:
    customer = await login_as(client)
    first = await freeze(database_url, customer.user_id, "reorg shortfall")
    second = await freeze(database_url, customer.user_id, "sanctioned counterparty")
    for role in ((), ("support",), ("operator",)):
        someone = await login_as(client, *role)
        refused = await client.post(lift_url(customer.user_id, first), json={"reason": "ok"}, headers=someone.headers)
        assert refused.status == 403, await refused.text()
    officer = await login_as(client, "compliance")

    lifted = await client.post(lift_url(customer.user_id, first), json={"reason": "shortfall repaid"},
                               headers=officer.headers)

    assert lifted.status == 200, await lifted.text()
    body = await lifted.json()
    assert (body["id"], body["user_id"], body["reason"]) == (str(first), str(customer.user_id), "reorg shortfall")
    assert (body["active"], body["lift_reason"], body["lifted_by"]) == (False, "shortfall repaid",
                                                                        str(officer.user_id))
    assert body["lifted_at"] is not None
    # One freeze lifted, the other still stands: each is decided on its own.
    assert await frozen(database_url, customer.user_id)
    event = (await user_events(database_url, customer.user_id))[-1]
    assert (event.type, event.actor) == ("withdrawals.unfrozen", str(officer.user_id))
    assert event.data == {"freeze_id": str(first), "reason": "shortfall repaid", "frozen_for": "reorg shortfall"}

    admin = await login_as(client, "admin")
    assert (await client.post(lift_url(customer.user_id, second), json={"reason": "false positive"},
                              headers=admin.headers)).status == 200
    assert not await frozen(database_url, customer.user_id)


async def test_lifting_an_unknown_freeze_is_404_and_a_lifted_one_409(client, login_as, database_url) -> None:
    customer, other = await login_as(client), await login_as(client)
    freeze_id = await freeze(database_url, customer.user_id, "reorg shortfall")
    officer = await login_as(client, "compliance")
    for user_id, target in ((customer.user_id, uuid.uuid4()), (other.user_id, freeze_id),
                            (uuid.uuid4(), freeze_id), ("not-a-uuid", freeze_id), (customer.user_id, "nope")):
        missing = await client.post(lift_url(user_id, target), json={"reason": "x"}, headers=officer.headers)
        assert missing.status == 404, (user_id, target, await missing.text())
        assert (await missing.json())["error"]["code"] == "freeze_not_found"
    no_reason = await client.post(lift_url(customer.user_id, freeze_id), json={"reason": " "},
                                  headers=officer.headers)
    assert no_reason.status == 422
    assert (await client.post(lift_url(customer.user_id, freeze_id), json={}, headers=officer.headers)).status == 422

    # Two officers at once: one lifts it, the other meets a lifted freeze.
    answers = await asyncio.gather(*(client.post(lift_url(customer.user_id, freeze_id), json={"reason": "cleared"},
                                                 headers=officer.headers) for _ in range(2)))
    assert sorted(answer.status for answer in answers) == [200, 409]
    conflict = next(answer for answer in answers if answer.status == 409)
    assert (await conflict.json())["error"]["code"] == "freeze_already_lifted"
    events = [event.type for event in await user_events(database_url, customer.user_id)]
    assert events.count("withdrawals.unfrozen") == 1


async def test_staff_list_a_users_freezes_newest_first(client, login_as, database_url) -> None:
    customer = await login_as(client)
    older = await freeze(database_url, customer.user_id, "reorg shortfall")
    newer = await freeze(database_url, customer.user_id, "sanctioned counterparty")
    officer = await login_as(client, "compliance")
    await client.post(lift_url(customer.user_id, older), json={"reason": "repaid"}, headers=officer.headers)

    support = await login_as(client, "support")
    listed = await client.get(f"{API}/admin/users/{customer.user_id}/freezes", headers=support.headers)
    assert listed.status == 200, await listed.text()
    items = (await listed.json())["items"]
    assert [(item["id"], item["active"], item["reason"]) for item in items] == [
        (str(newer), True, "sanctioned counterparty"), (str(older), False, "reorg shortfall")]
    assert (await client.get(f"{API}/admin/users/{customer.user_id}/freezes", headers=customer.headers)).status == 403
    unknown = await client.get(f"{API}/admin/users/{uuid.uuid4()}/freezes", headers=support.headers)
    assert unknown.status == 200 and (await unknown.json())["items"] == []
