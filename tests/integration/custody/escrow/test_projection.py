"""Escrow contracts can be rebuilt from their audit events, exactly, at every step."""

from __future__ import annotations

from tests.factories import register, unique_email


async def replayed(client, admin, escrow_id) -> dict:
    response = await client.post(f"/api/v1/admin/events/replay/escrow/{escrow_id}", headers=admin.headers)
    body = await response.json()
    assert response.status == 200, body
    return body


async def test_escrow_replays_without_drift_at_every_step(make_client, settings, login_as, new_escrow, act):
    client = await make_client(settings.model_copy(update={"sandbox_credit": "USD:10000.00", "escrow_fee_bps": 150}))
    admin, arbiter = await login_as(client, "admin"), await login_as(client, "compliance")

    buyer, seller = await login_as(client), await login_as(client)
    released = await new_escrow(client, buyer, seller=seller, amount="1000.00")
    for action, actor, body in [("fund", buyer, None), ("dispute", seller, {"reason": "late"}),
                                ("dispute/reject", arbiter, {"note": "no"}), ("release", buyer, None)]:
        await act(client, actor, released["id"], action, body)
        report = await replayed(client, admin, released["id"])
        assert report["drift"] == [] and report["chain_valid"], (action, report)

    email = unique_email("later")
    split = await new_escrow(client, buyer, seller_email=email, amount="300.00")
    await register(client, email=email)  # the seller signs up later: linked by an event of its own
    await act(client, buyer, split["id"], "fund")
    await act(client, buyer, split["id"], "dispute", {"reason": "partial"})
    await act(client, arbiter, split["id"], "dispute/resolve", {"outcome": "split", "seller_amount": "100.00"})
    assert (await replayed(client, admin, split["id"]))["drift"] == []

    for outcome in ("refund", "release"):
        contract = await new_escrow(client, buyer, seller=seller, amount="10.00")
        await act(client, buyer, contract["id"], "fund")
        await act(client, buyer, contract["id"], "dispute", {"reason": "why"})
        await act(client, arbiter, contract["id"], "dispute/resolve", {"outcome": outcome})
        assert (await replayed(client, admin, contract["id"]))["drift"] == [], outcome

    cancelled = await new_escrow(client, buyer, seller=seller, amount="5.00")
    await act(client, buyer, cancelled["id"], "cancel")
    assert (await replayed(client, admin, cancelled["id"]))["drift"] == []
