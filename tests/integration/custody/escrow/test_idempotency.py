"""Concurrent duplicates of escrow funding and release (same Idempotency-Key, in parallel, against the
real server): one hold, one release; the ledger stays consistent."""

from __future__ import annotations

import asyncio
import uuid

import pytest

pytestmark = pytest.mark.usefixtures("ledger_is_consistent")


async def in_parallel(client, user, escrow_id: str, action: str, count: int = 6) -> list:
    headers = {**user.headers, "Idempotency-Key": f"{action}-{uuid.uuid4()}"}
    return await asyncio.gather(*(client.post(f"/api/v1/escrow/{escrow_id}/{action}", json={}, headers=headers)
                                  for _ in range(count)))


async def assert_one_effect(answers: list) -> None:
    statuses = [answer.status for answer in answers]
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 409}, statuses
    for answer in answers:
        if answer.status == 409:
            assert (await answer.json())["error"]["code"] == "idempotency_in_flight"


async def test_concurrent_duplicate_escrow_funding_holds_once(escrow_client, login_as, new_escrow, balance,
                                                              database_url) -> None:
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="1000.00")

    await assert_one_effect(await in_parallel(escrow_client, buyer, escrow["id"], "fund"))

    assert await balance(escrow_client, buyer) == {"currency": "USD", "available": "9000.00", "held": "1000.00",
                                                    "total": "10000.00"}
    history = await (await escrow_client.get(f"/api/v1/escrow/contracts/{escrow['id']}/history",
                                             headers=buyer.headers)).json()
    assert [item["type"] for item in history["items"]] == ["escrow.created", "escrow.funded"]


async def test_concurrent_duplicate_escrow_releases_pay_once(escrow_client, login_as, new_escrow, act,
                                                             balance) -> None:
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="1000.00")
    await act(escrow_client, buyer, escrow["id"], "fund")

    await assert_one_effect(await in_parallel(escrow_client, buyer, escrow["id"], "release"))

    assert (await balance(escrow_client, buyer))["total"] == "9000.00"
    assert (await balance(escrow_client, seller))["available"] == "11000.00"
    history = await (await escrow_client.get(f"/api/v1/escrow/contracts/{escrow['id']}/history",
                                             headers=buyer.headers)).json()
    assert [item["type"] for item in history["items"]] == ["escrow.created", "escrow.funded", "escrow.released"]
