"""Context links: staff attach what a ticket is about; internal refs must exist."""

from __future__ import annotations

import uuid

from tests.factories import credit_user, make_escrow
from tests.integration.support.conftest import TICKETS, error_of, open_ticket, ticket_events


async def link(client, staff, ticket_id: str, kind: str, ref: str):
    return await client.post(f"{TICKETS}/{ticket_id}/context-links", json={"kind": kind, "ref": ref},
                             headers=staff.headers)


async def test_a_link_to_an_existing_user(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    response = await link(app_client, support, ticket["id"], "user", str(customer.user_id).upper())
    body = await response.json()
    assert response.status == 201, body
    assert body["kind"] == "user" and body["ref"] == str(customer.user_id)  # one spelling per id
    assert body["created_by"] == str(support.user_id)
    detail = await (await app_client.get(f"{TICKETS}/{ticket['id']}", headers=support.headers)).json()
    assert [(item["kind"], item["ref"]) for item in detail["context_links"]] == [("user", str(customer.user_id))]
    [event] = [e for e in await ticket_events(db, ticket["id"]) if e["type"] == "ticket.context_link_added"]
    assert event["data"]["ref"] == str(customer.user_id)


async def test_an_unknown_user_is_422(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    for ref in (str(uuid.uuid4()), "not-a-uuid"):
        error = await error_of(await link(app_client, support, ticket["id"], "user", ref), 422)
        assert error["code"] == "unknown_reference" and error["details"]["reason"] == "not_found"


async def test_a_link_to_a_url(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    response = await link(app_client, support, ticket["id"], "url", "https://etherscan.io/tx/0xabc?x=1")
    body = await response.json()
    assert response.status == 201, body
    assert body["ref"] == "https://etherscan.io/tx/0xabc?x=1"


async def test_bad_urls_are_422(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    for ref in ("not a url", "ftp://files.example.com/x", "javascript:alert(1)", "https://", "/relative/path",
                "https://user:secret@example.com/"):
        error = await error_of(await link(app_client, support, ticket["id"], "url", ref), 422)
        assert error["code"] == "invalid_url", ref
        assert "secret" not in str(error)


async def test_withdrawals_deposits_and_ledger_transfers_must_exist(app_client, login_as, db) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    for kind in ("withdrawal", "deposit", "transaction"):
        error = await error_of(await link(app_client, support, ticket["id"], kind, str(uuid.uuid4())), 422)
        assert error["code"] == "unknown_reference" and error["details"]["reason"] == "not_found"
    posted = await credit_user(db, customer.user_id, "USD", 100)
    response = await link(app_client, support, ticket["id"], "transaction", str(posted.id))
    assert response.status == 201, await response.text()


async def test_an_unknown_kind_is_a_validation_error(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    error = await error_of(await link(app_client, support, ticket["id"], "invoice", "42"), 422)
    assert error["code"] == "validation_error"


async def test_the_same_link_twice_is_a_conflict(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    assert (await link(app_client, support, ticket["id"], "user", str(customer.user_id))).status == 201
    error = await error_of(await link(app_client, support, ticket["id"], "user", str(customer.user_id)), 409)
    assert error["code"] == "context_link_exists"
    # the refusal rolled back nothing else: the ticket still takes other links
    assert (await link(app_client, support, ticket["id"], "url", "https://example.com/a")).status == 201


async def test_links_are_staff_only(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    ticket = await open_ticket(app_client, customer)
    await link(app_client, support, ticket["id"], "url", "https://example.com/internal-dashboard")
    error = await error_of(await link(app_client, customer, ticket["id"], "url", "https://example.com"), 403)
    assert error["code"] == "forbidden"
    text = await (await app_client.get(f"{TICKETS}/{ticket['id']}", headers=customer.headers)).text()
    assert "internal-dashboard" not in text and "context_links" not in text


async def test_a_link_on_an_unknown_ticket_is_404(app_client, login_as) -> None:
    support = await login_as(app_client, "support")
    error = await error_of(await link(app_client, support, str(uuid.uuid4()), "url", "https://example.com"), 404)
    assert error["code"] == "ticket_not_found"


async def test_a_link_to_an_existing_escrow(app_client, login_as) -> None:
    customer, support = await login_as(app_client), await login_as(app_client, "support")
    escrow_id = (await make_escrow(app_client, customer, title="Laptop", amount="5.00"))["id"]
    ticket = await open_ticket(app_client, customer)
    response = await link(app_client, support, ticket["id"], "escrow", escrow_id)
    assert response.status == 201, await response.text()
    error = await error_of(await link(app_client, support, ticket["id"], "escrow", str(uuid.uuid4())), 422)
    assert error["code"] == "unknown_reference"
