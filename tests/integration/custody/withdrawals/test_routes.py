"""The withdrawal routes: request (and every refusal, with nothing held), reads, four-eyes approval, rollback."""

from __future__ import annotations

import time
import uuid

import pyotp
import pytest
from sqlalchemy import text

from compliance.screening import service as screening
from custody import freezes
from core.db import unit_of_work
from tests.factories import approve, login_approver
from tests.integration.custody.withdrawals.conftest import (
    API,
    DESTINATION,
    SANCTIONED,
    balance,
    balances,
    body,
    error_code,
    withdrawal_count,
)

REQUEST = f"{API}/platform/crypto/withdrawals/request"


def url(withdrawal_id: str, action: str | None = None) -> str:
    return f"{API}/platform/crypto/withdrawals/{withdrawal_id}" + (f"/{action}" if action else "")


async def request_ok(client, user, **overrides) -> dict:
    response = await client.post(REQUEST, json=body(**overrides), headers=user.headers)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_a_request_holds_amount_plus_fee_and_answers_201(client, login_as) -> None:
    user = await login_as(client)
    created = await request_ok(client, user, amount="1.5")
    assert created["state"] == "requested"
    assert (created["chain"], created["asset"], created["to_address"]) == ("ethereum", "ETH", DESTINATION)
    assert (created["amount"], created["fee"]) == ("1.5", "0.001")
    assert created["created_at"] and uuid.UUID(created["id"])
    assert await balance(client, user.headers, "ETH") == {"currency": "ETH", "available": "8.499", "held": "1.501",
                                                           "total": "10"}


async def test_usdc_withdrawals_are_tokens_of_the_chain(client, login_as) -> None:
    user = await login_as(client)
    created = await request_ok(client, user, asset="usdc", amount="250.5")
    assert (created["asset"], created["amount"], created["fee"]) == ("USDC", "250.5", "1")
    assert (await balance(client, user.headers, "USDC"))["held"] == "251.5"


async def assert_refused(client, db, user, status: int, code: str, **overrides) -> None:
    before = await balances(client, user.headers)
    response = await client.post(REQUEST, json=body(**overrides), headers=user.headers)
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    assert await error_code(response) == code
    assert await balances(client, user.headers) == before
    assert await withdrawal_count(db, user.user_id) == 0


async def test_every_refusal_holds_nothing(client, db, login_as) -> None:
    user = await login_as(client)
    await assert_refused(client, db, user, 422, "invalid_address", to_address="0x1234")
    await assert_refused(client, db, user, 422, "invalid_address", to_address="not an address")
    # One flipped letter of a valid EIP-55 address: a typo must fail, never be "fixed".
    await assert_refused(client, db, user, 422, "invalid_address", to_address=DESTINATION.replace("C5", "c5"))
    await assert_refused(client, db, user, 422, "invalid_address", to_address="0x" + "0" * 40)
    await assert_refused(client, db, user, 422, "invalid_amount", amount="0")
    await assert_refused(client, db, user, 422, "validation_error", amount="-1")
    await assert_refused(client, db, user, 422, "validation_error", amount=1)
    await assert_refused(client, db, user, 422, "validation_error", amount=1.5)
    await assert_refused(client, db, user, 422, "invalid_amount", asset="USDC", amount="1.0000001")
    await assert_refused(client, db, user, 422, "asset_not_on_chain", asset="POL")
    await assert_refused(client, db, user, 422, "unknown_chain", chain="bitcoin")
    await assert_refused(client, db, user, 422, "insufficient_funds", amount="9.9999",  # + the 0.001 fee > 10
                         travel_rule={"beneficiary_name": "Ada Lovelace"})
    await assert_refused(client, db, user, 422, "travel_rule_required", amount="5")
    await assert_refused(client, db, user, 422, "travel_rule_required", asset="USDC", amount="1000")
    # With beneficiary data the same amount is accepted.
    await request_ok(client, user, amount="5", travel_rule={"beneficiary_name": "Ada Lovelace",
                                                             "beneficiary_vasp": "Example VASP"})


