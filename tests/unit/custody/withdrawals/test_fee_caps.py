"""The custody worker caps its quotes and fee bumps as the signer does (``VIRTUOZ_SIGNER_FEE_CAPS``):
above a cap it asks the signer nothing, waits, and alerts once (an audit event, a metric, a log line)."""

from __future__ import annotations

import logging

from custody.chains.base import FeeQuote
from tests.unit.custody.withdrawals.conftest import FEE_CAPS, STUCK_BLOCKS, counted
from tests.unit.custody.withdrawals.stub_chain import GWEI, QUIET_CHAIN_FEES

ALERTS = "virtuoz_withdrawal_fee_alerts_total"
PIPELINE_LOG = "custody.withdrawals"
# 2 × base fee + tip: a base fee of 300 gwei quotes 602 gwei, above the 500 gwei cap.
SPIKE = FeeQuote(base_fee=300 * GWEI, priority_fee=2 * GWEI)


async def test_a_quote_above_the_cap_waits_and_alerts(worker, caplog) -> None:
    assert FEE_CAPS.max_fee_per_gas == 500 * GWEI
    withdrawal_id = await worker.approved_withdrawal()
    worker.chain.fee_quote = SPIKE
    before = counted(ALERTS, reason="max_fee_above_cap", chain=worker.chain.name)

    with caplog.at_level(logging.WARNING, logger=PIPELINE_LOG):
        await worker.request_signature(withdrawal_id)
        await worker.request_signature(withdrawal_id)  # the tracker asks again while fees stay high

    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.nonce, withdrawal.alert) == ("approved", None, "max_fee_above_cap")
    assert await worker.attempts(withdrawal_id) == [] and worker.queued("signer") == []
    assert (await worker.hold(withdrawal_id)).state == "pending"
    events = await worker.events(withdrawal_id)
    assert [event for event, _ in events].count("withdrawal.fee_above_cap") == 1  # alerted once, not every tick
    assert events[-1][1]["reason"] == "max_fee_above_cap" and events[-1][1]["max_fee_per_gas"] == str(602 * GWEI)
    assert counted(ALERTS, reason="max_fee_above_cap", chain=worker.chain.name) - before == 1
    assert len([record for record in caplog.records if "above the cap" in record.getMessage()]) == 1

    # The market calms down: the next try signs, and the alert is over.
    worker.chain.fee_quote = QUIET_CHAIN_FEES
    await worker.request_signature(withdrawal_id)
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.nonce, withdrawal.alert) == ("signing", 7, None)
    assert len(worker.queued("signer")) == 1


async def test_a_token_withdrawal_whose_gas_limit_is_above_the_cap_waits(worker) -> None:
    worker.settings = worker.settings.model_copy(update={"withdrawal_gas_limit_native": FEE_CAPS.max_gas + 1})
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.alert) == ("approved", "gas_limit_above_cap")


async def test_a_chain_without_fee_caps_signs_nothing(worker) -> None:
    worker.settings = worker.settings.model_copy(update={"signer_fee_caps": {}})
    withdrawal_id = await worker.approved_withdrawal()
    await worker.request_signature(withdrawal_id)
    assert (await worker.withdrawal(withdrawal_id)).alert == "no_fee_caps"
    assert worker.queued("signer") == []


async def test_a_fee_bump_above_the_cap_waits_and_alerts(worker) -> None:
    withdrawal_id = await worker.to_broadcast()
    worker.chain.fee_quote = SPIKE  # a bump pays at least today's quote: 602 gwei
    worker.chain.advance(STUCK_BLOCKS)
    worker.forget_queued()

    await worker.track(withdrawal_id)
    worker.chain.advance(1)
    await worker.track(withdrawal_id)

    assert len(await worker.attempts(withdrawal_id)) == 1 and worker.queued("signer") == []
    withdrawal = await worker.withdrawal(withdrawal_id)
    assert (withdrawal.state, withdrawal.alert) == ("broadcast", "max_fee_above_cap")
    assert [event for event, _ in await worker.events(withdrawal_id)].count("withdrawal.fee_above_cap") == 1

    worker.chain.fee_quote = QUIET_CHAIN_FEES
    await worker.track(withdrawal_id)
    assert len(await worker.attempts(withdrawal_id)) == 2
    assert (await worker.withdrawal(withdrawal_id)).alert is None
