"""A broadcast transaction not mined after ``withdrawal_stuck_blocks`` blocks is replaced by the same
payment at the same nonce with higher fees; whichever of them is mined is the withdrawal's."""

from __future__ import annotations

import logging
import uuid

from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from core.sign_requests import SIGN_ACTOR, UnsignedTx
from custody.chains import ChainRejected
from custody.chains.base import FeeQuote
from tests.unit.custody.withdrawals.conftest import (
    CONFIRMATIONS,
    FEE_CAPS,
    STUCK_BLOCKS,
    CustodyWorker,
)
from tests.unit.custody.withdrawals.stub_chain import GWEI

# The stub's quote (base 10 gwei, tip 2 gwei) gives 2 × 10 + 2 = 22 gwei; a bump adds 25 % and 1 wei.
FIRST_MAX_FEE, FIRST_TIP = 22 * GWEI, 2 * GWEI
BUMPED_MAX_FEE, BUMPED_TIP = 27_500_000_001, 2_500_000_001
# The first transaction and its fee bumps: one short of the signer's replacements (the last is a cancel's).
MAX_ATTEMPTS = FEE_CAPS.max_replacements


async def stuck(worker: CustodyWorker, withdrawal_id: uuid.UUID) -> None:
    """The chain moves on by the stuck window without mining the withdrawal; the tracker looks."""
    worker.chain.advance(STUCK_BLOCKS)
    await worker.track(withdrawal_id)


async def test_a_transaction_not_mined_in_time_is_replaced_at_the_same_nonce_with_higher_fees(worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    broadcast_block = worker.chain.head_number
    worker.chain.advance(STUCK_BLOCKS - 1)
    await worker.track(withdrawal_id)
    assert len(await worker.attempts(withdrawal_id)) == 1  # one block short of stuck: no receipt yet is fine
    worker.forget_queued()

    worker.chain.advance(1)
    await worker.track(withdrawal_id)

    first, bump = await worker.attempts(withdrawal_id)
    first_tx, bump_tx = UnsignedTx.parse(first.unsigned_tx), UnsignedTx.parse(bump.unsigned_tx)
    assert first_tx.same_payment(bump_tx) and bump_tx.nonce == 7
    assert (first.max_fee_per_gas, first.max_priority_fee_per_gas) == (FIRST_MAX_FEE, FIRST_TIP)
    assert (bump.max_fee_per_gas, bump.max_priority_fee_per_gas) == (BUMPED_MAX_FEE, BUMPED_TIP)
    assert (bump_tx.max_fee_per_gas, bump_tx.max_priority_fee_per_gas) == (BUMPED_MAX_FEE, BUMPED_TIP)
    assert worker.queued("signer") == [(SIGN_ACTOR, (str(withdrawal_id), bump.unsigned_tx, bump.authorization))]
    assert (await worker.events(withdrawal_id))[-1] == ("withdrawal.fee_bump_requested", {
        "attempt": 2, "stuck_since_block": broadcast_block, "head": broadcast_block + STUCK_BLOCKS,
        "max_fee_per_gas": str(BUMPED_MAX_FEE)})

    # Signed and broadcast: the node now has two transactions at nonce 7, the second paying more.
    bump_hash = await worker.sign(withdrawal_id, attempt=2)
    assert worker.queued("custody") == [("custody.broadcast_withdrawal", (str(withdrawal_id),))]
    await worker.broadcast(withdrawal_id)
    sent = [TypedTransaction.from_bytes(HexBytes(raw)).as_dict() for raw in worker.chain.broadcasts]
    assert [(tx["nonce"], tx["maxFeePerGas"]) for tx in sent] == [(7, FIRST_MAX_FEE), (7, BUMPED_MAX_FEE)]
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.tx_hash) == ("broadcast", first.tx_hash)  # the mined one decides
    assert (await worker.events(withdrawal_id))[-1][0] == "withdrawal.replaced"

    worker.chain.mine(bump_hash)
    worker.chain.advance(CONFIRMATIONS - 1)
    await worker.track(withdrawal_id)
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.tx_hash) == ("confirmed", bump_hash)


