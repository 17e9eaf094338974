"""The signer refuses a withdrawal's first transaction: it fails, its hold is voided, its nonce given back."""

from __future__ import annotations


from tests.unit.custody.withdrawals.conftest import ETH, FEE, counted

REFUSALS = "virtuoz_withdrawal_signer_refusals_total"


async def test_refused_signature_voids_the_hold_and_gives_the_nonce_back(worker) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    assert await worker.eth_balance(withdrawal_id) == (10 * ETH - ETH - FEE, ETH + FEE)
    before = counted(REFUSALS, reason="single_limit_exceeded")

    await worker.refuse(withdrawal_id, "single_limit_exceeded")

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason) == ("failed", "single_limit_exceeded")
    assert withdrawal.finished_at is not None
    assert (withdrawal.nonce, withdrawal.nonce_released) == (7, True)
    assert await worker.released_nonces(withdrawal.hot_wallet) == [7]
    assert (await worker.hold(withdrawal_id)).state == "voided"
    assert await worker.legs(f"withdrawal:{withdrawal_id}:void") == {"held": -(ETH + FEE), "available": ETH + FEE}
    assert await worker.eth_balance(withdrawal_id) == (10 * ETH, 0)
    events = await worker.events(withdrawal_id)
    assert [event_type for event_type, _ in events] == ["withdrawal.signing", "withdrawal.failed"]
    assert events[-1][1]["reason"] == "single_limit_exceeded"
    assert (await worker.attempt(withdrawal_id, 1)).refusal == "single_limit_exceeded"
    assert counted(REFUSALS, reason="single_limit_exceeded") - before == 1
    assert worker.queued("custody") == []  # nothing to broadcast


async def test_the_next_withdrawal_takes_a_released_nonce_first(worker) -> None:
    refused, following = await worker.approved_withdrawal(), await worker.approved_withdrawal(amount=2 * ETH)
    await worker.request_signature(refused)
    await worker.refuse(refused, "daily_limit_exceeded")

    await worker.request_signature(following)

    withdrawal = await worker.withdrawal(following)
    assert (withdrawal.state, withdrawal.nonce) == ("signing", 7)  # no gap at 7 stays on the chain
    assert await worker.released_nonces(withdrawal.hot_wallet) == []


async def test_a_nonce_taken_refusal_fails_the_withdrawal_but_keeps_the_nonce_out_of_reuse(worker) -> None:
    """"nonce_taken": the signer signed that nonce for another withdrawal, so nobody may take it again."""
    refused, following = await worker.approved_withdrawal(), await worker.approved_withdrawal()
    await worker.request_signature(refused)

    await worker.refuse(refused, "nonce_taken")

    withdrawal = await worker.withdrawal(refused)
    assert (withdrawal.state, withdrawal.nonce, withdrawal.nonce_released) == ("failed", 7, False)
    assert (await worker.hold(refused)).state == "voided"
    assert await worker.released_nonces(withdrawal.hot_wallet) == []
    await worker.request_signature(following)
    assert (await worker.withdrawal(following)).nonce == 8
