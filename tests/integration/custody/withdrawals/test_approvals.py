"""Approving a withdrawal (`…/sign`): a TOTP step-up of the approving operator for every approval, and
the four-eyes threshold counted on the customer's withdrawals of a rolling 24 hours."""

from __future__ import annotations

import asyncio
import uuid

import pyotp
from sqlalchemy import text

from core.db import unit_of_work
from tests.factories import approve, enable_mfa, login_approver
from tests.integration.custody.withdrawals.conftest import API, body, error_code

REQUEST = f"{API}/platform/crypto/withdrawals/request"


def sign_url(withdrawal_id: str) -> str:
    return f"{API}/platform/crypto/withdrawals/{withdrawal_id}/sign"


async def request_ok(client, user, **overrides) -> dict:
    response = await client.post(REQUEST, json=body(**overrides), headers=user.headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def state_of(client, user, withdrawal_id: str) -> tuple[str, int]:
    found = await (await client.get(f"{API}/platform/crypto/withdrawals/{withdrawal_id}", headers=user.headers)).json()
    return found["state"], found["approvals"]


async def test_approval_requires_step_up(client, db, login_as, database_url) -> None:
    customer = await login_as(client)
    created = await request_ok(client, customer)

    # A custody approver without MFA approves nothing, code or not.
    no_mfa = await login_as(client, "operator")
    for payload in (None, {}, {"totp_code": "123456"}):
        refused = await client.post(sign_url(created["id"]), json=payload, headers=no_mfa.headers)
        assert refused.status == 403, await refused.text()
        assert await error_code(refused) == "mfa_required_for_approval"

    approver = await login_approver(client, database_url)
    missing = await client.post(sign_url(created["id"]), json={}, headers=approver.headers)
    assert (missing.status, await error_code(missing)) == (401, "mfa_required")
    wrong = f"{(int(pyotp.TOTP(approver.totp.secret).now()) + 1) % 1_000_000:06d}"
    refused = await client.post(sign_url(created["id"]), json={"totp_code": wrong}, headers=approver.headers)
    assert (refused.status, await error_code(refused)) == (401, "invalid_mfa_code")
    assert await state_of(client, customer, created["id"]) == ("requested", 0)
    async with db() as session:
        refusals = await session.scalar(text(
            "SELECT count(*) FROM audit_events WHERE aggregate_type = 'user' AND aggregate_id = :user"
            " AND type = 'mfa.code_refused'"), {"user": str(approver.user_id)})
    assert refusals == 1  # the wrong code is recorded (and counted by the step-up throttle)

    approved = await approve(client, approver, created["id"])
    assert approved.status == 200, await approved.text()
    assert (await approved.json())["state"] == "approved"

    # A code works once: replayed on another withdrawal, it is refused.
    other = await request_ok(client, customer, amount="0.5")
    code = await approver.totp.code()
    first = await client.post(sign_url(other["id"]), json={"totp_code": code}, headers=approver.headers)
    assert first.status == 200, await first.text()
    third = await request_ok(client, customer, amount="0.25")
    replayed = await client.post(sign_url(third["id"]), json={"totp_code": code}, headers=approver.headers)
    assert (replayed.status, await error_code(replayed)) == (401, "invalid_mfa_code")

    # An admin approving is held to the same rule.
    admin = await login_as(client, "admin")
    refused = await client.post(sign_url(third["id"]), json={}, headers=admin.headers)
    assert (refused.status, await error_code(refused)) == (403, "mfa_required_for_approval")
    await enable_mfa(client, admin)
    assert await state_of(client, customer, third["id"]) == ("requested", 0)


async def test_four_eyes_threshold_aggregates_24h(client, db, login_as, database_url) -> None:
    """The threshold (8 ETH here) applies to the customer's withdrawals of the asset summed over 24 h:
    splitting 9 ETH into three payments does not let one operator approve it all alone."""
    customer = await login_as(client)
    first, second = await login_approver(client, database_url), await login_approver(client, database_url, "admin")
    created = [await request_ok(client, customer, amount="3") for _ in range(3)]
    assert [item["approvals_required"] for item in created] == [1, 1, 2]
    for item, approver in zip(created[:2], (first, second), strict=True):
        answer = await approve(client, approver, item["id"])
        assert (answer.status, (await answer.json())["state"]) == (200, "approved")
    one = await approve(client, first, created[2]["id"])
    assert one.status == 200 and (await one.json())["state"] == "pending_approval"
    two = await approve(client, second, created[2]["id"])
    assert two.status == 200 and (await two.json())["state"] == "approved"

    # What was rolled back moved nothing and does not count; the USDC threshold is counted on its own.
    other = await login_as(client)
    rolled = await request_ok(client, other, amount="4.5", travel_rule={"beneficiary_name": "Ada Lovelace"})
    assert rolled["approvals_required"] == 1
    assert (await client.post(f"{API}/platform/crypto/withdrawals/{rolled['id']}/rollback",
                              headers=other.headers)).status == 200
    assert (await request_ok(client, other, amount="4.5"))["approvals_required"] == 1
    assert (await request_ok(client, other, asset="USDC", amount="900"))["approvals_required"] == 1
    assert (await request_ok(client, other, amount="3.5"))["approvals_required"] == 2  # 4.5 + 3.5 = 8

    # Older than 24 hours, a withdrawal leaves the window.
    late, beneficiary = await login_as(client), {"beneficiary_name": "Grace Hopper"}
    early = await request_ok(client, late, asset="USDC", amount="6000", travel_rule=beneficiary)
    async with unit_of_work(db) as session:
        await session.execute(text("UPDATE withdrawals SET created_at = created_at - interval '24 hours 1 minute'"
                                   " WHERE id = :id"), {"id": uuid.UUID(early["id"])})
    assert (await request_ok(client, late, asset="USDC", amount="5000", travel_rule=beneficiary)
            )["approvals_required"] == 1
    assert (await request_ok(client, late, asset="USDC", amount="5000", travel_rule=beneficiary)
            )["approvals_required"] == 2


async def test_concurrent_requests_cannot_split_under_the_four_eyes_threshold(client, login_as) -> None:
    """Two requests at once, each under the threshold, together at it: the second to commit needs two."""
    customer = await login_as(client)
    answers = await asyncio.gather(*(client.post(REQUEST, json=body(amount="4"), headers=customer.headers)
                                     for _ in range(2)))
    assert [answer.status for answer in answers] == [201, 201]
    required = sorted([(await answer.json())["approvals_required"] for answer in answers])
    assert required == [1, 2]
