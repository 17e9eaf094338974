"""A freeze stops money leaving at every step, not only at the request: the custody worker never asks
the signer for a frozen customer's withdrawal, even one approved before the freeze."""

from __future__ import annotations

from core.db import unit_of_work
from custody import freezes
from tests.unit.custody.withdrawals.conftest import ETH


async def test_frozen_user_cannot_be_signed_for(worker) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    owner = (await worker.withdrawal(withdrawal_id)).user_id
    async with unit_of_work(worker.factory) as session:
        await freezes.freeze(session, owner, "reorg shortfall")

    await worker.request_signature(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    # Rolled back, not left waiting: its approval was given before the freeze was known.
    assert (withdrawal.state, withdrawal.failure_reason) == ("rolled_back", "withdrawals_frozen")
    assert (withdrawal.nonce, withdrawal.hot_wallet, withdrawal.finished_at is not None) == (None, None, True)
    assert await worker.attempts(withdrawal_id) == []
    assert worker.queued("signer") == []
    assert (await worker.hold(withdrawal_id)).state == "voided"
    assert await worker.eth_balance(withdrawal_id) == (10 * ETH, 0)
    event_type, data = (await worker.events(withdrawal_id))[-1]
    assert (event_type, data["state"], data["reason"]) == ("withdrawal.rolled_back", "rolled_back",
                                                            "withdrawals_frozen")

    events = await worker.events(withdrawal_id)
    await worker.request_signature(withdrawal_id)  # a redelivered message changes nothing
    assert await worker.events(withdrawal_id) == events
