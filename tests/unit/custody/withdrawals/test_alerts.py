"""What the pipeline does when an answer or the node is not what it expects: it keeps the hold, says so
(an audit event, a metric or an error log) and lets the tracker or an operator go on."""

from __future__ import annotations

import logging

import pytest
from eth_account import Account

from core.sign_requests import SIGN_ACTOR, UnsignedTx
from custody.chains import ChainRejected, ChainUnavailable
from tests.unit.custody.withdrawals.conftest import ETH, FEE, counted

REFUSALS = "virtuoz_withdrawal_signer_refusals_total"
REJECTED_REPLIES = "virtuoz_withdrawal_signed_replies_rejected_total"
PIPELINE_LOG = "custody.withdrawals.pipeline"


@pytest.mark.parametrize("reason", ["withdrawal_signed_elsewhere", "replacement_not_allowed"])
async def test_a_signer_alert_keeps_the_hold_and_stops_resending(worker, caplog, reason: str) -> None:
    """The signer holds a transaction for this withdrawal already: voiding the hold could pay twice."""
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)

    with caplog.at_level(logging.ERROR, logger=PIPELINE_LOG):
        await worker.refuse(withdrawal_id, reason)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason, withdrawal.nonce_released) == ("signing", reason, False)
    assert (await worker.hold(withdrawal_id)).state == "pending"
    assert await worker.eth_balance(withdrawal_id) == (10 * ETH - ETH - FEE, ETH + FEE)
    assert await worker.released_nonces(withdrawal.hot_wallet) == []
    events = await worker.events(withdrawal_id)
    assert events[-1] == ("withdrawal.signer_alert", {"reason": reason, "message": f"refused: {reason}"})
    assert [record.levelname for record in caplog.records if "left for an operator" in record.getMessage()] == ["ERROR"]
    # Left for an operator: the tracker no longer asks the signer again.
    await worker.sign_request_unanswered_for_long(withdrawal_id)
    await worker.track(withdrawal_id)
    assert [name for name, _ in worker.queued("signer")] == [SIGN_ACTOR]  # the first request only


async def test_an_unanswered_sign_request_is_sent_again_by_the_tracker(worker) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    await worker.track(withdrawal_id)
    assert len(worker.queued("signer")) == 1  # answered soon enough: nothing to resend yet

    await worker.sign_request_unanswered_for_long(withdrawal_id)
    await worker.track(withdrawal_id)

    attempt = await worker.attempt(withdrawal_id, 1)
    request = (SIGN_ACTOR, (str(withdrawal_id), attempt.unsigned_tx, attempt.authorization))
    assert worker.queued("signer") == [request, request]  # the same request: the signer answers it once


@pytest.mark.parametrize("reason", ["invalid_authorization", "malformed_request"])
async def test_a_refusal_that_may_be_forged_changes_nothing(worker, reason: str) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    before = counted(REFUSALS, reason=reason)

    await worker.refuse(withdrawal_id, reason)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason) == ("signing", None)
    assert (await worker.attempt(withdrawal_id, 1)).refusal is None
    assert (await worker.hold(withdrawal_id)).state == "pending"
    assert [event_type for event_type, _ in await worker.events(withdrawal_id)] == ["withdrawal.signing"]
    assert counted(REFUSALS, reason=reason) - before == 1


@pytest.mark.parametrize("forgery", ["another_amount", "another_key"])
async def test_a_signed_reply_that_is_not_the_requested_transaction_is_never_broadcast(
        worker, caplog, forgery: str) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    requested = UnsignedTx.parse((await worker.attempt(withdrawal_id, 1)).unsigned_tx)
    fields, key = requested.for_signing(), worker.signer_key
    if forgery == "another_amount":
        fields["value"] = 2 * ETH
    else:
        key = Account.create().key
    before = counted(REJECTED_REPLIES)

    with caplog.at_level(logging.ERROR, logger=PIPELINE_LOG):
        await worker.sign(withdrawal_id, raw_tx=Account.sign_transaction(fields, key).raw_transaction.to_0x_hex())

    assert (await worker.withdrawal(withdrawal_id)).state == "signing"
    assert (await worker.attempt(withdrawal_id, 1)).raw_tx is None
    assert counted(REJECTED_REPLIES) - before == 1
    assert any("signed reply rejected" in record.getMessage() for record in caplog.records)
    assert worker.queued("custody") == []
    # The genuine answer still counts.
    await worker.sign(withdrawal_id)
    assert (await worker.withdrawal(withdrawal_id)).state == "signed"


@pytest.mark.parametrize("error", [ChainRejected("ethereum: insufficient funds for gas * price + value"),
                                   ChainUnavailable("ethereum did not answer within 5s")],
                         ids=["node_rejects", "node_unreachable"])
async def test_a_first_broadcast_that_fails_is_retried_and_nothing_is_recorded(worker, error) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    await worker.sign(withdrawal_id)
    worker.forget_queued()
    worker.chain.errors["broadcast"] = error

    with pytest.raises(type(error)):  # the job fails, and Dramatiq retries it
        await worker.broadcast(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.tx_hash, withdrawal.broadcast_at) == ("signed", None, None)
    assert (await worker.attempt(withdrawal_id, 1)).broadcast_at is None
    assert [event_type for event_type, _ in await worker.events(withdrawal_id)] == [
        "withdrawal.signing", "withdrawal.signed"]
    # The tracker drives it again; once the node takes it, it is broadcast.
    await worker.track(withdrawal_id)
    assert worker.queued("custody") == [("custody.broadcast_withdrawal", (str(withdrawal_id),))]
    del worker.chain.errors["broadcast"]
    await worker.broadcast(withdrawal_id)
    assert (await worker.withdrawal(withdrawal_id)).state == "broadcast"
    assert len(worker.chain.broadcasts) == 1


async def test_an_unreachable_node_leaves_the_withdrawal_approved_without_a_nonce(worker) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    worker.chain.errors["fees"] = ChainUnavailable("ethereum is unreachable")

    with pytest.raises(ChainUnavailable):
        await worker.request_signature(withdrawal_id)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.nonce, withdrawal.hot_wallet) == ("approved", None, None)
    assert await worker.attempts(withdrawal_id) == []
    assert worker.queued("signer") == []
    del worker.chain.errors["fees"]
    await worker.request_signature(withdrawal_id)  # the retry
    assert (await worker.withdrawal(withdrawal_id)).nonce == 7
