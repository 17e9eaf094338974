"""Internal notes: staff-only, and never in a customer's detail, list, notification or stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from sqlalchemy import select

from api.keys import REDIS
from notifications.service import Notification, channel
from tests.factories import wait_until
from tests.integration.support.conftest import TICKETS, error_of, notifications_of, open_ticket, ticket_events

API = "/api/v1"


def secret_note() -> str:
    return f"INTERNAL-{uuid.uuid4().hex}: customer flagged by screening, do not tell them"


async def add_note(client, staff, ticket_id: str, body: str) -> dict:
    response = await client.post(f"{TICKETS}/{ticket_id}/internal-notes", json={"body": body}, headers=staff.headers)
    payload = await response.json()
    assert response.status == 201, payload
    return payload


async def test_support_compliance_and_admin_add_notes(app_client, login_as, db) -> None:
    customer = await login_as(app_client)
    ticket = await open_ticket(app_client, customer)
    for role in ("support", "compliance", "admin"):
        staff = await login_as(app_client, role)
        note = await add_note(app_client, staff, ticket["id"], f"note by {role}")
        assert note["ticket_id"] == ticket["id"] and note["author_id"] == str(staff.user_id)
    detail = await (await app_client.get(f"{TICKETS}/{ticket['id']}", headers=staff.headers)).json()
    assert [n["body"] for n in detail["internal_notes"]] == ["note by support", "note by compliance", "note by admin"]
    events = [e for e in await ticket_events(db, ticket["id"]) if e["type"] == "ticket.internal_note_added"]
    assert len(events) == 3 and all(set(e["data"]) == {"note_id"} for e in events)  # the body stays in its table


async def test_customers_and_operators_cannot_add_notes(app_client, login_as) -> None:
    customer, operator = await login_as(app_client), await login_as(app_client, "operator")
    ticket = await open_ticket(app_client, customer)
    for user in (customer, operator):
        response = await app_client.post(f"{TICKETS}/{ticket['id']}/internal-notes", json={"body": "x"},
                                         headers=user.headers)
        assert (await error_of(response, 403))["code"] == "forbidden"


async def test_a_note_on_an_unknown_ticket_is_404(app_client, login_as) -> None:
    support = await login_as(app_client, "support")
    response = await app_client.post(f"{TICKETS}/{uuid.uuid4()}/internal-notes", json={"body": "x"},
                                     headers=support.headers)
    assert (await error_of(response, 404))["code"] == "ticket_not_found"


async def test_notes_never_reach_the_customer_by_any_route(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    note = secret_note()
    await add_note(app_client, support, ticket["id"], note)
    # and the ticket keeps moving, so every customer-facing channel has something to say
    await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "We are checking."},
                          headers=support.headers)
    await app_client.post(f"{TICKETS}/{ticket['id']}/transition", json={"to": "pending_customer"},
                          headers=support.headers)
    reply = await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "Any news?"},
                                  headers=customer.headers)

    texts = [await reply.text()]
    for path in (f"{TICKETS}/{ticket['id']}", TICKETS, f"{TICKETS}?limit=200"):
        response = await app_client.get(path, headers=customer.headers)
        assert response.status == 200
        texts.append(await response.text())
    assert all(note not in text and "internal_notes" not in text and "INTERNAL-" not in text for text in texts)
    detail = json.loads(texts[1])
    assert [m["body"] for m in detail["messages"]] == [
        "My withdrawal has been pending for a day.", "We are checking.", "Any news?"]

    notifications = await notifications_of(db, customer.user_id)
    assert {n.type for n in notifications} == {"ticket.reply", "ticket.state_changed"}
    assert all(note not in json.dumps(n.data) for n in notifications)
    async with db() as session:  # nobody at all, staff included, was notified with the note
        every = await session.scalars(select(Notification.data).order_by(Notification.id.desc()).limit(500))
        assert all(note not in json.dumps(data) for data in every)


async def test_a_note_does_not_touch_what_the_customer_sees(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    before = await (await app_client.get(f"{TICKETS}/{ticket['id']}", headers=customer.headers)).json()
    await add_note(app_client, support, ticket["id"], secret_note())
    after = await (await app_client.get(f"{TICKETS}/{ticket['id']}", headers=customer.headers)).json()
    assert after == before  # not even updated_at betrays that staff wrote something


async def read_events(response, until_type: str, timeout: float = 10.0) -> list[dict]:
    """SSE events up to and including the first of type ``until_type``."""
    events, current = [], {}
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, f"no {until_type} in {events}"
        line = (await asyncio.wait_for(response.content.readline(), timeout)).decode().rstrip("\n")
        if line == "":
            if "id" in current:
                events.append(current)
                if current.get("event") == until_type:
                    return events
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            current[field] = value


async def test_the_customers_stream_carries_replies_and_moves_but_never_a_note(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    stream = await app_client.get(f"{API}/notifications/stream", headers=customer.headers)
    assert stream.status == 200

    async def subscribed() -> bool:
        [(_, listeners)] = await app_client.app[REDIS].pubsub_numsub(channel(customer.user_id))
        return listeners > 0

    await wait_until(subscribed, what="the customer's stream subscribed to their channel")
    note = secret_note()
    await add_note(app_client, support, ticket["id"], note)
    await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "On it."}, headers=support.headers)
    await app_client.post(f"{TICKETS}/{ticket['id']}/transition", json={"to": "resolved"}, headers=support.headers)
    events = await read_events(stream, "ticket.state_changed")
    stream.close()
    assert [e["event"] for e in events] == ["ticket.reply", "ticket.state_changed"]
    assert json.loads(events[0]["data"])["data"]["body"] == "On it."
    assert json.loads(events[1]["data"])["data"]["to"] == "resolved"
    assert all(note not in e["data"] and "INTERNAL-" not in e["data"] for e in events)


async def test_staff_see_their_own_ticket_as_its_customer(app_client, login_as) -> None:
    employee, colleague = await login_as(app_client, "compliance"), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, employee)
    note = secret_note()
    await add_note(app_client, colleague, ticket["id"], note)
    await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "Looking into it."},
                          headers=colleague.headers)
    reply = await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "Thanks."},
                                  headers=employee.headers)
    assert reply.status == 201
    texts = [await reply.text()]
    for path in (f"{TICKETS}/{ticket['id']}", f"{TICKETS}?limit=200"):
        response = await app_client.get(path, headers=employee.headers)
        assert response.status == 200
        texts.append(await response.text())
    for text in texts:
        assert note not in text and "internal_notes" not in text and "context_links" not in text, text
    own = next(item for item in json.loads(texts[2])["items"] if item["id"] == ticket["id"])
    assert "assignee_id" not in own and "customer_id" not in own
    # The colleague still works the ticket from the staff side.
    staff_side = await (await app_client.get(f"{TICKETS}/{ticket['id']}", headers=colleague.headers)).json()
    assert [n["body"] for n in staff_side["internal_notes"]] == [note]
