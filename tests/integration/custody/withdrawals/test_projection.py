"""Withdrawals can be rebuilt from their audit events, exactly, at every step the API takes."""

from __future__ import annotations

from tests.factories import approve, login_approver
from tests.integration.custody.withdrawals.conftest import API, body

REQUEST = f"{API}/platform/crypto/withdrawals/request"


async def replayed(client, admin, withdrawal_id) -> dict:
    response = await client.post(f"{API}/admin/events/replay/withdrawal/{withdrawal_id}", headers=admin.headers)
    report = await response.json()
    assert response.status == 200, report
    return report


async def test_withdrawal_replays_without_drift(client, login_as, database_url) -> None:
    admin, owner = await login_as(client, "admin"), await login_as(client)
    first, second = (await login_approver(client, database_url), await login_approver(client, database_url))

    small = await (await client.post(REQUEST, json=body(amount="4.5"), headers=owner.headers)).json()
    # Four eyes from 8 ETH in 24 hours: this one needs two approvals.
    large = await (await client.post(REQUEST, json=body(amount="3.5"), headers=owner.headers)).json()
    assert large["approvals_required"] == 2, large
    assert (await replayed(client, admin, large["id"]))["drift"] == []
    for approver in (first, second):  # four eyes: pending_approval, then approved
        response = await approve(client, approver, large["id"])
        assert response.status == 200, await response.text()
        report = await replayed(client, admin, large["id"])
        assert report["drift"] == [] and report["chain_valid"], report

    rolled = await client.post(f"{API}/platform/crypto/withdrawals/{small['id']}/rollback", headers=owner.headers)
    assert rolled.status == 200, await rolled.text()
    assert (await replayed(client, admin, small["id"]))["drift"] == []
