"""A payment mined but reverted, on a real chain: the session's Anvil instead of the stub. Two USDC
payments from a hot wallet that holds enough for one each pass their pre-flight; the second one mined
reverts. The platform paid the gas: the customer gets the amount back and pays the withdrawal fee."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from eth_account import Account

from core.db import unit_of_work
from core.settings import Settings
from custody.ledger.verify import verify_ledger
from devnet.chains import AnvilChain, deploy_usdc, fund_wallet
from tests.chain_fixtures import anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.factories import make_approved_withdrawal
from tests.unit.custody.withdrawals.stub_chain import StubChain

USDC = 10**6
ETH = 10**18


@pytest.fixture(scope="module")
def usdc_address(anvil_chain: AnvilChain, usdc_artifact: dict[str, Any],  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    return deploy_usdc(anvil_chain.rpc_url, usdc_artifact, tmp_path_factory.mktemp("contracts") / "contracts.json")


@pytest.fixture
def stub_chain_adapter(chain: StubChain) -> StubChain:
    """No stub installed: the pipeline reaches Anvil through its own adapter (the stub only names the chain)."""
    return chain


@pytest.fixture
def custody_settings(custody_settings: Settings, anvil_chain: AnvilChain, usdc_address: str) -> Settings:  # noqa: F811
    [chain] = custody_settings.chains
    on_anvil = chain.model_copy(update={"rpc_url": anvil_chain.rpc_url, "tokens": {"USDC": usdc_address},
                                        "confirmations": 1})
    return custody_settings.model_copy(update={"chains": [on_anvil]})


async def until_final(worker, withdrawal_ids: list, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = [(await worker.withdrawal(withdrawal_id)).state for withdrawal_id in withdrawal_ids]
        if all(state in ("confirmed", "failed") for state in states):
            return
        assert time.monotonic() < deadline, states
        for withdrawal_id in withdrawal_ids:
            await worker.track(withdrawal_id)
        await asyncio.sleep(0.1)


async def usdc_balance(worker, withdrawal_id) -> tuple[int, int]:
    from custody import ledger

    user_id = (await worker.withdrawal(withdrawal_id)).user_id
    async with worker.factory() as session:
        usdc = next(item for item in await ledger.balances(session, user_id) if item.currency.code == "USDC")
    return usdc.available, usdc.held


async def test_reverted_withdrawal_voids_hold(worker, anvil_chain, usdc_address, usdc_artifact) -> None:  # noqa: F811
    hot = Account.from_key(worker.signer_key).address
    await asyncio.to_thread(fund_wallet, anvil_chain.rpc_url, hot, usdc_artifact, usdc_address,
                            native_wei=10 * ETH, usdc_minor=100 * USDC)
    paid, reverted = [await make_approved_withdrawal(worker.factory, worker.chain.name, amount=80 * USDC, fee=USDC,
                                                     asset="USDC", credit="USDC:1000") for _ in range(2)]
    for withdrawal_id in (paid, reverted):
        await worker.request_signature(withdrawal_id)  # each passes: 80 of the 100 the hot wallet holds
    for withdrawal_id in (paid, reverted):
        await worker.sign(withdrawal_id)
    for withdrawal_id in (paid, reverted):
        await worker.broadcast(withdrawal_id)

    await until_final(worker, [paid, reverted])

    assert (await worker.withdrawal(paid)).state == "confirmed"
    withdrawal = await worker.withdrawal(reverted)
    assert (withdrawal.state, withdrawal.failure_reason) == ("failed", "reverted")
    assert withdrawal.gas_cost and withdrawal.gas_cost > 0
    hold = await worker.hold(reverted)
    # The amount goes back to the customer; the withdrawal fee is taken: the platform paid the gas.
    assert (hold.state, hold.posted_amount, hold.fee) == ("posted", USDC, 0)
    assert await worker.legs(f"withdrawal:{reverted}:post") == {"held": -81 * USDC, "available": 80 * USDC,
                                                                "fees": USDC}
    assert await worker.legs(f"withdrawal:{reverted}:gas") == {"fees": -withdrawal.gas_cost,
                                                               "network_fees": withdrawal.gas_cost}
    assert await usdc_balance(worker, reverted) == (1000 * USDC - USDC, 0)
    event_type, data = (await worker.events(reverted))[-1]
    assert (event_type, data["reason"], data["fee_charged"]) == ("withdrawal.failed", "reverted", "1")
    async with unit_of_work(worker.factory) as session:
        assert await verify_ledger(session) == []
