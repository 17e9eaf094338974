"""An operator cancels a withdrawal stuck at its nonce: a 0-value self-transfer of the hot wallet at that
nonce, paying more than every transaction there. The withdrawal stays ``broadcast`` until one of them
is mined: the cancel (failed, the hold voided, the gas a platform cost) or the payment (confirmed)."""

from __future__ import annotations

import uuid

from core.db import unit_of_work
from core.sign_requests import SIGN_ACTOR, UnsignedTx
from custody.withdrawals import cancels
from custody.withdrawals.models import Withdrawal
from custody.withdrawals.states import allowed_actions, transition
from tests.factories import make_user
from tests.unit.custody.withdrawals.conftest import CONFIRMATIONS, FEE, STUCK_BLOCKS, CustodyWorker
from tests.unit.custody.withdrawals.stub_chain import GWEI

GAS_COST = 21_000 * 12 * GWEI  # the stub's receipt


async def request_cancel(worker: CustodyWorker, withdrawal_id: uuid.UUID) -> None:
    """What the operator's route does once it has checked the operator and their TOTP code
    (tests/integration/custody/withdrawals/test_cancel_route.py)."""
    operator_id = await make_user(worker.factory, tag="operator")
    async with unit_of_work(worker.factory) as session:
        withdrawal = await session.get_one(Withdrawal, withdrawal_id, with_for_update=True)
        await cancels.check_cancellable(session, withdrawal)
        await cancels.mark_requested(session, withdrawal, operator_id)


async def cancelled(worker: CustodyWorker) -> tuple[uuid.UUID, int]:
    """A broadcast withdrawal, stuck and bumped once, that an operator cancels; returns it and the cancel's number."""
    withdrawal_id = await worker.to_broadcast()
    worker.chain.advance(STUCK_BLOCKS)
    await worker.track(withdrawal_id)
    await worker.sign(withdrawal_id, attempt=2)
    await worker.broadcast(withdrawal_id)
    worker.forget_queued()

    await request_cancel(worker, withdrawal_id)
    assert worker.queued("custody") == [("custody.cancel_withdrawal", (str(withdrawal_id),))]
    await worker.deliver("custody")
    return withdrawal_id, 3


async def test_a_mined_cancel_fails_the_withdrawal_and_voids_its_hold(worker) -> None:
    withdrawal_id, number = await cancelled(worker)

    payment, bump, cancel = await worker.attempts(withdrawal_id)
    unsigned = UnsignedTx.parse(cancel.unsigned_tx)
    hot_wallet = (await worker.withdrawal(withdrawal_id)).hot_wallet
    assert (cancel.kind, unsigned.to, unsigned.sender, unsigned.value, unsigned.data, unsigned.nonce) == (
        "cancel", hot_wallet, hot_wallet, 0, "0x", 7)
    # 10 % above every transaction at the nonce, per gas, or the signer (and the node) refuse it.
    assert cancel.max_fee_per_gas * 10 >= bump.max_fee_per_gas * 11
    assert cancel.max_priority_fee_per_gas * 10 >= bump.max_priority_fee_per_gas * 11
    assert worker.queued("signer") == [(SIGN_ACTOR, (str(withdrawal_id), cancel.unsigned_tx, cancel.authorization))]

    cancel_hash = await worker.sign(withdrawal_id, attempt=number)
    await worker.broadcast(withdrawal_id)
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert withdrawal.state == "broadcast"  # until one transaction at the nonce is mined
    assert (await worker.events(withdrawal_id))[-1][0] == "withdrawal.cancel_broadcast"
    assert (await worker.hold(withdrawal_id)).state == "pending"

    worker.chain.mine(cancel_hash)
    await worker.track(withdrawal_id)
    assert (await worker.withdrawal(withdrawal_id)).state == "broadcast"  # one confirmation of two
    worker.chain.advance(CONFIRMATIONS - 1)
    await worker.track(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason, withdrawal.tx_hash) == ("failed", "cancelled", cancel_hash)
    assert withdrawal.gas_cost == GAS_COST and withdrawal.finished_at is not None
    assert (await worker.hold(withdrawal_id)).state == "voided"
    assert await worker.eth_balance(withdrawal_id) == (10 * 10**18, 0)  # neither the amount nor the fee
    assert await worker.legs(f"withdrawal:{withdrawal_id}:gas") == {"fees": -GAS_COST, "network_fees": GAS_COST}
    event, data = (await worker.events(withdrawal_id))[-1]
    assert (event, data["reason"], data["tx_hash"]) == ("withdrawal.failed", "cancelled", cancel_hash)


async def test_the_payment_mined_before_the_cancel_confirms_the_withdrawal(worker) -> None:
    withdrawal_id, number = await cancelled(worker)
    await worker.sign(withdrawal_id, attempt=number)
    await worker.broadcast(withdrawal_id)
    bump = await worker.attempt(withdrawal_id, 2)

    worker.chain.mine(bump.tx_hash)
    worker.chain.advance(CONFIRMATIONS - 1)
    await worker.track(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.tx_hash, withdrawal.failure_reason) == ("confirmed", bump.tx_hash, None)
    hold = await worker.hold(withdrawal_id)
    assert (hold.state, hold.fee) == ("posted", FEE)


async def test_after_a_cancel_the_payment_is_not_bumped_again(worker) -> None:
    withdrawal_id, number = await cancelled(worker)
    await worker.sign(withdrawal_id, attempt=number)
    await worker.broadcast(withdrawal_id)
    worker.chain.advance(3 * STUCK_BLOCKS)
    await worker.track(withdrawal_id)
    assert len(await worker.attempts(withdrawal_id)) == number


async def test_a_cancel_the_signer_refuses_leaves_the_payment_standing(worker) -> None:
    withdrawal_id, number = await cancelled(worker)
    await worker.refuse(withdrawal_id, "fee_budget_exceeded", attempt=number)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.cancel_requested_at, withdrawal.failure_reason) == ("broadcast", None, None)
    assert (await worker.hold(withdrawal_id)).state == "pending"
    assert (await worker.events(withdrawal_id))[-1] == ("withdrawal.cancel_refused", {
        "attempt": number, "reason": "fee_budget_exceeded", "message": "refused: fee_budget_exceeded"})
    # The operator may ask again (later, with fees above the refused cancel's).
    await request_cancel(worker, withdrawal_id)
    await worker.deliver("custody")
    again = (await worker.attempts(withdrawal_id))[-1]
    assert (again.kind, again.attempt) == ("cancel", number + 1)


def test_a_cancel_keeps_the_withdrawal_broadcast_until_its_nonce_is_mined() -> None:
    """Written out by hand, not read back from the table."""
    assert {action: transition("broadcast", action) for action in allowed_actions("broadcast")} == {
        "replace": "broadcast", "request_cancel": "broadcast", "confirm": "confirmed", "revert": "failed",
        "cancel": "failed"}
    for state in ("requested", "approved", "signing", "signed", "confirmed", "failed", "rolled_back"):
        assert "request_cancel" not in allowed_actions(state) and "cancel" not in allowed_actions(state)
