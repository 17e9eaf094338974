"""A nonce the signer refused to sign for, given back while later nonces are already signed, is filled at
once with a 0-value self-transfer of the hot wallet: the node would hold every later transaction until
something is mined at it. A nonce given back at the top is left for the next withdrawal."""

from __future__ import annotations

import uuid

from eth_account import Account
from sqlalchemy import select

from core.db import unit_of_work
from core.sign_requests import REFUSED_REPLY, SIGN_ACTOR, SIGNED_REPLY, UnsignedTx
from custody.chains.transactions import tx_hash
from custody.withdrawals import pipeline
from custody.withdrawals.models import NonceFiller
from custody.withdrawals.nonces import release_nonce
from tests.unit.custody.withdrawals.conftest import CONFIRMATIONS, CustodyWorker
from tests.unit.custody.withdrawals.stub_chain import GWEI

GAS_COST = 21_000 * 12 * GWEI  # the stub's receipt


async def fillers(worker: CustodyWorker) -> list[NonceFiller]:
    async with worker.factory() as session:
        return list(await session.scalars(select(NonceFiller).where(NonceFiller.chain == worker.chain.name)
                                          .order_by(NonceFiller.created_at)))


async def sign_filler(worker: CustodyWorker, filler: NonceFiller) -> str:
    raw_tx = Account.sign_transaction(UnsignedTx.parse(filler.unsigned_tx).for_signing(),
                                      worker.signer_key).raw_transaction.to_0x_hex()
    fields = (raw_tx, tx_hash(raw_tx))
    async with unit_of_work(worker.factory) as session:
        await pipeline.on_signed(session, worker.settings, str(filler.id), filler.request_digest, *fields,
                                 worker.reply_signature(SIGNED_REPLY, filler.id, filler.request_digest, fields))
    return tx_hash(raw_tx)


async def refuse_filler(worker: CustodyWorker, filler: NonceFiller, reason: str) -> None:
    fields = (reason, f"refused: {reason}")
    async with unit_of_work(worker.factory) as session:
        await pipeline.on_refused(session, worker.settings, str(filler.id), filler.request_digest, *fields,
                                  worker.reply_signature(REFUSED_REPLY, filler.id, filler.request_digest, fields))


async def refused_below_a_signed_one(worker: CustodyWorker) -> tuple[uuid.UUID, uuid.UUID]:
    """Two withdrawals at nonces 7 and 8; 8 is signed and broadcast, then the signer refuses 7."""
    refused, later = await worker.approved_withdrawal(), await worker.approved_withdrawal()
    await worker.request_signature(refused)
    await worker.request_signature(later)
    await worker.sign(later)
    await worker.broadcast(later)
    worker.forget_queued()
    await worker.refuse(refused, "sanctioned_address")
    return refused, later


async def test_a_nonce_given_back_below_a_signed_one_is_filled_at_once(worker) -> None:
    refused, later = await refused_below_a_signed_one(worker)
    withdrawal = await worker.withdrawal(refused)
    assert (withdrawal.state, withdrawal.nonce, withdrawal.nonce_released) == ("failed", 7, True)
    assert (await worker.hold(refused)).state == "voided"
    [filler] = await fillers(worker)
    assert (filler.state, filler.nonce, filler.address) == ("pending", 7, withdrawal.hot_wallet)
    assert await worker.released_nonces(withdrawal.hot_wallet) == []  # the filler took it, nobody else will
    assert worker.queued("custody") == [("custody.sign_filler", (str(filler.id),))]

    await worker.deliver("custody")

    [filler] = await fillers(worker)
    unsigned = UnsignedTx.parse(filler.unsigned_tx)
    assert (unsigned.sender, unsigned.to, unsigned.value, unsigned.data, unsigned.nonce, unsigned.gas) == (
        withdrawal.hot_wallet, withdrawal.hot_wallet, 0, "0x", 7, 21_000)
    assert filler.state == "signing"
    assert worker.queued("signer") == [(SIGN_ACTOR, (str(filler.id), filler.unsigned_tx, filler.authorization))]

    filler_hash = await sign_filler(worker, filler)
    await worker.deliver("custody")  # the broadcast
    assert [bytes(raw) for raw in worker.chain.broadcasts][-1].hex() == (await fillers(worker))[0].raw_tx[2:]

    # Nonce 7 mined (the filler), so 8 is mined: the later withdrawal is confirmed.
    worker.chain.mine(filler_hash)
    worker.chain.mine((await worker.attempt(later, 1)).tx_hash)
    worker.chain.advance(CONFIRMATIONS - 1)
    await worker.track(later)
    assert (await worker.withdrawal(later)).state == "confirmed"
    await worker.track_all()
    [filler] = await fillers(worker)
    assert (filler.state, filler.gas_cost, filler.tx_hash) == ("mined", GAS_COST, filler_hash)
    assert await worker.legs(f"filler:{filler.id}:gas") == {"fees": -GAS_COST, "network_fees": GAS_COST}


async def test_a_nonce_given_back_at_the_top_is_left_for_the_next_withdrawal(worker) -> None:
    refused = await worker.approved_withdrawal()
    await worker.request_signature(refused)
    worker.forget_queued()
    await worker.refuse(refused, "sanctioned_address")
    assert await fillers(worker) == []
    assert await worker.released_nonces((await worker.withdrawal(refused)).hot_wallet) == [7]
    assert worker.queued("custody") == []


async def test_a_filler_the_signer_refuses_gives_its_nonce_back(worker) -> None:
    refused, _ = await refused_below_a_signed_one(worker)
    await worker.deliver("custody")
    [filler] = await fillers(worker)

    await refuse_filler(worker, filler, "fee_budget_exceeded")

    [filler] = await fillers(worker)
    assert (filler.state, filler.refusal) == ("refused", "fee_budget_exceeded")
    assert await worker.released_nonces((await worker.withdrawal(refused)).hot_wallet) == [7]
    # A repeated refusal changes nothing more.
    await refuse_filler(worker, filler, "fee_budget_exceeded")
    assert await worker.released_nonces((await worker.withdrawal(refused)).hot_wallet) == [7]


async def test_the_tracker_fills_a_gap_a_lost_message_left(worker) -> None:
    """A nonce released below a signed one, whose filler was never made (say, an older worker released it)."""
    refused, _ = await refused_below_a_signed_one(worker)
    [filler] = await fillers(worker)
    async with unit_of_work(worker.factory) as session:
        await session.delete(await session.get(NonceFiller, filler.id))
        await release_nonce(session, worker.chain.name, filler.address, 7)
    worker.forget_queued()

    await worker.track_all()

    [filler] = await fillers(worker)
    assert (filler.nonce, filler.state) == (7, "signing")  # made, and its sign request sent
    assert worker.queued("signer") == [(SIGN_ACTOR, (str(filler.id), filler.unsigned_tx, filler.authorization))]
    assert await worker.released_nonces(filler.address) == []
