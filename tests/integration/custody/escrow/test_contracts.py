"""Escrow contracts through the real API: create, read, fund, release, cancel, disputes."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from tests.factories import register, unique_email

# The hand-written table (from DESIGN.md), one copy: the unit test checks the module against it.
from tests.unit.custody.escrow.test_states import ACTIONS, EXPECTED, STATES

pytestmark = pytest.mark.usefixtures("ledger_is_consistent")


async def test_create_echoes_the_contract(escrow_client, login_as, new_escrow):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller)
    assert escrow["amount"] == "8000.00" and escrow["currency"] == "USD" and escrow["state"] == "created"
    assert escrow["buyer"] == {"id": str(buyer.user_id), "email": buyer.email}
    # The create answer names the seller by the email given, never the account (test_seller_linking.py).
    assert escrow["seller"] is None and escrow["seller_email"] == seller.email
    assert escrow["created_at"] and escrow["updated_at"]


@pytest.mark.parametrize("amount", ["8000.001", "-5.00", "0", "1e3", "NaN", 8000, 8000.0, ""])
async def test_bad_amounts_are_422(escrow_client, login_as, amount):
    buyer = await login_as(escrow_client)
    response = await escrow_client.post("/api/v1/escrow", json={"title": "t", "amount": amount, "currency": "USD"},
                                        headers=buyer.headers)
    assert response.status == 422


async def test_unknown_currency_and_self_dealing_are_422(escrow_client, login_as):
    buyer = await login_as(escrow_client)
    unknown = await escrow_client.post("/api/v1/escrow", json={"title": "t", "amount": "1.00", "currency": "XYZ"},
                                       headers=buyer.headers)
    assert unknown.status == 422
    own = await escrow_client.post("/api/v1/escrow", json={"title": "t", "amount": "1.00", "currency": "USD",
                                                           "seller_email": buyer.email.upper()}, headers=buyer.headers)
    assert own.status == 422 and (await own.json())["error"]["code"] == "seller_is_buyer"


async def test_seed_flow_create_fund_release_moves_the_money(escrow_client, login_as, new_escrow, act, balance):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller)
    funded = await act(escrow_client, buyer, escrow["id"], "fund")
    assert funded["state"] == "funded"
    assert await balance(escrow_client, buyer) == {"currency": "USD", "available": "2000.00", "held": "8000.00",
                                                    "total": "10000.00"}
    released = await act(escrow_client, buyer, escrow["id"], "release")
    assert released["state"] == "released" and released["fee"] == "0.00"
    assert (await balance(escrow_client, buyer))["total"] == "2000.00"
    assert (await balance(escrow_client, seller))["available"] == "18000.00"
    await act(escrow_client, buyer, escrow["id"], "release", expect=409)


async def test_release_takes_the_platform_fee(make_client, settings, login_as, new_escrow, act, balance):
    client = await make_client(settings.model_copy(update={"sandbox_credit": "USD:10000.00", "escrow_fee_bps": 150}))
    buyer, seller = await login_as(client), await login_as(client)
    escrow = await new_escrow(client, buyer, seller=seller, amount="1000.00")
    await act(client, buyer, escrow["id"], "fund")
    released = await act(client, buyer, escrow["id"], "release")
    assert released["fee"] == "15.00"
    assert (await balance(client, seller))["available"] == "10985.00"


async def test_funding_without_money_holds_nothing(escrow_client, login_as, new_escrow, act, balance):
    buyer = await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, amount="10000.01")
    refused = await act(escrow_client, buyer, escrow["id"], "fund", expect=422)
    assert refused["error"]["code"] == "insufficient_funds"
    assert (await balance(escrow_client, buyer))["held"] == "0.00"
    detail = await (await escrow_client.get(f"/api/v1/escrow/contracts/{escrow['id']}", headers=buyer.headers)).json()
    assert detail["state"] == "created"


async def test_only_the_buyer_funds_and_strangers_see_nothing(escrow_client, login_as, new_escrow, act):
    buyer, seller, stranger = (await login_as(escrow_client) for _ in range(3)).__anext__(), None, None
    buyer = await login_as(escrow_client)
    seller = await login_as(escrow_client)
    stranger = await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller)
    assert (await act(escrow_client, seller, escrow["id"], "fund", expect=403))["error"]["code"] == "buyer_only"
    assert (await act(escrow_client, stranger, escrow["id"], "fund", expect=404))["error"]["code"] == "escrow_not_found"
    hidden = await escrow_client.get(f"/api/v1/escrow/contracts/{escrow['id']}", headers=stranger.headers)
    assert hidden.status == 404
    support = await login_as(escrow_client, "support")
    assert (await escrow_client.get(f"/api/v1/escrow/contracts/{escrow['id']}", headers=support.headers)).status == 200


async def test_release_without_a_registered_seller_is_409_then_links_once_they_verify(escrow_client, login_as,
                                                                                      new_escrow, act):
    buyer = await login_as(escrow_client)
    email = unique_email("s")
    escrow = await new_escrow(escrow_client, buyer, seller_email=email)
    assert escrow["seller"] is None and escrow["seller_email"] == email
    await act(escrow_client, buyer, escrow["id"], "fund")
    assert (await act(escrow_client, buyer, escrow["id"], "release", expect=409))["error"]["code"] == "seller_required"
    await register(escrow_client, email=email, display_name="Seller")  # and verified (the factory's default)
    released = await act(escrow_client, buyer, escrow["id"], "release")
    assert released["seller"]["email"] == email and released["state"] == "released"


async def test_lists_and_history(escrow_client, login_as, new_escrow, act):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    first = await new_escrow(escrow_client, buyer, seller=seller, amount="1.00")
    second = await new_escrow(escrow_client, buyer, seller=seller, amount="2.00")
    await act(escrow_client, buyer, second["id"], "fund")
    page = await (await escrow_client.get("/api/v1/escrow/contracts?limit=1", headers=buyer.headers)).json()
    assert [item["id"] for item in page["items"]] == [second["id"]] and page["next_cursor"]
    rest = await (await escrow_client.get(f"/api/v1/escrow/contracts?limit=1&cursor={page['next_cursor']}",
                                          headers=buyer.headers)).json()
    assert [item["id"] for item in rest["items"]] == [first["id"]]
    as_seller = await (await escrow_client.get("/api/v1/escrow/contracts?role=seller&state=funded",
                                               headers=seller.headers)).json()
    assert [item["id"] for item in as_seller["items"]] == [second["id"]]
    assert (await escrow_client.get("/api/v1/escrow/contracts?cursor=garbage", headers=buyer.headers)).status == 422
    history = await (await escrow_client.get(f"/api/v1/escrow/contracts/{second['id']}/history",
                                             headers=seller.headers)).json()
    assert [(item["seq"], item["type"]) for item in history["items"]] == [(1, "escrow.created"), (2, "escrow.funded")]
    assert history["items"][1]["actor"] == str(buyer.user_id)


async def test_dispute_needs_a_reason_and_a_party(escrow_client, login_as, new_escrow, act):
    buyer, seller, stranger = await login_as(escrow_client), await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="5.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    await act(escrow_client, seller, escrow["id"], "dispute", {"reason": "   "}, expect=422)
    await act(escrow_client, seller, escrow["id"], "dispute", {"reason": "x" * 2001}, expect=422)
    await act(escrow_client, stranger, escrow["id"], "dispute", {"reason": "mine"}, expect=404)
    disputed = await act(escrow_client, seller, escrow["id"], "dispute", {"reason": "not delivered"})
    assert disputed["state"] == "disputed" and disputed["dispute_reason"] == "not delivered"


@pytest.mark.parametrize(("outcome", "seller_amount", "buyer_total", "seller_available"), [
    ("release", None, "9900.00", "10100.00"), ("refund", None, "10000.00", "10000.00"),
    ("split", "30.00", "9970.00", "10030.00"),
])
async def test_resolutions_move_the_money(escrow_client, login_as, new_escrow, act, balance, outcome, seller_amount,
                                          buyer_total, seller_available):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    officer = await login_as(escrow_client, "compliance")
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="100.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    await act(escrow_client, buyer, escrow["id"], "dispute", {"reason": "broken"})
    await act(escrow_client, buyer, escrow["id"], "dispute/resolve", {"outcome": "refund"}, expect=403)
    body = {"outcome": outcome, "note": "decided"} | ({"seller_amount": seller_amount} if seller_amount else {})
    resolved = await act(escrow_client, officer, escrow["id"], "dispute/resolve", body)
    assert resolved["state"] == "resolved" and resolved["resolution"] == outcome
    assert (await balance(escrow_client, buyer))["total"] == buyer_total
    assert (await balance(escrow_client, seller))["available"] == seller_available
    await act(escrow_client, officer, escrow["id"], "dispute/resolve", body, expect=409)


async def test_split_must_leave_something_for_the_buyer(escrow_client, login_as, new_escrow, act):
    buyer, seller, admin = await login_as(escrow_client), await login_as(escrow_client), await login_as(escrow_client,
                                                                                                        "admin")
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="100.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    await act(escrow_client, seller, escrow["id"], "dispute", {"reason": "late"})
    for amount in ("100.00", "150.00", "0.00", "1.001"):
        await act(escrow_client, admin, escrow["id"], "dispute/resolve", {"outcome": "split", "seller_amount": amount},
                  expect=422)
    await act(escrow_client, admin, escrow["id"], "dispute/resolve", {"outcome": "split"}, expect=422)


async def test_rejected_dispute_returns_to_funded(escrow_client, login_as, new_escrow, act):
    buyer, seller, admin = await login_as(escrow_client), await login_as(escrow_client), await login_as(escrow_client,
                                                                                                        "admin")
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="10.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    await act(escrow_client, buyer, escrow["id"], "dispute", {"reason": "changed my mind"})
    rejected = await act(escrow_client, admin, escrow["id"], "dispute/reject", {"note": "no grounds"})
    assert rejected["state"] == "funded"
    assert (await act(escrow_client, buyer, escrow["id"], "release"))["state"] == "released"


async def _escrow_in(client, state, login_as, new_escrow, act):
    """A contract driven into ``state`` through the API, with its cast."""
    buyer, seller, admin = await login_as(client), await login_as(client), await login_as(client, "admin")
    escrow = await new_escrow(client, buyer, seller=seller, amount="1.00")
    paths = {"created": [], "funded": ["fund"], "released": ["fund", "release"], "disputed": ["fund", "dispute"],
             "resolved": ["fund", "dispute", "resolve"], "cancelled": ["cancel"]}
    for action in paths[state]:
        await _perform(client, action, escrow["id"], buyer, admin, expect=200)
    return escrow, buyer, seller, admin


async def _perform(client, action, escrow_id, buyer, admin, *, expect):
    requests = {
        "fund": (buyer, "fund", {}), "cancel": (buyer, "cancel", {}), "release": (buyer, "release", {}),
        "dispute": (buyer, "dispute", {"reason": "walk"}), "resolve": (admin, "dispute/resolve", {"outcome": "refund"}),
        "reject": (admin, "dispute/reject", {}),
    }
    user, path, body = requests[action]
    response = await client.post(f"/api/v1/escrow/{escrow_id}/{path}", json=body, headers=user.headers)
    assert response.status == expect, (action, await response.text())
    return await response.json()


@pytest.mark.parametrize("state", STATES)
async def test_every_illegal_action_is_409_and_changes_nothing(escrow_client, login_as, new_escrow, act, balance,
                                                              state):
    escrow, buyer, seller, admin = await _escrow_in(escrow_client, state, login_as, new_escrow, act)

    async def snapshot():
        contract = f"/api/v1/escrow/contracts/{escrow['id']}"
        detail = await (await escrow_client.get(contract, headers=buyer.headers)).json()
        history = await (await escrow_client.get(f"{contract}/history", headers=buyer.headers)).json()
        return detail, history["items"], await balance(escrow_client, buyer), await balance(escrow_client, seller)

    before = await snapshot()
    assert before[0]["state"] == state
    allowed = sorted(action for (source, action) in EXPECTED if source == state)
    for action in ACTIONS:
        if (state, action) in EXPECTED:
            continue
        refused = await _perform(escrow_client, action, escrow["id"], buyer, admin, expect=409)
        assert refused["error"]["code"] == "invalid_state", (state, action)
        assert sorted(refused["error"]["details"]["allowed"]) == allowed, (state, action)
        assert await snapshot() == before, f"a refused {action} from {state} changed something"


async def test_concurrent_funding_holds_once(escrow_client, login_as, new_escrow, balance):
    buyer = await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, amount="3000.00")
    responses = await asyncio.gather(*(escrow_client.post(f"/api/v1/escrow/{escrow['id']}/fund", json={},
                                                          headers=buyer.headers) for _ in range(6)))
    assert sorted(r.status for r in responses) == [200] + [409] * 5
    assert (await balance(escrow_client, buyer))["held"] == "3000.00"


async def test_release_and_dispute_race_one_wins(escrow_client, login_as, new_escrow, act, balance):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="50.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    release, dispute = await asyncio.gather(
        escrow_client.post(f"/api/v1/escrow/{escrow['id']}/release", json={}, headers=buyer.headers),
        escrow_client.post(f"/api/v1/escrow/{escrow['id']}/dispute", json={"reason": "race"}, headers=seller.headers),
    )
    assert sorted([release.status, dispute.status]) == [200, 409]
    seller_funds = (await balance(escrow_client, seller))["available"]
    assert seller_funds == ("10050.00" if release.status == 200 else "10000.00")


async def test_concurrent_resolutions_settle_once(escrow_client, login_as, new_escrow, act, balance):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    first, second = await login_as(escrow_client, "admin"), await login_as(escrow_client, "compliance")
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="40.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    await act(escrow_client, buyer, escrow["id"], "dispute", {"reason": "race"})
    outcomes = await asyncio.gather(
        escrow_client.post(f"/api/v1/escrow/{escrow['id']}/dispute/resolve", json={"outcome": "release"},
                           headers=first.headers),
        escrow_client.post(f"/api/v1/escrow/{escrow['id']}/dispute/resolve", json={"outcome": "refund"},
                           headers=second.headers),
    )
    assert sorted(r.status for r in outcomes) == [200, 409]
    buyer_total = (await balance(escrow_client, buyer))["total"]
    seller_total = (await balance(escrow_client, seller))["total"]
    released = outcomes[0].status == 200
    assert (buyer_total, seller_total) == (("9960.00", "10040.00") if released else ("10000.00", "10000.00"))
    assert Decimal(buyer_total) + Decimal(seller_total) == Decimal("20000.00")  # settled once: nothing made or lost


async def test_idempotent_create_makes_one_contract(escrow_client, login_as):
    buyer = await login_as(escrow_client)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {"title": "Once", "amount": "1.00", "currency": "USD"}
    responses = [await escrow_client.post("/api/v1/escrow", json=body, headers={**buyer.headers, **key}) for _ in "ab"]
    assert [r.status for r in responses] == [201, 201]
    assert (await responses[0].json())["id"] == (await responses[1].json())["id"]


async def test_admin_oversight_filters(escrow_client, login_as, new_escrow, act):
    buyer, support, customer = await login_as(escrow_client), await login_as(escrow_client, "support"), None
    customer = await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, amount="2.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    url = f"/api/v1/admin/escrow/contracts?user_id={buyer.user_id}&state=funded"
    listed = await (await escrow_client.get(url, headers=support.headers)).json()
    assert [item["id"] for item in listed["items"]] == [escrow["id"]]
    assert (await escrow_client.get(url, headers=customer.headers)).status == 403

