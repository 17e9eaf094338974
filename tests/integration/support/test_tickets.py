"""Tickets: creation, customer isolation, lists and pagination, replies and their notifications."""

from __future__ import annotations

import uuid
from datetime import datetime

from support import sla
from core.time import rfc3339
from tests.integration.support.conftest import TICKETS, error_of, notifications_of, open_ticket, ticket_events


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_customer_opens_a_ticket_with_its_sla(app_client, login_as, db) -> None:
    customer = await login_as(app_client)
    ticket = await open_ticket(app_client, customer, priority="high", category="withdrawals")
    assert ticket["state"] == "open" and ticket["priority"] == "high" and ticket["category"] == "withdrawals"
    due = sla.due_times("high", parse(ticket["created_at"]))
    assert parse(ticket["sla"]["first_response_due"]) == due.first_response_due
    assert parse(ticket["sla"]["resolution_due"]) == due.resolution_due
    assert ticket["sla"]["paused"] is False
    assert [m["body"] for m in ticket["messages"]] == ["My withdrawal has been pending for a day."]
    assert ticket["messages"][0]["from_staff"] is False
    # the customer view carries no staff field
    assert not {"customer_id", "assignee_id", "internal_notes", "context_links", "allowed_moves"} & set(ticket)
    assert "first_response_breached_at" not in ticket["sla"]
    events = await ticket_events(db, ticket["id"])
    assert [e["type"] for e in events] == ["ticket.created"]
    assert events[0]["actor"] == str(customer.user_id) and events[0]["data"]["priority"] == "high"


async def test_priority_defaults_to_normal(app_client, login_as) -> None:
    customer = await login_as(app_client)
    assert (await open_ticket(app_client, customer))["priority"] == "normal"


async def test_invalid_tickets_are_422(app_client, login_as) -> None:
    customer = await login_as(app_client)
    for payload in ({"subject": "x"}, {"subject": "  ", "body": "b"}, {"subject": "s", "body": "b", "priority": "asap"},
                    {"subject": "s" * 201, "body": "b"}):
        error = await error_of(await app_client.post(TICKETS, json=payload, headers=customer.headers), 422)
        assert error["code"] == "validation_error"


async def test_tickets_need_a_login(app_client) -> None:
    assert (await app_client.post(TICKETS, json={"subject": "s", "body": "b"})).status == 401
    assert (await app_client.get(TICKETS)).status == 401


async def test_another_customers_ticket_is_not_found(app_client, login_as) -> None:
    alice, bob = await login_as(app_client), await login_as(app_client)
    ticket = await open_ticket(app_client, alice)
    for path in (f"{TICKETS}/{ticket['id']}", f"{TICKETS}/{uuid.uuid4()}", f"{TICKETS}/not-a-uuid"):
        error = await error_of(await app_client.get(path, headers=bob.headers), 404)
        assert error["code"] == "ticket_not_found"
    error = await error_of(await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "mine now"},
                                                 headers=bob.headers), 404)
    assert error["code"] == "ticket_not_found"
    assert (await app_client.get(f"{TICKETS}/{ticket['id']}", headers=alice.headers)).status == 200


async def test_a_customer_lists_only_their_own_tickets_newest_first(app_client, login_as) -> None:
    alice, bob = await login_as(app_client), await login_as(app_client)
    mine = [(await open_ticket(app_client, alice, subject=f"case {n}"))["id"] for n in range(3)]
    await open_ticket(app_client, bob)
    response = await app_client.get(TICKETS, headers=alice.headers)
    body = await response.json()
    assert response.status == 200
    assert [item["id"] for item in body["items"]] == mine[::-1] and body["next_cursor"] is None
    assert "customer_id" not in body["items"][0]


async def test_lists_page_with_an_opaque_cursor(app_client, login_as) -> None:
    customer = await login_as(app_client)
    created = [(await open_ticket(app_client, customer, subject=f"case {n}"))["id"] for n in range(5)]
    seen, cursor = [], None
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        body = await (await app_client.get(TICKETS + query, headers=customer.headers)).json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == created[::-1]
    error = await error_of(await app_client.get(TICKETS + "?cursor=garbage", headers=customer.headers), 422)
    assert error["code"] == "invalid_cursor"


async def test_staff_list_every_ticket_with_filters(app_client, login_as) -> None:
    alice, bob, support = await login_as(app_client), await login_as(app_client), await login_as(app_client, "support")
    urgent = await open_ticket(app_client, alice, priority="urgent")
    low = await open_ticket(app_client, bob, priority="low")
    body = await (await app_client.get(f"{TICKETS}?priority=urgent&limit=200", headers=support.headers)).json()
    ids = {item["id"] for item in body["items"]}
    assert urgent["id"] in ids and low["id"] not in ids
    item = next(item for item in body["items"] if item["id"] == urgent["id"])
    assert item["customer_id"] == str(alice.user_id) and item["sla"]["first_response_breached_at"] is None
    body = await (await app_client.get(f"{TICKETS}?state=open&breached=false&limit=200",
                                       headers=support.headers)).json()
    assert all(item["state"] == "open" and item["sla"]["resolution_breached_at"] is None for item in body["items"])
    assert (await app_client.get(f"{TICKETS}?state=nonsense", headers=support.headers)).status == 422


