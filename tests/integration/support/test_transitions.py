"""Staff moves through the state machine, their 409s, notifications and audit trail."""

from __future__ import annotations

import uuid

from support.projection import reduce_ticket, stored_ticket
from tests.integration.support.conftest import TICKETS, error_of, notifications_of, open_ticket, ticket_events


async def move(client, staff, ticket_id: str, to: str):
    return await client.post(f"{TICKETS}/{ticket_id}/transition", json={"to": to}, headers=staff.headers)


async def moved(client, staff, ticket_id: str, to: str) -> dict:
    response = await move(client, staff, ticket_id, to)
    body = await response.json()
    assert response.status == 200, body
    return body


async def test_a_ticket_lives_its_whole_life(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    tid = ticket["id"]
    body = await moved(app_client, support, tid, "in_progress")
    assert body["state"] == "in_progress" and body["assignee_id"] == str(support.user_id)
    body = await moved(app_client, support, tid, "pending_customer")
    assert body["sla"]["paused"] is True and body["sla"]["paused_since"] is not None
    # the customer answers: back to support, clock running again
    reply = await (await app_client.post(f"{TICKETS}/{tid}/messages", json={"body": "Here is the hash."},
                                         headers=customer.headers)).json()
    assert reply["state"] == "in_progress" and reply["sla"]["paused"] is False
    body = await moved(app_client, support, tid, "resolved")
    assert body["resolved_at"] is not None and body["allowed_moves"] == ["closed", "in_progress"]
    body = await moved(app_client, support, tid, "closed")
    assert body["closed_at"] is not None and body["allowed_moves"] == []

    changes = [n.data for n in await notifications_of(db, customer.user_id) if n.type == "ticket.state_changed"]
    assert [(c["from"], c["to"]) for c in changes] == [
        ("open", "in_progress"), ("in_progress", "pending_customer"), ("in_progress", "resolved"),
        ("resolved", "closed")]
    assert all(set(c) == {"ticket_id", "subject", "from", "to"} for c in changes)

    events = await ticket_events(db, tid)
    moves = [(e["data"]["from"], e["data"]["to"], e["data"]["action"]) for e in events
             if e["type"] == "ticket.state_changed"]
    assert moves == [("open", "in_progress", "start"), ("in_progress", "pending_customer", "await_customer"),
                     ("pending_customer", "in_progress", "customer_reply"), ("in_progress", "resolved", "resolve"),
                     ("resolved", "closed", "close")]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    # the audit trail rebuilds the ticket row exactly (what the admin replay compares)
    state = None
    for event in events:
        state = reduce_ticket(state, event)
    async with db() as session:
        assert state == await stored_ticket(session, tid)


async def test_an_illegal_move_is_409_naming_the_allowed_ones(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    error = await error_of(await move(app_client, support, ticket["id"], "closed"), 409)
    assert error["code"] == "invalid_transition"
    assert error["details"] == {"from": "open", "to": "closed",
                                "allowed_moves": ["in_progress", "pending_customer", "resolved"]}
    error = await error_of(await move(app_client, support, ticket["id"], "open"), 409)
    assert error["details"]["to"] == "open"
    assert (await error_of(await move(app_client, support, ticket["id"], "archived"), 422))["code"] == \
        "validation_error"


async def test_a_closed_ticket_takes_no_reply(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    await moved(app_client, support, ticket["id"], "resolved")
    await moved(app_client, support, ticket["id"], "closed")
    for user in (customer, support):
        response = await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "hello?"},
                                         headers=user.headers)
        error = await error_of(response, 409)
        assert error["code"] == "invalid_transition" and error["details"]["state"] == "closed"


async def test_a_customer_reply_reopens_a_resolved_ticket(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    await moved(app_client, support, ticket["id"], "resolved")
    body = await (await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "Still broken."},
                                        headers=customer.headers)).json()
    assert body["state"] == "in_progress" and body["resolved_at"] is None and body["sla"]["paused"] is False


async def test_staff_may_reopen_a_resolved_ticket(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    await moved(app_client, support, ticket["id"], "resolved")
    assert (await moved(app_client, support, ticket["id"], "in_progress"))["state"] == "in_progress"


async def test_customers_cannot_move_tickets(app_client, login_as) -> None:
    customer = await login_as(app_client)
    ticket = await open_ticket(app_client, customer)
    assert (await error_of(await move(app_client, customer, ticket["id"], "resolved"), 403))["code"] == "forbidden"


async def test_moving_an_unknown_ticket_is_404(app_client, login_as) -> None:
    support = await login_as(app_client, "support")
    error = await error_of(await move(app_client, support, str(uuid.uuid4()), "in_progress"), 404)
    assert error["code"] == "ticket_not_found"
