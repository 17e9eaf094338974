"""Concurrent duplicates of a withdrawal request (same Idempotency-Key, in parallel, against the real
server): one withdrawal, one hold; every twin either waits its turn (409) or gets the stored answer."""

from __future__ import annotations

import asyncio
import uuid

from tests.integration.custody.withdrawals.conftest import API, balance, body, error_code, withdrawal_count

REQUEST = f"{API}/platform/crypto/withdrawals/request"


async def test_concurrent_duplicate_withdrawal_requests(client, db, login_as) -> None:
    user = await login_as(client)
    headers = {**user.headers, "Idempotency-Key": f"dup-{uuid.uuid4()}"}

    answers = await asyncio.gather(*(client.post(REQUEST, json=body(amount="1.5"), headers=headers) for _ in range(8)))

    statuses = [answer.status for answer in answers]
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, statuses
    created = {(await answer.json())["id"] for answer in answers if answer.status == 201}
    assert len(created) == 1
    for answer in answers:
        if answer.status == 409:
            assert await error_code(answer) == "idempotency_in_flight"
    assert await withdrawal_count(db, user.user_id) == 1
    assert (await balance(client, user.headers, "ETH"))["held"] == "1.501"  # one hold: amount + fee
    retry = await client.post(REQUEST, json=body(amount="1.5"), headers=headers)
    assert retry.status == 201 and (await retry.json())["id"] in created
    assert await withdrawal_count(db, user.user_id) == 1
