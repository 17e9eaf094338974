"""The signer's replies are believed only when the signer key signed exactly what they say.

Anyone who can write to Redis can put a message on the custody queue. A refusal voids the hold and
gives the nonce back; believed while the real signer signs the same withdrawal, it would let the
customer withdraw the money again while the signed transaction is broadcast: a double payment.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import dramatiq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from core.sign_requests import REFUSED_ACTOR, REFUSED_REPLY, SIGNED_ACTOR, SIGNED_REPLY, UnsignedTx, sign_reply
from custody.chains.transactions import tx_hash
from tests.unit.custody.withdrawals.conftest import ETH, FEE, counted

UNVERIFIED = "virtuoz_withdrawal_unverified_replies_total"
REJECTED_REPLIES = "virtuoz_withdrawal_signed_replies_rejected_total"
ELSEWHERE = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
PIPELINE_LOG = "custody.withdrawals"


def enqueue(worker, actor: str, *args: str) -> None:
    worker.broker.enqueue(dramatiq.Message(queue_name="custody", actor_name=actor, args=args, kwargs={}, options={}))


async def test_forged_refusal_is_ignored(worker, caplog) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    wid, digest = str(withdrawal_id), (await worker.attempt(withdrawal_id, 1)).request_digest
    words = ("single_limit_exceeded", "over the limit")
    forgeries = [
        (wid, digest, *words),  # unsigned, as every refusal used to be
        (wid, digest, *words, sign_reply(Ed25519PrivateKey.generate(), REFUSED_REPLY, wid, digest, words)),
        (wid, digest, *words, worker.reply_signature(SIGNED_REPLY, wid, digest, words)),  # another kind of reply
        (wid, digest, "daily_limit_exceeded", words[1], worker.reply_signature(REFUSED_REPLY, wid, digest, words)),
        (wid, digest, *words, "not base64url!"),
    ]
    before = counted(UNVERIFIED, kind="refused")
    for forged in forgeries:
        enqueue(worker, REFUSED_ACTOR, *forged)

    with caplog.at_level(logging.ERROR):
        await worker.deliver()

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason, withdrawal.nonce_released) == ("signing", None, False)
    assert (await worker.hold(withdrawal_id)).state == "pending"
    assert await worker.eth_balance(withdrawal_id) == (10 * ETH - ETH - FEE, ETH + FEE)
    assert await worker.released_nonces(withdrawal.hot_wallet) == []
    assert (await worker.attempt(withdrawal_id, 1)).refusal is None
    events = await worker.events(withdrawal_id)
    assert [event_type for event_type, _ in events] == ["withdrawal.signing", *["withdrawal.unverified_reply"] * 5]
    assert {data["kind"] for _, data in events[1:]} == {"refused"}
    assert counted(UNVERIFIED, kind="refused") - before == 5
    alerts = [record for record in caplog.records if record.name.startswith(PIPELINE_LOG)
              and record.levelno == logging.ERROR and "not signed by the signer key" in record.getMessage()]
    assert len(alerts) == 5

    # The real signature then proceeds.
    await worker.sign(withdrawal_id)
    assert (await worker.withdrawal(withdrawal_id)).state == "signed"
    assert [name for name, _ in worker.queued("custody")] == ["custody.broadcast_withdrawal"]


async def test_tampered_signed_reply_is_rejected(worker, caplog) -> None:
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    attempt = await worker.attempt(withdrawal_id, 1)
    requested = UnsignedTx.parse(attempt.unsigned_tx)
    # The same nonce and fees, paying someone else, signed by the hot wallet; the reply itself correctly
    # signed by the signer key: the transaction, not the envelope, is what is wrong.
    elsewhere = Account.sign_transaction(replace(requested, to=ELSEWHERE).for_signing(),
                                         worker.signer_key).raw_transaction.to_0x_hex()
    before = counted(REJECTED_REPLIES)

    with caplog.at_level(logging.ERROR):
        await worker.sign(withdrawal_id, raw_tx=elsewhere)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.tx_hash) == ("signing", None)
    assert (await worker.attempt(withdrawal_id, 1)).raw_tx is None
    assert worker.queued("custody") == []  # nothing to broadcast
    assert (await worker.hold(withdrawal_id)).state == "pending"
    assert counted(REJECTED_REPLIES) - before == 1
    event_type, data = (await worker.events(withdrawal_id))[-1]
    assert (event_type, data["request_digest"], data["tx_hash"]) == (
        "withdrawal.signed_reply_rejected", attempt.request_digest, tx_hash(elsewhere))
    assert any(record.levelno == logging.ERROR and "signed reply rejected" in record.getMessage()
               for record in caplog.records)

    # The genuine transaction with the signature of another reply over it: the envelope no longer verifies.
    genuine = Account.sign_transaction(requested.for_signing(), worker.signer_key).raw_transaction.to_0x_hex()
    signature = worker.reply_signature(SIGNED_REPLY, withdrawal_id, attempt.request_digest,
                                       (elsewhere, tx_hash(elsewhere)))
    enqueue(worker, SIGNED_ACTOR, str(withdrawal_id), attempt.request_digest, genuine, tx_hash(genuine), signature)
    await worker.deliver()
    assert (await worker.withdrawal(withdrawal_id)).state == "signing"
    assert (await worker.events(withdrawal_id))[-1][0] == "withdrawal.unverified_reply"

    # The genuine reply is believed.
    await worker.sign(withdrawal_id)
    assert (await worker.withdrawal(withdrawal_id)).state == "signed"
