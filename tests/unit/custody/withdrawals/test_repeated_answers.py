"""Answers and requests that come twice: a refusal delivered again, the same payment asked for again."""

from __future__ import annotations

from custody.chains.base import Chain
from tests.unit.custody.withdrawals.conftest import ETH


async def test_a_refusal_delivered_twice_changes_nothing_the_second_time(worker) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    await worker.refuse(withdrawal_id, "single_limit_exceeded")
    events = await worker.events(withdrawal_id)

    await worker.refuse(withdrawal_id, "single_limit_exceeded")  # redelivered by the broker
    await worker.refuse(withdrawal_id, "daily_limit_exceeded")  # or answered again, otherwise

    assert await worker.events(withdrawal_id) == events  # no "fee_bump_refused", no second "failed"
    assert (await worker.attempt(withdrawal_id, 1)).refusal == "single_limit_exceeded"
    assert await worker.released_nonces((await worker.withdrawal(withdrawal_id)).hot_wallet) == [7]


async def test_the_same_payment_asked_for_again_at_a_nonce_given_back(worker) -> None:
    """Same destination, amount and fees at the same nonce: the very transaction the refused one asked for."""
    refused, again = await worker.approved_withdrawal(amount=ETH), await worker.approved_withdrawal(amount=ETH)
    await worker.request_signature(refused)
    await worker.refuse(refused, "sanctioned_address")

    await worker.request_signature(again)

    first, second = await worker.attempt(refused, 1), await worker.attempt(again, 1)
    assert (await worker.withdrawal(again)).nonce == 7
    assert (second.unsigned_tx, second.request_digest) == (first.unsigned_tx, first.request_digest)
    await worker.sign(again)
    assert (await worker.withdrawal(again)).state == "signed"


def test_the_mined_nonce_is_a_verb_of_every_chain() -> None:
    assert "mined_nonce" in Chain.__abstractmethods__
