"""Pre-flight before signing: the custody worker asks the node to run the payment (eth_estimateGas) just
before it asks the signer; one that would revert now is rolled back, never signed, never paid gas for."""

from __future__ import annotations

import pytest

from custody.chains import ChainUnavailable
from custody.chains.base import ExecutionReverted
from tests.unit.custody.withdrawals.conftest import ETH


async def test_a_payment_that_would_revert_now_is_rolled_back_before_signing(worker) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    worker.chain.errors["estimate_gas"] = ExecutionReverted("execution reverted: recipient refuses ETH",
                                                            details={"chain": worker.chain.name})

    await worker.request_signature(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason, withdrawal.nonce) == ("rolled_back", "would_revert", None)
    assert await worker.attempts(withdrawal_id) == [] and worker.queued("signer") == []
    assert (await worker.hold(withdrawal_id)).state == "voided"
    assert await worker.eth_balance(withdrawal_id) == (10 * ETH, 0)
    event_type, data = (await worker.events(withdrawal_id))[-1]
    assert (event_type, data["reason"]) == ("withdrawal.rolled_back", "would_revert")
    assert "recipient refuses ETH" in data["detail"]


async def test_a_payment_needing_more_gas_than_its_limit_is_rolled_back(worker) -> None:
    """Sent with the configured gas limit, it would run out of gas on chain: a revert that costs gas."""
    withdrawal_id = await worker.approved_withdrawal()
    worker.chain.gas_estimate = worker.settings.withdrawal_gas_limit_native + 1

    await worker.request_signature(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason) == ("rolled_back", "would_revert")
    assert worker.queued("signer") == []
    _, data = (await worker.events(withdrawal_id))[-1]
    assert (data["gas_needed"], data["gas_limit"]) == (21_001, 21_000)


async def test_no_verdict_from_the_node_leaves_the_withdrawal_approved_for_the_next_try(worker) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    worker.chain.errors["estimate_gas"] = ChainUnavailable("node down", details={"chain": worker.chain.name})

    with pytest.raises(ChainUnavailable):
        await worker.request_signature(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.nonce) == ("approved", None)
    assert (await worker.hold(withdrawal_id)).state == "pending"
    del worker.chain.errors["estimate_gas"]
    await worker.request_signature(withdrawal_id)  # the tracker sends it again; now the node answers
    assert (await worker.withdrawal(withdrawal_id)).state == "signing"