@pytest.mark.parametrize("listed", ["file", "file-lowercase", "screening"])
async def test_a_sanctioned_destination_is_refused_audited_and_freezes_withdrawals(client, db, login_as,
                                                                                  listed) -> None:
    user = await login_as(client)
    address = {"file": SANCTIONED, "file-lowercase": SANCTIONED.lower()}.get(listed)
    if address is None:  # a list loaded into compliance screening (virtuoz compliance load-sanctions)
        address = "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
        async with unit_of_work(db) as session:
            await screening.load(session, f"{address}\n".encode(), f"test-{address}.txt")
    await assert_refused(client, db, user, 403, "sanctioned_address", to_address=address)
    async with db() as session:
        events = (await session.execute(text(
            "SELECT type FROM audit_events WHERE aggregate_type = 'user' AND aggregate_id = :user ORDER BY seq"),
            {"user": str(user.user_id)})).scalars().all()
        assert await freezes.withdrawals_frozen(session, user.user_id)
    assert events[-2:] == ["withdrawal.sanctions_hit", "withdrawals.frozen"]
    # Frozen: even a clean destination is refused now, until an officer lifts the freeze.
    await assert_refused(client, db, user, 403, "withdrawals_frozen")


async def test_a_frozen_user_cannot_withdraw(client, db, login_as) -> None:
    user = await login_as(client)
    async with unit_of_work(db) as session:
        freeze_id = (await freezes.freeze(session, user.user_id, "reorg shortfall")).id
    await assert_refused(client, db, user, 403, "withdrawals_frozen")
    officer = await login_as(client, "compliance")  # only an officer lifts a freeze, through the audited route
    lifted = await client.post(f"{API}/admin/users/{user.user_id}/freezes/{freeze_id}/lift",
                               json={"reason": "shortfall repaid"}, headers=officer.headers)
    assert lifted.status == 200, await lifted.text()
    await request_ok(client, user)


async def test_mfa_users_need_a_fresh_code(client, db, login_as) -> None:
    user = await login_as(client)
    enrollment = await (await client.post(f"{API}/auth/mfa/enroll", json={"password": user.password},
                                          headers=user.headers)).json()
    totp = pyotp.TOTP(enrollment["secret"])
    verified = await client.post(f"{API}/auth/mfa/verify", json={"code": totp.now()}, headers=user.headers)
    assert verified.status == 200, await verified.text()
    await assert_refused(client, db, user, 401, "mfa_required")
    wrong = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    await assert_refused(client, db, user, 401, "invalid_mfa_code", totp_code=wrong)
    # The step /verify used is spent: the code of the next step (valid_window=1) is accepted.
    response = await client.post(REQUEST, json=body(totp_code=totp.at(time.time() + 30)), headers=user.headers)
    assert response.status == 201, await response.text()


async def test_an_idempotency_key_replays_the_request(client, db, login_as) -> None:
    user = await login_as(client)
    headers = {**user.headers, "Idempotency-Key": f"w-{uuid.uuid4()}"}
    first = await client.post(REQUEST, json=body(), headers=headers)
    again = await client.post(REQUEST, json=body(), headers=headers)
    assert first.status == again.status == 201
    assert (await first.json())["id"] == (await again.json())["id"]
    assert await withdrawal_count(db, user.user_id) == 1
    assert (await balance(client, user.headers, "ETH"))["held"] == "1.001"


async def test_reads_are_for_the_owner_and_staff(client, login_as) -> None:
    owner, other, support = await login_as(client), await login_as(client), await login_as(client, "support")
    created = await request_ok(client, owner)
    mine = await client.get(url(created["id"]), headers=owner.headers)
    assert mine.status == 200 and (await mine.json())["state"] == "requested"
    assert (await client.get(url(created["id"]), headers=other.headers)).status == 404
    assert (await client.get(url(created["id"]), headers=support.headers)).status == 200
    assert (await client.get(url("not-a-uuid"), headers=owner.headers)).status == 404
    listed = await (await client.get(f"{API}/platform/crypto/withdrawals", headers=owner.headers)).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert (await (await client.get(f"{API}/platform/crypto/withdrawals", headers=other.headers)).json())["items"] == []
    staff_view = await client.get(f"{API}/platform/crypto/withdrawals?user_id={owner.user_id}", headers=support.headers)
    assert [item["id"] for item in (await staff_view.json())["items"]] == [created["id"]]


