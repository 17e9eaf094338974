"""Staff review of transactions: the list over ledger transfers, filters, flag and resolve."""

from __future__ import annotations

import uuid

import pytest

from core import audit
from tests.factories import credit_user

ETH = 10**18


async def post(factory, user, currency, amount, *, type="deposit", reference_kind=None, reference_id=None):
    posted = await credit_user(factory, user, currency, amount, type=type, reference_kind=reference_kind,
                               reference_id=reference_id)
    return str(posted.id)


async def listing(client, staff, query: str) -> dict:
    response = await client.get(f"/api/v1/admin/transactions?{query}", headers=staff.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_list_filters_and_detail(client, login_as, factory) -> None:
    support, user = await login_as(client, "support"), await login_as(client)
    small = await post(factory, user.user_id, "ETH", ETH // 2)
    large = await post(factory, user.user_id, "ETH", 3 * ETH)
    credit = await post(factory, user.user_id, "USD", 500, type="sandbox_credit")

    mine = await listing(client, support, f"user_id={user.user_id}")
    assert [item["id"] for item in mine["items"]] == [credit, large, small]  # newest first
    assert mine["items"][1]["postings"] == [
        {"owner_type": "system", "user_id": None, "account": "chain_deposits", "currency": "ETH", "amount": "-3"},
        {"owner_type": "user", "user_id": str(user.user_id), "account": "available", "currency": "ETH", "amount": "3"}]
    assert mine["items"][1]["flagged"] is False and mine["items"][1]["review"] is None

    deposits = await listing(client, support, f"user_id={user.user_id}&type=deposit")
    assert [item["id"] for item in deposits["items"]] == [large, small]
    big = await listing(client, support, f"user_id={user.user_id}&currency=ETH&amount_min=1&amount_max=3")
    assert [item["id"] for item in big["items"]] == [large]
    paged = await listing(client, support, f"user_id={user.user_id}&limit=2")
    assert len(paged["items"]) == 2 and paged["next_cursor"]
    rest = await listing(client, support, f"user_id={user.user_id}&limit=2&cursor={paged['next_cursor']}")
    assert [item["id"] for item in rest["items"]] == [small] and rest["next_cursor"] is None

    credited = await listing(client, support, "state=credited&limit=100")  # a deposit's own state
    assert all(item["state"] == "credited" and item["reference_kind"] == "deposit" for item in credited["items"])

    detail = await client.get(f"/api/v1/admin/transactions/{large}", headers=support.headers)
    assert detail.status == 200 and (await detail.json())["type"] == "deposit"
    assert (await client.get(f"/api/v1/admin/transactions/{uuid.uuid4()}", headers=support.headers)).status == 404


@pytest.mark.parametrize("query", ["amount_min=1", "currency=XYZ&amount_min=1", "currency=ETH&amount_min=1e3",
                                   "created_from=2001-01-01T00:00:00", "flagged=maybe"],
                         ids=["no-currency", "unknown-currency", "exponent", "naive-time", "flagged-not-bool"])
async def test_bad_filters_are_a_422(client, login_as, query) -> None:
    support = await login_as(client, "support")
    response = await client.get(f"/api/v1/admin/transactions?{query}", headers=support.headers)
    assert response.status == 422


async def test_flag_then_resolve_once(client, login_as, factory) -> None:
    support, officer, user = await login_as(client, "support"), await login_as(client, "compliance"), \
        await login_as(client)
    tx = await post(factory, user.user_id, "USDC", 9_900 * 10**6)
    flagged = await client.post(f"/api/v1/admin/transactions/{tx}/flag", json={"reason": "structuring pattern"},
                                headers=support.headers)
    assert flagged.status == 200
    body = await flagged.json()
    assert body["flagged"] is True and body["review"]["reason"] == "structuring pattern"
    assert body["review"]["flagged_by"] == str(support.user_id)
    again = await client.post(f"/api/v1/admin/transactions/{tx}/flag", json={"reason": "x"}, headers=officer.headers)
    assert again.status == 409 and (await again.json())["error"]["code"] == "already_flagged"

    only_flagged = await listing(client, officer, f"user_id={user.user_id}&flagged=true")
    assert [item["id"] for item in only_flagged["items"]] == [tx]

    # Support may flag but not resolve.
    assert (await client.post(f"/api/v1/admin/transactions/{tx}/resolve", json={"resolution": "cleared"},
                              headers=support.headers)).status == 403
    resolved = await client.post(f"/api/v1/admin/transactions/{tx}/resolve",
                                 json={"resolution": "reported", "note": "STR filed"}, headers=officer.headers)
    assert resolved.status == 200
    review = (await resolved.json())["review"]
    assert (review["state"], review["resolution_note"], review["resolved_by"]) == (
        "reported", "STR filed", str(officer.user_id))
    twice = await client.post(f"/api/v1/admin/transactions/{tx}/resolve", json={"resolution": "cleared"},
                              headers=officer.headers)
    assert twice.status == 409 and (await twice.json())["error"]["code"] == "review_already_resolved"
    assert [i["id"] for i in (await listing(client, officer, f"user_id={user.user_id}&review=reported"))["items"]] \
        == [tx]
    assert (await listing(client, officer, f"user_id={user.user_id}&flagged=true"))["items"] == []

    async with factory() as session:
        events = await audit.events_of(session, "transaction_review", tx)
    assert [(e.type, e.actor) for e in events] == [("transaction.flagged", str(support.user_id)),
                                                   ("transaction.reported", str(officer.user_id))]


async def test_review_refusals(client, login_as, factory) -> None:
    officer, customer, user = await login_as(client, "compliance"), await login_as(client), await login_as(client)
    tx = await post(factory, user.user_id, "ETH", ETH)
    not_flagged = await client.post(f"/api/v1/admin/transactions/{tx}/resolve", json={"resolution": "cleared"},
                                    headers=officer.headers)
    assert not_flagged.status == 409 and (await not_flagged.json())["error"]["code"] == "not_flagged"
    assert (await client.post(f"/api/v1/admin/transactions/{uuid.uuid4()}/flag", json={"reason": "x"},
                              headers=officer.headers)).status == 404
    assert (await client.post(f"/api/v1/admin/transactions/{tx}/flag", json={"reason": ""},
                              headers=officer.headers)).status == 422
    assert (await client.post(f"/api/v1/admin/transactions/{tx}/flag", json={"reason": "x"},
                              headers=officer.headers)).status == 200
    assert (await client.post(f"/api/v1/admin/transactions/{tx}/resolve", json={"resolution": "ignored"},
                              headers=officer.headers)).status == 422
    for path in ("", f"/{tx}"):
        assert (await client.get(f"/api/v1/admin/transactions{path}", headers=customer.headers)).status == 403
    assert (await client.post(f"/api/v1/admin/transactions/{tx}/flag", json={"reason": "x"},
                              headers=customer.headers)).status == 403


async def test_a_resolved_transaction_can_be_flagged_again_keeping_its_history(client, login_as, factory) -> None:
    officer, user = await login_as(client, "admin"), await login_as(client)
    tx = await post(factory, user.user_id, "ETH", ETH)
    await client.post(f"/api/v1/admin/transactions/{tx}/flag", json={"reason": "first"}, headers=officer.headers)
    await client.post(f"/api/v1/admin/transactions/{tx}/resolve", json={"resolution": "cleared"},
                      headers=officer.headers)
    again = await client.post(f"/api/v1/admin/transactions/{tx}/flag", json={"reason": "new information"},
                              headers=officer.headers)
    assert again.status == 200 and (await again.json())["review"]["resolved_at"] is None
    async with factory() as session:
        events = [e.type for e in await audit.events_of(session, "transaction_review", tx)]
    assert events == ["transaction.flagged", "transaction.cleared", "transaction.flagged"]


async def test_officer_cannot_resolve_own_transaction(client, login_as, factory) -> None:
    officer, colleague = await login_as(client, "compliance"), await login_as(client, "admin")
    tx = await post(factory, officer.user_id, "ETH", 3 * ETH)
    assert (await client.post(f"/api/v1/admin/transactions/{tx}/flag", json={"reason": "large deposit"},
                              headers=colleague.headers)).status == 200
    for resolution in ("cleared", "reported"):
        refused = await client.post(f"/api/v1/admin/transactions/{tx}/resolve",
                                    json={"resolution": resolution, "note": "mine, fine"}, headers=officer.headers)
        assert refused.status == 403 and (await refused.json())["error"]["code"] == "own_transaction"
    detail = await (await client.get(f"/api/v1/admin/transactions/{tx}", headers=colleague.headers)).json()
    assert detail["review"]["state"] == "flagged"
    cleared = await client.post(f"/api/v1/admin/transactions/{tx}/resolve",
                                json={"resolution": "cleared", "note": "source of funds checked"},
                                headers=colleague.headers)
    assert cleared.status == 200 and (await cleared.json())["review"]["resolved_by"] == str(colleague.user_id)
