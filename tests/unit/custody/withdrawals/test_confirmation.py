"""Receipts, followed to the chain's confirmations: mined, the hold is posted; reverted, it is voided.
Either way the hot wallet paid the gas, a platform cost booked from ``fees`` to ``network_fees``."""

from __future__ import annotations

from tests.unit.custody.withdrawals.conftest import CONFIRMATIONS, ETH, FEE
from tests.unit.custody.withdrawals.stub_chain import GWEI

GAS_COST = 21_000 * 12 * GWEI  # the stub's receipt: gas used × effective gas price = 0.000252 ETH


async def test_a_mined_transaction_is_confirmed_at_the_chains_depth_and_its_hold_posted(worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    tx_hash = (await worker.attempt(withdrawal_id, 1)).tx_hash
    mined_in = worker.chain.mine(tx_hash).block_number
    await worker.track(withdrawal_id)
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.block_number, withdrawal.confirmations) == ("broadcast", mined_in, 1)
    assert (await worker.hold(withdrawal_id)).state == "pending"
    worker.forget_queued()

    worker.chain.advance(CONFIRMATIONS - 1)
    await worker.track(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.tx_hash, withdrawal.confirmations) == ("confirmed", tx_hash, CONFIRMATIONS)
    assert withdrawal.gas_cost == GAS_COST and withdrawal.finished_at is not None
    hold = await worker.hold(withdrawal_id)
    assert (hold.state, hold.posted_amount, hold.fee) == ("posted", ETH, FEE)
    assert await worker.legs(f"withdrawal:{withdrawal_id}:post") == {
        "held": -(ETH + FEE), "chain_withdrawals": ETH, "fees": FEE}
    assert await worker.legs(f"withdrawal:{withdrawal_id}:gas") == {"fees": -GAS_COST, "network_fees": GAS_COST}
    assert await worker.eth_balance(withdrawal_id) == (10 * ETH - ETH - FEE, 0)
    assert (await worker.events(withdrawal_id))[-1] == ("withdrawal.confirmed", {
        "state": "confirmed", "chain": worker.chain.name, "asset": "ETH", "amount": "1", "tx_hash": tx_hash,
        "block_number": mined_in, "confirmations": CONFIRMATIONS, "gas_cost": "252000000000000"})
    assert [(name, args[2:]) for name, args in worker.queued("notifications")] == [
        ("notifications.product_email", ("withdrawal.confirmed", str(withdrawal_id)))]

    events = await worker.events(withdrawal_id)
    await worker.track(withdrawal_id)  # a late tracking message changes nothing
    assert await worker.events(withdrawal_id) == events


async def test_a_reverted_transaction_fails_the_withdrawal_returns_the_amount_takes_the_fee_and_books_the_gas(
        worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    tx_hash = (await worker.attempt(withdrawal_id, 1)).tx_hash
    worker.chain.mine(tx_hash, status=0)
    worker.chain.advance(CONFIRMATIONS - 1)

    await worker.track(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason, withdrawal.tx_hash) == ("failed", "reverted", tx_hash)
    assert withdrawal.gas_cost == GAS_COST
    hold = await worker.hold(withdrawal_id)
    assert (hold.state, hold.posted_amount, hold.fee) == ("posted", FEE, 0)
    assert await worker.legs(f"withdrawal:{withdrawal_id}:post") == {"held": -(ETH + FEE), "available": ETH,
                                                                     "fees": FEE}
    assert await worker.legs(f"withdrawal:{withdrawal_id}:gas") == {"fees": -GAS_COST, "network_fees": GAS_COST}
    # The platform paid the gas: the customer gets the amount back and pays the withdrawal fee.
    assert await worker.eth_balance(withdrawal_id) == (10 * ETH - FEE, 0)
    event_type, data = (await worker.events(withdrawal_id))[-1]
    assert (event_type, data["reason"], data["gas_cost"], data["fee_charged"]) == (
        "withdrawal.failed", "reverted", "252000000000000", "0.0005")
