"""Pre-flight at request time: the node runs the payment from the hot wallet (eth_estimateGas on the
session's Anvil chain) before anything is held; one that would revert is refused with 422."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from core.settings import ChainSettings, Settings
from custody.withdrawals.pipeline import hot_wallet
from devnet.chains import AnvilChain, deploy_usdc, fund_wallet
from tests.chain_fixtures import anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.integration.custody.conftest import write_xpub_file
from tests.integration.custody.withdrawals.conftest import API, DESTINATION, balances, body, error_code, withdrawal_count

ETH = 10**18
REQUEST = f"{API}/platform/crypto/withdrawals/request"


@pytest.fixture(scope="module")
def usdc_address(anvil_chain: AnvilChain, usdc_artifact: dict[str, Any],  # noqa: F811
                 tmp_path_factory: pytest.TempPathFactory) -> str:
    return deploy_usdc(anvil_chain.rpc_url, usdc_artifact, tmp_path_factory.mktemp("contracts") / "contracts.json")


@pytest.fixture
async def anvil_settings(withdrawal_settings: Settings, anvil_chain: AnvilChain, usdc_address: str,  # noqa: F811
                         usdc_artifact: dict[str, Any]) -> Settings:  # noqa: F811
    """The withdrawal settings on the Anvil chain, a hot wallet of the test's own holding ETH and no USDC."""
    chain = ChainSettings(name="ethereum", chain_id=31337, rpc_url=anvil_chain.rpc_url, native="ETH",
                          tokens={"USDC": usdc_address}, confirmations=1, account=random.randrange(1_000, 2**31 - 1))
    settings = withdrawal_settings.model_copy(update={"chains": [chain]})
    write_xpub_file(settings, [chain])
    await asyncio.to_thread(fund_wallet, anvil_chain.rpc_url, hot_wallet(settings, chain), usdc_artifact,
                            usdc_address, native_wei=10 * ETH, usdc_minor=0)
    return settings


@pytest.fixture
async def anvil_client(make_client, anvil_settings: Settings):
    return await make_client(anvil_settings)


async def test_withdrawal_that_would_revert_is_refused_before_signing(anvil_client, db, login_as,
                                                                      usdc_address) -> None:
    client = anvil_client
    user = await login_as(client)
    before = await balances(client, user.headers)
    # ETH sent to a contract that cannot take it (the token has no payable fallback) would revert;
    # so would a token transfer the contract refuses (the hot wallet holds no USDC yet).
    for overrides in ({"to_address": usdc_address}, {"asset": "USDC", "amount": "10"}):
        refused = await client.post(REQUEST, json=body(**overrides), headers=user.headers)
        assert refused.status == 422, await refused.text()
        assert await error_code(refused) == "would_revert"
        assert (await refused.json())["error"]["details"]["reason"]
    assert await balances(client, user.headers) == before
    assert await withdrawal_count(db, user.user_id) == 0

    # The same payment to an address that takes it passes its pre-flight.
    accepted = await client.post(REQUEST, json=body(to_address=DESTINATION), headers=user.headers)
    assert accepted.status == 201, await accepted.text()
