"""The treasury worker's sweep steps, branch by branch: a stub chain, the real signer's sweep logic, real
PostgreSQL and Redis (``sweep_worker``). The whole path on Anvil with real processes is tests/e2e/test_sweeps.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

from eth_account import Account
from sqlalchemy import select, update

from core.db import unit_of_work
from core.sign_requests import UnsignedTx, sign_reply
from core.signing import generate_keypair
from core.sweep_requests import (
    SWEEP_REFUSED_ACTOR,
    SWEEP_REFUSED_REPLY,
    SWEEP_SIGNED_ACTOR,
    SWEEP_SIGNED_REPLY,
)
from custody.chains.base import FeeQuote
from custody.chains.transactions import Fees, tx_hash
from custody.ledger.models import LedgerTransfer
from custody.treasury.models import Sweep
from custody.treasury.requests import TOPUP_NONCES
from custody.treasury.service import plan_gas
from custody.withdrawals.authorization import _parse
from signer.service import Refused, Signed
from tests.integration.custody.conftest import SIGNER_KEY
from tests.unit.custody.treasury.sweep_worker import (  # noqa: F401 - fixtures
    ETH,
    FEE_CAPS,
    STUCK_BLOCKS,
    TOKEN,
    USDC,
    Treasury,
    account,
    broker,
    chain,
    chain_settings,
    stub_chain_adapter,
    sweep_signer,
    treasury,
    treasury_settings,
)
from tests.unit.custody.withdrawals.stub_chain import GWEI

TOKEN_GAS = 100_000
QUOTE_FEE, QUOTE_TIP = 22 * GWEI, 2 * GWEI  # the stub's quote: twice its 10 gwei base fee plus its 2 gwei tip
GAS_OF_A_TOKEN_SWEEP = TOKEN_GAS * QUOTE_FEE


def test_a_top_up_is_the_shortfall_of_the_gas_at_the_quote_and_held_gas_is_used_first() -> None:
    quote = FeeQuote(base_fee=10 * GWEI, priority_fee=2 * GWEI)
    # Nothing held: exactly gas limit × max fee per gas.
    assert plan_gas(quote, GWEI, TOKEN_GAS, 0).topup == TOKEN_GAS * QUOTE_FEE
    assert plan_gas(quote, GWEI, TOKEN_GAS, 0).fees == Fees(QUOTE_FEE, QUOTE_TIP)
    # Enough held at today's quote: no top-up.
    assert plan_gas(quote, GWEI, TOKEN_GAS, TOKEN_GAS * QUOTE_FEE).topup == 0
    # Held gas from an earlier top-up that still pays today's base fee and tip: used as it is, no second top-up.
    held = plan_gas(quote, GWEI, TOKEN_GAS, TOKEN_GAS * 15 * GWEI)
    assert (held.topup, held.fees) == (0, Fees(15 * GWEI, QUOTE_TIP))
    # Too little to pay even the base fee and the tip: topped up by the shortfall only.
    short = plan_gas(quote, GWEI, TOKEN_GAS, TOKEN_GAS * 5 * GWEI)
    assert (short.topup, short.fees) == (TOKEN_GAS * (QUOTE_FEE - 5 * GWEI), Fees(QUOTE_FEE, QUOTE_TIP))


async def token_sweep(treasury: Treasury, amount: int = 250 * USDC) -> tuple[uuid.UUID, str]:
    user_id, address = await treasury.address()
    await treasury.credited(user_id, address, "USDC", amount)
    (planned,) = await treasury.find()
    return planned.id, address


async def to_topup_sent(treasury: Treasury) -> tuple[uuid.UUID, str]:
    sweep_id, address = await token_sweep(treasury)
    await treasury.drive(sweep_id)
    (signed,) = await treasury.signer_answers()
    assert isinstance(signed, Signed), signed
    await treasury.drive(sweep_id)
    assert (await treasury.sweep(sweep_id)).state == "topup_sent"
    return sweep_id, address


async def test_a_token_sweep_is_asked_for_only_once_its_top_up_has_its_confirmations(treasury) -> None:
    sweep_id, address = await token_sweep(treasury)
    planned = await treasury.sweep(sweep_id)
    assert (planned.state, planned.amount, planned.topup_amount) == ("pending_topup", 250 * USDC,
                                                                     GAS_OF_A_TOKEN_SWEEP)
    assert treasury.queued("treasury") == [("treasury.drive_sweep", (str(sweep_id),))]

    await treasury.drive(sweep_id)
    (topup,) = await treasury.transactions(sweep_id, "topup")
    unsigned = UnsignedTx.parse(topup.unsigned_tx)
    assert (unsigned.sender, unsigned.to, unsigned.value, unsigned.nonce) == (treasury.hot_wallet, address,
                                                                             GAS_OF_A_TOKEN_SWEEP, 7)
    assert (unsigned.gas, unsigned.max_fee_per_gas) == (21_000, QUOTE_FEE)
    async with treasury.factory() as session:  # a withdrawal's nonce given back below it is filled at once
        assert await TOPUP_NONCES.holds_nonce_above(session, treasury.chain.name, treasury.hot_wallet, 6)
        assert not await TOPUP_NONCES.holds_nonce_above(session, treasury.chain.name, treasury.hot_wallet, 7)

    (signed,) = await treasury.signer_answers()
    assert isinstance(signed, Signed)
    await treasury.drive(sweep_id)
    assert (await treasury.sweep(sweep_id)).state == "topup_sent"
    assert len(treasury.chain.broadcasts) == 1

    (topup,) = await treasury.transactions(sweep_id, "topup")
    treasury.mine(topup)  # one confirmation of the two the chain wants
    await treasury.drive(sweep_id)
    assert (await treasury.sweep(sweep_id)).state == "topup_sent"
    assert await treasury.transactions(sweep_id, "sweep") == []

    treasury.chain.advance(1)
    await treasury.drive(sweep_id)  # the top-up is confirmed, and the sweep asked for in the same run
    swept = await treasury.sweep(sweep_id)
    assert (swept.state, swept.topup_tx_hash, swept.topup_gas_cost) == ("sweeping", topup.tx_hash, 21_000 * 2 * GWEI)
    (sweep_tx,) = await treasury.transactions(sweep_id, "sweep")
    unsigned = UnsignedTx.parse(sweep_tx.unsigned_tx)
    assert (unsigned.sender, unsigned.to, unsigned.value, unsigned.nonce, unsigned.gas) == (
        address, TOKEN, 0, 0, TOKEN_GAS)
    assert sweep_tx.request_id == sweep_id

    (signed,) = await treasury.signer_answers()  # the signer derived the deposit key from the index
    assert isinstance(signed, Signed)
    assert Account.recover_transaction(signed.raw_tx) == address
    await treasury.drive(sweep_id)
    (sweep_tx,) = await treasury.transactions(sweep_id, "sweep")
    treasury.mine(sweep_tx, gas_used=50_000)
    treasury.chain.advance(1)
    await treasury.drive(sweep_id)
    swept = await treasury.sweep(sweep_id)
    assert (swept.state, swept.sweep_tx_hash, swept.sweep_gas_cost, swept.confirmations) == (
        "confirmed", sweep_tx.tx_hash, 50_000 * 2 * GWEI, 2)
    assert treasury.chain.holdings[(address, TOKEN)] == 0
    assert [event for event, _ in await treasury.events(sweep_id)] == [
        "sweep.created", "sweep.topup_requested", "sweep.topup_signed", "sweep.topup_sent", "sweep.topup_confirmed",
        "sweep.sweep_requested", "sweep.sweep_signed", "sweep.sweep_broadcast", "sweep.confirmed"]
    async with treasury.factory() as session:
        booked = {row.type: row.reference for row in await session.scalars(select(LedgerTransfer).where(
            LedgerTransfer.reference_id == str(sweep_id)))}
    assert booked == {"sweep_topup_gas": f"sweep:{sweep_id}:topup:{topup.request_id}:gas",
                      "sweep_gas": f"sweep:{sweep_id}:gas"}


async def test_a_refused_top_up_gives_its_nonce_back_and_is_asked_again_later_never_twice(treasury) -> None:
    caps = treasury.signer.policy.fee_caps
    caps[treasury.chain.name] = FEE_CAPS.model_copy(update={"daily_fee_budget": 10**9})  # the signer's own, spent
    sweep_id, _ = await token_sweep(treasury)
    await treasury.drive(sweep_id)
    (refused,) = await treasury.signer_answers()
    assert isinstance(refused, Refused) and refused.reason == "fee_budget_exceeded"
    sweep = await treasury.sweep(sweep_id)
    assert sweep.state == "pending_topup" and sweep.retry_at is not None
    assert await treasury.released_nonces(treasury.hot_wallet) == [7]
    (first,) = await treasury.transactions(sweep_id, "topup")
    assert (first.refusal, first.nonce_released) == ("fee_budget_exceeded", True)

    await treasury.drive(sweep_id)  # not yet: a new top-up waits for the retry time
    assert len(await treasury.transactions(sweep_id, "topup")) == 1 and treasury.queued("signer") == []

    caps[treasury.chain.name] = FEE_CAPS
    await treasury.retry_due(sweep_id)
    await treasury.drive(sweep_id)
    first, second = await treasury.transactions(sweep_id, "topup")
    assert second.request_id != first.request_id and second.nonce == 7  # the nonce given back is taken first
    assert await treasury.released_nonces(treasury.hot_wallet) == []
    (signed,) = await treasury.signer_answers()
    assert isinstance(signed, Signed) and signed.withdrawal_id == str(second.request_id)
    await treasury.drive(sweep_id)
    assert (await treasury.sweep(sweep_id)).state == "topup_sent"
    # One top-up was ever signed for the sweep: the signer's journal says so too.
    assert treasury.signer.journal.for_withdrawal(str(first.request_id)) == []
    assert len(treasury.signer.journal.for_withdrawal(str(second.request_id))) == 1
    assert [event for event, _ in await treasury.events(sweep_id)].count("sweep.topup_refused") == 1


async def test_forged_unsigned_and_mismatched_replies_change_nothing(treasury) -> None:
    sweep_id, _ = await token_sweep(treasury)
    await treasury.drive(sweep_id)
    (topup,) = await treasury.transactions(sweep_id, "topup")
    request, digest = str(topup.request_id), topup.request_digest
    # A refusal nobody signed, and one signed by another key: the nonce stays promised, nothing is retried.
    await treasury.run(SWEEP_REFUSED_ACTOR, request, digest, "fee_budget_exceeded", "forged", None)
    other = _parse(generate_keypair()[0])
    fields = ("fee_budget_exceeded", "forged")
    await treasury.run(SWEEP_REFUSED_ACTOR, request, digest, *fields,
                       sign_reply(other, SWEEP_REFUSED_REPLY, request, digest, fields))
    # The signer key's signature over a refusal of the *signed* kind: another kind, it does not verify.
    await treasury.run(SWEEP_REFUSED_ACTOR, request, digest, *fields,
                       sign_reply(SIGNER_KEY, SWEEP_SIGNED_REPLY, request, digest, fields))
    # A reply the signer key did sign, naming another transaction: never broadcast.
    wrong = Account.sign_transaction({**UnsignedTx.parse(topup.unsigned_tx).for_signing(), "value": 10**18},
                                     Account.create().key).raw_transaction.to_0x_hex()
    signed_fields = (wrong, tx_hash(wrong))
    await treasury.run(SWEEP_SIGNED_ACTOR, request, digest, *signed_fields,
                       sign_reply(SIGNER_KEY, SWEEP_SIGNED_REPLY, request, digest, signed_fields))

    (topup,) = await treasury.transactions(sweep_id, "topup")
    assert (topup.refusal, topup.nonce_released, topup.raw_tx) == (None, False, None)
    assert await treasury.released_nonces(treasury.hot_wallet) == []
    assert (await treasury.sweep(sweep_id)).retry_at is None
    events = [event for event, _ in await treasury.events(sweep_id)]
    assert events.count("sweep.unverified_reply") == 3 and events.count("sweep.signed_reply_rejected") == 1
    await treasury.drive(sweep_id)
    assert treasury.chain.broadcasts == []
    # The genuine answer still goes through.
    (signed,) = await treasury.signer_answers()
    assert isinstance(signed, Signed)
    await treasury.drive(sweep_id)
    assert (await treasury.sweep(sweep_id)).state == "topup_sent"


async def test_a_stuck_top_up_is_replaced_at_its_nonce_and_only_one_is_mined(treasury) -> None:
    sweep_id, _ = await to_topup_sent(treasury)
    treasury.chain.advance(STUCK_BLOCKS)
    await treasury.drive(sweep_id)
    first, bump = await treasury.transactions(sweep_id, "topup")
    assert (bump.request_id, bump.attempt, bump.nonce, bump.value) == (first.request_id, 2, first.nonce, first.value)
    assert bump.max_fee_per_gas > first.max_fee_per_gas and bump.max_priority_fee_per_gas > first.max_priority_fee_per_gas
    (signed,) = await treasury.signer_answers()  # the signer allows a fee bump of the same top-up
    assert isinstance(signed, Signed)
    await treasury.drive(sweep_id)
    assert len(treasury.chain.broadcasts) == 2
    first, bump = await treasury.transactions(sweep_id, "topup")
    treasury.mine(bump)
    treasury.chain.advance(1)
    await treasury.drive(sweep_id)
    swept = await treasury.sweep(sweep_id)
    assert (swept.state, swept.topup_tx_hash) == ("sweeping", bump.tx_hash)
    first, bump = await treasury.transactions(sweep_id, "topup")
    assert (first.status, bump.status) == (None, 1)
    async with treasury.factory() as session:
        gas = list(await session.scalars(select(LedgerTransfer.reference).where(
            LedgerTransfer.reference_id == str(sweep_id))))
    assert gas == [f"sweep:{sweep_id}:topup:{first.request_id}:gas"]  # booked once


async def sweep_signed_and_sent(treasury: Treasury, sweep_id: uuid.UUID) -> None:
    (topup,) = await treasury.transactions(sweep_id, "topup")
    treasury.mine(topup)
    treasury.chain.advance(1)
    await treasury.drive(sweep_id)
    (signed,) = await treasury.signer_answers()
    assert isinstance(signed, Signed)
    await treasury.drive(sweep_id)


async def test_a_failed_sweep_after_its_top_up_is_not_topped_up_twice(treasury) -> None:
    sweep_id, _ = await to_topup_sent(treasury)
    await sweep_signed_and_sent(treasury, sweep_id)
    (sweep_tx,) = await treasury.transactions(sweep_id, "sweep")
    treasury.mine(sweep_tx, status=0, gas_used=TOKEN_GAS)  # reverted: its gas is spent all the same
    treasury.chain.advance(1)
    await treasury.drive(sweep_id)
    failed = await treasury.sweep(sweep_id)
    assert (failed.state, failed.failure_reason, failed.sweep_gas_cost) == ("failed", "reverted", TOKEN_GAS * 2 * GWEI)
    assert await treasury.find() == []  # the address waits sweep_retry_seconds before a new sweep
    async with unit_of_work(treasury.factory) as session:  # time is told, not waited for
        await session.execute(update(Sweep).where(Sweep.id == sweep_id).values(
            finished_at=failed.finished_at - timedelta(hours=1)))

    (again,) = await treasury.find()
    # The top-up left 20 gwei a gas for 100 000 gas; today's base fee and tip want 12: no second top-up.
    assert (again.state, again.topup_amount, again.max_fee_per_gas) == ("ready", 0, 20 * GWEI)
    await treasury.drive(again.id)
    assert await treasury.transactions(again.id, "topup") == []
    (sweep_tx,) = await treasury.transactions(again.id, "sweep")
    assert UnsignedTx.parse(sweep_tx.unsigned_tx).nonce == 1  # the reverted sweep used nonce 0 for good
    (signed,) = await treasury.signer_answers()
    assert isinstance(signed, Signed)


async def test_a_sweep_the_signer_refuses_fails_and_gives_the_address_nonce_back(treasury) -> None:
    sweep_id, address = await to_topup_sent(treasury)
    treasury.signer.policy.fee_caps[treasury.chain.name] = FEE_CAPS.model_copy(update={"max_gas": 60_000})
    (topup,) = await treasury.transactions(sweep_id, "topup")
    treasury.mine(topup)
    treasury.chain.advance(1)
    await treasury.drive(sweep_id)
    (refused,) = await treasury.signer_answers()
    assert isinstance(refused, Refused) and refused.reason == "gas_limit_above_cap"
    failed = await treasury.sweep(sweep_id)
    assert (failed.state, failed.failure_reason) == ("failed", "gas_limit_above_cap")
    assert await treasury.released_nonces(address) == [0]
    assert treasury.chain.broadcasts and len(treasury.chain.broadcasts) == 1  # the top-up only


async def test_below_its_minimum_an_address_waits_and_tokens_are_swept_before_the_native_coin(treasury) -> None:
    user_id, address = await treasury.address()
    await treasury.credited(user_id, address, "USDC", 5 * USDC)  # the minimum is 10
    other_user, other = await treasury.address()
    await treasury.credited(other_user, other, "ETH", ETH // 200)  # 0.005: the minimum is 0.01
    assert await treasury.find() == []
    await treasury.credited(user_id, address, "USDC", 6 * USDC, block=60)
    (planned,) = await treasury.find()
    assert (planned.address, planned.asset, planned.amount) == (address, "USDC", 11 * USDC)

    rich_user, rich = await treasury.address()
    await treasury.credited(rich_user, rich, "ETH", ETH)
    await treasury.credited(rich_user, rich, "USDC", 20 * USDC)
    (token,) = await treasury.find()  # one sweep per address at a time, the token first
    assert (token.address, token.asset, token.state, token.topup_amount) == (rich, "USDC", "ready", 0)
    assert await treasury.find() == []  # the address is busy: its native coin waits for the token sweep
