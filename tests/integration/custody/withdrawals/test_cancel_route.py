"""POST …/withdrawals/{id}/cancel: an operator (or admin) with a fresh TOTP code cancels a withdrawal stuck
at its nonce. The route only records the request; the custody worker asks the signer for the cancel
(tests/unit/custody/withdrawals/test_cancels.py), and the withdrawal stays broadcast until something at
its nonce is mined."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from core import audit
from core.db import unit_of_work
from tests.factories import login_approver
from tests.integration.custody.withdrawals.conftest import API, body, error_code


def cancel_url(withdrawal_id: str) -> str:
    return f"{API}/platform/crypto/withdrawals/{withdrawal_id}/cancel"


async def broadcast_withdrawal(client, db, owner) -> tuple[str, int]:
    """A requested withdrawal, put where the custody worker leaves it once broadcast (no chain here): its
    id and nonce (the database is shared by the tests: a nonce of its own)."""
    response = await client.post(f"{API}/platform/crypto/withdrawals/request", json=body(), headers=owner.headers)
    assert response.status == 201, await response.text()
    withdrawal_id, nonce = (await response.json())["id"], uuid.uuid4().int % 2**62
    async with unit_of_work(db) as session:
        await session.execute(text("UPDATE withdrawals SET state = 'broadcast', nonce = :nonce,"
                                   " hot_wallet = '0x0000000000000000000000000000000000000001' WHERE id = :id"),
                              {"id": withdrawal_id, "nonce": nonce})
    return withdrawal_id, nonce


async def test_an_operator_cancels_a_broadcast_withdrawal_with_a_fresh_code(client, db, login_as,
                                                                             database_url) -> None:
    owner = await login_as(client)
    approver = await login_approver(client, database_url)
    response = await client.post(f"{API}/platform/crypto/withdrawals/request", json=body(), headers=owner.headers)
    requested = (await response.json())["id"]
    not_yet = await client.post(cancel_url(requested), json={"totp_code": await approver.totp.code()},
                                headers=approver.headers)
    assert not_yet.status == 409 and await error_code(not_yet) == "invalid_state"

    withdrawal_id, nonce = await broadcast_withdrawal(client, db, owner)
    without_code = await client.post(cancel_url(withdrawal_id), json={}, headers=approver.headers)
    assert without_code.status == 401 and await error_code(without_code) == "mfa_required"

    cancelled = await client.post(cancel_url(withdrawal_id), json={"totp_code": await approver.totp.code()},
                                  headers=approver.headers)

    assert cancelled.status == 202, await cancelled.text()
    assert (await cancelled.json())["state"] == "broadcast"  # until something at its nonce is mined
    async with db() as session:
        requested_at = await session.scalar(text("SELECT cancel_requested_at FROM withdrawals WHERE id = :id"),
                                            {"id": withdrawal_id})
        events = await audit.events_of(session, "withdrawal", uuid.UUID(withdrawal_id))
    assert requested_at is not None
    assert (events[-1].type, events[-1].actor, events[-1].data["nonce"]) == (
        "withdrawal.cancel_requested", str(approver.user_id), nonce)
    again = await client.post(cancel_url(withdrawal_id), json={"totp_code": await approver.totp.code()},
                              headers=approver.headers)
    assert again.status == 409 and await error_code(again) == "cancel_requested"


async def test_customers_and_operators_without_mfa_cannot_cancel(client, db, login_as) -> None:
    owner, operator = await login_as(client), await login_as(client, "operator")
    withdrawal_id, _ = await broadcast_withdrawal(client, db, owner)

    by_owner = await client.post(cancel_url(withdrawal_id), json={}, headers=owner.headers)
    by_operator = await client.post(cancel_url(withdrawal_id), json={"totp_code": "123456"},
                                    headers=operator.headers)

    assert by_owner.status == 403
    assert by_operator.status == 403 and await error_code(by_operator) == "mfa_required_for_approval"
    async with db() as session:
        assert await session.scalar(text("SELECT cancel_requested_at FROM withdrawals WHERE id = :id"),
                                    {"id": withdrawal_id}) is None
