"""A broadcast nonce that is not mined is never left to chance: its highest-fee transaction is sent again
every ``withdrawal_rebroadcast_blocks`` (a node may drop it), a fee bump the node or the signer refused
is tried again later, and once the fee bumps are used up operators are alerted — once."""

from __future__ import annotations

import logging

from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from custody.chains import ChainRejected
from tests.unit.custody.withdrawals.conftest import (
    CONFIRMATIONS,
    FEE_CAPS,
    REBROADCAST_BLOCKS,
    STUCK_BLOCKS,
    CustodyWorker,
)

PIPELINE_LOG = "custody.withdrawals"


def sent_fees(worker: CustodyWorker) -> list[tuple[int, int]]:
    """(nonce, max fee per gas) of every transaction the node was sent, in order."""
    decoded = [TypedTransaction.from_bytes(HexBytes(raw)).as_dict() for raw in worker.chain.broadcasts]
    return [(tx["nonce"], tx["maxFeePerGas"]) for tx in decoded]


async def bumped(worker: CustodyWorker, withdrawal_id) -> int:
    """Stuck long enough for a fee bump; the signer signs it. Returns the bump's attempt number."""
    worker.chain.advance(STUCK_BLOCKS)
    await worker.track(withdrawal_id)
    number = (await worker.attempts(withdrawal_id))[-1].attempt
    await worker.sign(withdrawal_id, attempt=number)
    return number


async def test_dropped_tx_is_rebroadcast(worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    first = await worker.attempt(withdrawal_id, 1)
    assert len(worker.chain.broadcasts) == 1
    # The node forgot it (a restart, a full pool): nothing says so but the missing receipt.
    worker.chain.advance(REBROADCAST_BLOCKS - 1)
    await worker.track(withdrawal_id)
    assert len(worker.chain.broadcasts) == 1

    worker.chain.advance(1)
    await worker.track(withdrawal_id)
    await worker.track(withdrawal_id)  # the same head: sent once per window, not every tick

    assert [bytes(raw).hex() for raw in worker.chain.broadcasts] == [first.raw_tx.removeprefix("0x")] * 2
    # With a fee bump signed and broadcast, the highest fee is what is sent again.
    bump = await bumped(worker, withdrawal_id)
    await worker.broadcast(withdrawal_id)
    worker.chain.advance(REBROADCAST_BLOCKS)
    await worker.track(withdrawal_id)
    fees = sent_fees(worker)
    bump_fee = (await worker.attempt(withdrawal_id, bump)).max_fee_per_gas
    assert fees[-2:] == [(7, bump_fee), (7, bump_fee)] and len(fees) == 4
    # Mined: nothing is sent any more.
    worker.chain.mine((await worker.attempt(withdrawal_id, bump)).tx_hash)
    worker.chain.advance(REBROADCAST_BLOCKS)
    await worker.track(withdrawal_id)
    assert len(worker.chain.broadcasts) == 4


async def test_rejected_bump_is_retried(worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    bump = await bumped(worker, withdrawal_id)
    worker.chain.errors["broadcast"] = ChainRejected("ethereum: txpool is full")
    await worker.broadcast(withdrawal_id)
    rejected = await worker.attempt(withdrawal_id, bump)
    assert (rejected.refusal, rejected.broadcast_at) == ("broadcast_rejected", None)
    assert rejected.rejected_block == worker.chain.head_number

    worker.chain.advance(REBROADCAST_BLOCKS - 1)
    await worker.track(withdrawal_id)
    assert len(worker.chain.broadcasts) == 1  # not yet: only the first transaction is out

    del worker.chain.errors["broadcast"]
    worker.chain.advance(1)
    await worker.track(withdrawal_id)

    retried = await worker.attempt(withdrawal_id, bump)
    assert (retried.refusal, retried.broadcast_at is not None) == (None, True)
    assert sent_fees(worker)[-1] == (7, retried.max_fee_per_gas)
    assert (await worker.events(withdrawal_id))[-1][0] == "withdrawal.replaced"
    worker.chain.mine(retried.tx_hash)
    worker.chain.advance(CONFIRMATIONS - 1)
    await worker.track(withdrawal_id)
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.tx_hash) == ("confirmed", retried.tx_hash)


async def test_a_bump_the_signer_refused_is_asked_again_after_the_stuck_window(worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    worker.chain.advance(STUCK_BLOCKS)
    await worker.track(withdrawal_id)
    await worker.refuse(withdrawal_id, "fee_budget_exceeded", attempt=2)  # the day's fee budget is spent

    worker.chain.advance(STUCK_BLOCKS - 1)
    await worker.track(withdrawal_id)
    assert len(await worker.attempts(withdrawal_id)) == 2

    worker.chain.advance(1)
    await worker.track(withdrawal_id)
    attempts = await worker.attempts(withdrawal_id)
    assert [(item.attempt, item.refusal) for item in attempts] == [(1, None), (2, "fee_budget_exceeded"), (3, None)]
    assert attempts[2].max_fee_per_gas > attempts[1].max_fee_per_gas  # above the refused one's too
    await worker.sign(withdrawal_id, attempt=3)
    await worker.broadcast(withdrawal_id)
    assert (await worker.events(withdrawal_id))[-1][0] == "withdrawal.replaced"


async def test_fee_bumps_stop_one_short_of_the_signers_replacement_limit_and_alert_once(worker, caplog) -> None:
    """The signer allows ``max_replacements`` per nonce: the last one is kept for an operator's cancel."""
    withdrawal_id = await worker.to_broadcast()
    for _ in range(FEE_CAPS.max_replacements - 1):
        await bumped(worker, withdrawal_id)
        await worker.broadcast(withdrawal_id)
    assert len(await worker.attempts(withdrawal_id)) == FEE_CAPS.max_replacements

    with caplog.at_level(logging.ERROR, logger=PIPELINE_LOG):
        for _ in range(3):
            worker.chain.advance(STUCK_BLOCKS)
            await worker.track(withdrawal_id)

    assert len(await worker.attempts(withdrawal_id)) == FEE_CAPS.max_replacements
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.alert) == ("broadcast", "fee_bumps_exhausted")
    assert len([record for record in caplog.records if "fee bumps" in record.getMessage()]) == 1
    assert [event for event, _ in await worker.events(withdrawal_id)].count("withdrawal.fee_bumps_exhausted") == 1
    assert (await worker.hold(withdrawal_id)).state == "pending"