async def test_sign_is_for_operators_never_on_their_own(client, login_as, database_url) -> None:
    customer, operator = await login_as(client), await login_approver(client, database_url)
    created = await request_ok(client, customer)
    refused = await client.post(url(created["id"], "sign"), headers=customer.headers)
    assert refused.status == 403
    own = await request_ok(client, operator, amount="0.5", totp_code=await operator.totp.code())
    response = await client.post(url(own["id"], "sign"), headers=operator.headers)
    assert response.status == 403 and await error_code(response) == "own_withdrawal"
    approved = await approve(client, operator, created["id"])
    assert approved.status == 200, await approved.text()
    assert (await approved.json())["state"] == "approved"
    again = await client.post(url(created["id"], "sign"), headers=operator.headers)
    assert again.status == 409


async def test_four_eyes_above_the_threshold(client, login_as, database_url) -> None:
    customer = await login_as(client)
    first, second = await login_approver(client, database_url), await login_approver(client, database_url, "admin")
    created = await request_ok(client, customer, amount="8",
                               travel_rule={"beneficiary_name": "Grace Hopper"})
    assert created["approvals_required"] == 2
    one = await approve(client, first, created["id"])
    assert one.status == 200
    assert {key: (await one.json())[key] for key in ("state", "approvals", "approvals_required")} == {
        "state": "pending_approval", "approvals": 1, "approvals_required": 2}
    twice = await client.post(url(created["id"], "sign"), headers=first.headers)
    assert twice.status == 409 and await error_code(twice) == "already_approved"
    two = await approve(client, second, created["id"])
    assert two.status == 200 and (await two.json())["state"] == "approved"


async def test_rollback_before_signing_releases_the_hold(client, login_as, database_url) -> None:
    owner, operator = await login_as(client), await login_approver(client, database_url)
    created = await request_ok(client, owner)
    rolled = await client.post(url(created["id"], "rollback"), headers=owner.headers)
    assert rolled.status == 200 and (await rolled.json())["state"] == "rolled_back"
    assert await balance(client, owner.headers, "ETH") == {"currency": "ETH", "available": "10", "held": "0",
                                                            "total": "10"}
    twice = await client.post(url(created["id"], "rollback"), headers=owner.headers)
    assert twice.status == 409

    approved = await request_ok(client, owner)
    assert (await approve(client, operator, approved["id"])).status == 200
    by_owner = await client.post(url(approved["id"], "rollback"), headers=owner.headers)
    assert by_owner.status == 409
    by_operator = await client.post(url(approved["id"], "rollback"), headers=operator.headers)
    assert by_operator.status == 200 and (await by_operator.json())["state"] == "rolled_back"
    assert (await balance(client, owner.headers, "ETH"))["held"] == "0"
    stranger = await login_as(client)
    assert (await client.post(url(created["id"], "rollback"), headers=stranger.headers)).status == 404


async def test_rollback_after_broadcast_is_409_already_broadcast(client, db, login_as) -> None:
    owner, operator = await login_as(client), await login_as(client, "operator")
    created = await request_ok(client, owner)
    for state, code in (("signing", "signing_in_progress"), ("signed", "signing_in_progress"),
                        ("broadcast", "already_broadcast"), ("confirmed", "already_broadcast")):
        async with unit_of_work(db) as session:
            await session.execute(text("UPDATE withdrawals SET state = :state WHERE id = :id"),
                                  {"state": state, "id": created["id"]})
        response = await client.post(url(created["id"], "rollback"), headers=operator.headers)
        assert response.status == 409 and await error_code(response) == code, state
    assert (await balance(client, owner.headers, "ETH"))["held"] == "1.001"