async def test_only_staff_filter_on_breaches(app_client, login_as) -> None:
    customer = await login_as(app_client)
    error = await error_of(await app_client.get(f"{TICKETS}?breached=true", headers=customer.headers), 403)
    assert error["code"] == "staff_only_filter"


async def test_a_staff_reply_is_the_first_response_and_notifies_the_owner(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    response = await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "Looking into it."},
                                     headers=support.headers)
    body = await response.json()
    assert response.status == 201, body
    assert body["state"] == "in_progress" and body["first_responded_at"] is not None
    assert body["assignee_id"] == str(support.user_id)
    assert [(m["from_staff"], m["body"]) for m in body["messages"]][-1] == (True, "Looking into it.")

    [notification] = await notifications_of(db, customer.user_id)
    assert notification.type == "ticket.reply"
    assert notification.data == {"ticket_id": ticket["id"], "subject": ticket["subject"], "state": "in_progress",
                                 "message_id": body["messages"][-1]["id"], "body": "Looking into it."}
    types = [e["type"] for e in await ticket_events(db, ticket["id"])]
    assert types == ["ticket.created", "ticket.message_added", "ticket.assigned", "ticket.first_response",
                     "ticket.state_changed"]

    # a later reply is not a first response again
    again = await (await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "Found it."},
                                         headers=support.headers)).json()
    assert again["first_responded_at"] == body["first_responded_at"]


async def test_a_customer_reply_notifies_the_assignee_not_the_customer(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "Which tx?"}, headers=support.headers)
    response = await app_client.post(f"{TICKETS}/{ticket['id']}/messages", json={"body": "0xabc"},
                                     headers=customer.headers)
    body = await response.json()
    assert response.status == 201 and body["messages"][-1]["from_staff"] is False
    assert [n.type for n in await notifications_of(db, customer.user_id)] == ["ticket.reply"]
    [to_support] = await notifications_of(db, support.user_id)
    assert to_support.type == "ticket.customer_reply" and to_support.data["ticket_id"] == ticket["id"]


async def test_staff_see_the_ticket_of_any_customer(app_client, login_as) -> None:
    customer, operator = await login_as(app_client), await login_as(app_client, "operator")
    ticket = await open_ticket(app_client, customer)
    response = await app_client.get(f"{TICKETS}/{ticket['id']}", headers=operator.headers)
    body = await response.json()
    assert response.status == 200
    assert body["customer_id"] == str(customer.user_id) and body["internal_notes"] == []
    assert body["allowed_moves"] == ["in_progress", "pending_customer", "resolved"]
    assert body["sla"]["first_response_due"] == ticket["sla"]["first_response_due"]


async def test_created_at_is_the_sla_start(app_client, login_as) -> None:
    customer = await login_as(app_client)
    ticket = await open_ticket(app_client, customer, priority="urgent")
    due = sla.due_times("urgent", parse(ticket["created_at"]))
    assert ticket["sla"]["resolution_due"] == rfc3339(due.resolution_due)


async def test_a_retried_creation_with_the_same_idempotency_key_opens_one_ticket(app_client, login_as) -> None:
    customer = await login_as(app_client)
    headers = {**customer.headers, "Idempotency-Key": f"ticket-{uuid.uuid4()}"}
    payload = {"subject": "Card declined", "body": "Twice."}
    first = await (await app_client.post(TICKETS, json=payload, headers=headers)).json()
    second = await (await app_client.post(TICKETS, json=payload, headers=headers)).json()
    assert first["id"] == second["id"]
    listed = await (await app_client.get(TICKETS, headers=customer.headers)).json()
    assert [item["id"] for item in listed["items"]] == [first["id"]]


async def test_the_openapi_document_covers_the_helpdesk(app_client) -> None:
    document = await (await app_client.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    expected = {
        ("/api/v1/helpdesk/tickets", "post"), ("/api/v1/helpdesk/tickets", "get"),
        ("/api/v1/helpdesk/tickets/{ticket_id}", "get"),
        ("/api/v1/helpdesk/tickets/{ticket_id}/messages", "post"),
        ("/api/v1/helpdesk/tickets/{ticket_id}/transition", "post"),
        ("/api/v1/helpdesk/tickets/{ticket_id}/internal-notes", "post"),
        ("/api/v1/helpdesk/tickets/{ticket_id}/context-links", "post"),
        ("/api/v1/platform/helpdesk/sla", "post"),
    }
    assert all(method in paths.get(path, {}) for path, method in expected)
    assert paths["/api/v1/helpdesk/tickets/{ticket_id}/internal-notes"]["post"]["x-access"] == \
        "roles: admin, compliance, support"
    detail = paths["/api/v1/helpdesk/tickets/{ticket_id}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert detail["schema"]["$ref"].endswith("/TicketDetail")