async def test_a_fee_bump_pays_at_least_todays_quote(worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    worker.chain.fee_quote = FeeQuote(base_fee=40 * GWEI, priority_fee=3 * GWEI)  # fees spiked meanwhile

    await stuck(worker, withdrawal_id)

    bump = (await worker.attempts(withdrawal_id))[-1]
    assert (bump.max_fee_per_gas, bump.max_priority_fee_per_gas) == (83 * GWEI, 3 * GWEI)


async def test_only_the_lowest_unmined_nonce_is_bumped(worker) -> None:
    """Bumping nonce 8 while 7 waits cannot get 8 mined; 7's own tracker bumps 7."""
    waiting, behind = await worker.to_broadcast(), await worker.to_broadcast()
    assert [(await worker.withdrawal(item)).nonce for item in (waiting, behind)] == [7, 8]

    await stuck(worker, behind)
    await worker.track(waiting)

    assert len(await worker.attempts(behind)) == 1
    assert len(await worker.attempts(waiting)) == 2


async def test_a_fee_bump_the_signer_refuses_is_audited_and_the_first_transaction_stands(worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    first = await worker.attempt(withdrawal_id, 1)
    await stuck(worker, withdrawal_id)

    await worker.refuse(withdrawal_id, "daily_limit_exceeded", attempt=2)

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.failure_reason, withdrawal.nonce_released) == ("broadcast", None, False)
    assert (await worker.hold(withdrawal_id)).state == "pending"
    assert (await worker.attempt(withdrawal_id, 2)).refusal == "daily_limit_exceeded"
    assert (await worker.events(withdrawal_id))[-1] == ("withdrawal.fee_bump_refused", {
        "attempt": 2, "reason": "daily_limit_exceeded", "message": "refused: daily_limit_exceeded"})
    worker.chain.mine(first.tx_hash)
    worker.chain.advance(CONFIRMATIONS - 1)
    await worker.track(withdrawal_id)
    assert (await worker.withdrawal(withdrawal_id)).state == "confirmed"


async def test_a_fee_bump_the_node_rejects_leaves_the_first_transaction_standing(worker, caplog) -> None:
    withdrawal_id = await worker.to_broadcast()
    await stuck(worker, withdrawal_id)
    await worker.sign(withdrawal_id, attempt=2)
    worker.chain.errors["broadcast"] = ChainRejected("ethereum: replacement transaction underpriced")

    with caplog.at_level(logging.WARNING, logger="custody.withdrawals.pipeline"):
        await worker.broadcast(withdrawal_id)  # no error: receipts decide

    bump = await worker.attempt(withdrawal_id, 2)
    assert (bump.refusal, bump.broadcast_at) == ("broadcast_rejected", None)
    assert (await worker.withdrawal(withdrawal_id)).state == "broadcast"
    assert (await worker.events(withdrawal_id))[-1][0] == "withdrawal.fee_bump_requested"  # no "replaced"
    assert any("fee bump 2 rejected" in record.getMessage() for record in caplog.records)


async def test_after_five_fee_bumps_the_withdrawal_is_left_to_operators(worker, caplog) -> None:
    withdrawal_id = await worker.to_broadcast()
    for attempt in range(2, MAX_ATTEMPTS + 1):
        await stuck(worker, withdrawal_id)
        await worker.sign(withdrawal_id, attempt=attempt)
        await worker.broadcast(withdrawal_id)
    fees = [attempt.max_fee_per_gas for attempt in await worker.attempts(withdrawal_id)]
    assert fees == sorted(set(fees)) and len(fees) == MAX_ATTEMPTS  # each one higher than the last

    with caplog.at_level(logging.ERROR, logger="custody.withdrawals.pipeline"):
        await stuck(worker, withdrawal_id)

    assert len(await worker.attempts(withdrawal_id)) == MAX_ATTEMPTS
    assert any("not mined after 5 fee bumps" in record.getMessage() for record in caplog.records)
    assert (await worker.withdrawal(withdrawal_id)).state == "broadcast"
    assert (await worker.hold(withdrawal_id)).state == "pending"

