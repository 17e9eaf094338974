"""A frozen buyer's money does not leave through escrow either: funding and release are refused."""

from __future__ import annotations

import uuid

import pytest

from core.db import create_engine, session_factory, unit_of_work
from custody import freezes

pytestmark = pytest.mark.usefixtures("ledger_is_consistent")


async def freeze(database_url: str, user_id: uuid.UUID, reason: str) -> uuid.UUID:
    """A freeze as the scanner (reorg shortfall) or the compliance rules write it."""
    engine = create_engine(database_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            return (await freezes.freeze(session, user_id, reason)).id
    finally:
        await engine.dispose()


async def test_frozen_user_cannot_fund_or_release_escrow(escrow_client, login_as, new_escrow, act, balance,
                                                         database_url):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    unfunded = await new_escrow(escrow_client, buyer, seller=seller, amount="100.00")
    funded = await new_escrow(escrow_client, buyer, seller=seller, amount="200.00")
    await act(escrow_client, buyer, funded["id"], "fund")
    freeze_id = await freeze(database_url, buyer.user_id, "reorg shortfall")

    refused = await act(escrow_client, buyer, unfunded["id"], "fund", expect=403)
    assert refused["error"]["code"] == "withdrawals_frozen"
    refused = await act(escrow_client, buyer, funded["id"], "release", expect=403)
    assert refused["error"]["code"] == "withdrawals_frozen"

    assert await balance(escrow_client, buyer) == {"currency": "USD", "available": "9800.00", "held": "200.00",
                                                    "total": "10000.00"}
    assert (await balance(escrow_client, seller))["total"] == "10000.00"
    for escrow, state in ((unfunded, "created"), (funded, "funded")):
        detail = await (await escrow_client.get(f"/api/v1/escrow/contracts/{escrow['id']}",
                                                headers=buyer.headers)).json()
        assert detail["state"] == state
    history = await (await escrow_client.get(f"/api/v1/escrow/contracts/{funded['id']}/history",
                                             headers=buyer.headers)).json()
    assert [item["type"] for item in history["items"]] == ["escrow.created", "escrow.funded"]

    # Lifted by a compliance officer (audited), the money may move again.
    officer = await login_as(escrow_client, "compliance")
    lifted = await escrow_client.post(f"/api/v1/admin/users/{buyer.user_id}/freezes/{freeze_id}/lift",
                                      json={"reason": "shortfall repaid"}, headers=officer.headers)
    assert lifted.status == 200, await lifted.text()
    await act(escrow_client, buyer, unfunded["id"], "fund")
    await act(escrow_client, buyer, funded["id"], "release")
    assert (await balance(escrow_client, seller))["total"] == "10200.00"


async def test_a_frozen_buyer_cannot_have_a_dispute_resolved_to_the_seller(escrow_client, login_as, new_escrow, act,
                                                                            balance, database_url):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="300.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    await act(escrow_client, seller, escrow["id"], "dispute", {"reason": "never delivered"})
    await freeze(database_url, buyer.user_id, "sanctioned counterparty")
    arbiter = await login_as(escrow_client, "compliance")

    for body in ({"outcome": "release"}, {"outcome": "split", "seller_amount": "100.00"}):
        refused = await act(escrow_client, arbiter, escrow["id"], "dispute/resolve", body, expect=403)
        assert refused["error"]["code"] == "withdrawals_frozen"
    # A refund keeps the money with its owner: allowed while frozen.
    resolved = await act(escrow_client, arbiter, escrow["id"], "dispute/resolve", {"outcome": "refund"})
    assert resolved["state"] == "resolved"
    assert (await balance(escrow_client, buyer))["available"] == "10000.00"
