"""The EVM adapter against a real Anvil node: every verb, and how it fails."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from eth_account import Account

from core.settings import ChainSettings
from custody.chains import (
    Block,
    BlockNotFound,
    ChainRejected,
    ChainUnavailable,
    EvmChain,
    ExecutionReverted,
    Receipt,
    chain_for,
)
from core.sign_requests import erc20_transfer_data
from devnet.chains import ANVIL_DEV_KEYS, FAUCET_KEY, AnvilChain, deploy_usdc
from devnet.processes import free_port
from tests.chain_fixtures import TEST_CHAIN_ID, anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401
from tests.factories import wait_until

FAUCET = Account.from_key(FAUCET_KEY)
RECIPIENT = Account.from_key(ANVIL_DEV_KEYS[1]).address
GWEI = 10**9


@pytest.fixture
async def chain(anvil_chain: AnvilChain) -> AsyncIterator[EvmChain]:
    adapter = EvmChain("ethereum", anvil_chain.rpc_url, timeout=5.0)
    yield adapter
    await adapter.close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never answers a request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def signed_transfer(chain: EvmChain, value: int = 10**15) -> bytes:
    transaction = {
        "type": 2,
        "chainId": TEST_CHAIN_ID,
        "nonce": await chain.nonce(FAUCET.address),
        "to": RECIPIENT,
        "value": value,
        "gas": 21_000,
        # Far above Anvil's base fee: fee estimation is the later `fees()` verb's job.
        "maxFeePerGas": 100 * GWEI,
        "maxPriorityFeePerGas": 1 * GWEI,
    }
    return FAUCET.sign_transaction(transaction).raw_transaction


async def wait_for_receipt(chain: EvmChain, tx_hash: str, timeout: float = 5.0) -> Receipt:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = await chain.receipt(tx_hash)
        if receipt is not None:
            return receipt
        await asyncio.sleep(0.05)
    raise AssertionError(f"{tx_hash} not mined within {timeout}s")


async def test_head_follows_interval_mining(chain: EvmChain) -> None:
    first = await chain.head()

    async def moved_on() -> bool:
        return await chain.head() > first

    await wait_until(moved_on, timeout=10, what=f"a block mined after {first}")


async def test_block_links_to_its_parent(chain: EvmChain) -> None:
    # The chain is the session's: other tests' transactions may be in any block, and a fresh one
    # may still be at block 0.
    number = await wait_until(chain.head, timeout=10, what="a block above 0")
    block = await chain.block(number)
    parent = await chain.block(number - 1)

    assert isinstance(block, Block)
    assert block.number == number
    assert block.parent_hash == parent.hash
    assert block.hash.startswith("0x") and len(block.hash) == 66
    assert block.timestamp >= parent.timestamp > 0
    assert isinstance(block.transactions, tuple)


async def test_block_above_head_is_not_found(chain: EvmChain) -> None:
    with pytest.raises(BlockNotFound):
        await chain.block(await chain.head() + 1_000)


async def test_a_broadcast_native_transfer_is_mined_with_status_1(chain: EvmChain) -> None:
    nonce = await chain.nonce(FAUCET.address)
    raw = await signed_transfer(chain)

    tx_hash = await chain.broadcast(raw)
    assert await chain.nonce(FAUCET.address) == nonce + 1  # counts the pending transaction

    receipt = await wait_for_receipt(chain, tx_hash)
    assert receipt.tx_hash == tx_hash
    assert receipt.status == 1
    block = await chain.block(receipt.block_number)
    assert block.hash == receipt.block_hash
    assert tx_hash in block.transactions


async def test_broadcasting_the_same_transaction_again_returns_its_hash(chain: EvmChain) -> None:
    raw = await signed_transfer(chain)
    tx_hash = await chain.broadcast(raw)

    assert await chain.broadcast(raw) == tx_hash  # still pending
    await wait_for_receipt(chain, tx_hash)
    assert await chain.broadcast(raw) == tx_hash  # already mined


async def test_a_malformed_transaction_is_rejected(chain: EvmChain) -> None:
    with pytest.raises(ChainRejected):
        await chain.broadcast(b"\x02not a transaction")


async def test_receipt_of_an_unknown_transaction_is_none(chain: EvmChain) -> None:
    assert await chain.receipt("0x" + "ab" * 32) is None


async def test_estimate_gas_runs_the_transaction_and_names_a_revert(chain: EvmChain, anvil_chain: AnvilChain,  # noqa: F811
                                                                     usdc_artifact, tmp_path) -> None:  # noqa: F811
    assert await chain.estimate_gas(FAUCET.address, RECIPIENT, 10**15, "0x") == 21_000
    # ETH sent to a contract without a payable fallback (a freshly deployed token) reverts.
    token = await asyncio.to_thread(deploy_usdc, anvil_chain.rpc_url, usdc_artifact, tmp_path / "contracts.json")
    with pytest.raises(ExecutionReverted) as reverted:
        await chain.estimate_gas(FAUCET.address, token, 10**15, "0x")
    assert reverted.value.code == "execution_reverted" and reverted.value.details["chain"] == "ethereum"
    # A custom error's selector is the revert data (USDC's InsufficientBalance()).
    stranger = Account.create().address
    with pytest.raises(ExecutionReverted) as custom:
        await chain.estimate_gas(stranger, token, 0, erc20_transfer_data(RECIPIENT, 1))
    assert custom.value.details["data"] == "0xf4d678b8"


async def test_a_token_transfer_shows_in_its_blocks_bloom_and_by_block_hash(chain: EvmChain, anvil_chain: AnvilChain,  # noqa: F811
                                                                            usdc_artifact, tmp_path) -> None:  # noqa: F811
    token = await asyncio.to_thread(deploy_usdc, anvil_chain.rpc_url, usdc_artifact, tmp_path / "token.json")
    other = await asyncio.to_thread(deploy_usdc, anvil_chain.rpc_url, usdc_artifact, tmp_path / "other.json")
    transaction = {"type": 2, "chainId": TEST_CHAIN_ID, "nonce": await chain.nonce(FAUCET.address), "to": token,
                   "value": 0, "data": erc20_transfer_data(RECIPIENT, 5), "gas": 100_000,
                   "maxFeePerGas": 100 * GWEI, "maxPriorityFeePerGas": 1 * GWEI}
    receipt = await wait_for_receipt(chain, await chain.broadcast(FAUCET.sign_transaction(transaction).raw_transaction))
    (read,) = await chain.transfers([receipt.block_number])
    block = read.block

    # The header's bloom holds the token and the Transfer topic: the real bytes Anvil hashed.
    assert block.logs_bloom == (await chain.block(block.number)).logs_bloom
    assert chain.may_have_token_transfers(block, [token])
    assert chain.may_have_token_transfers(block, [other, token])
    assert not chain.may_have_token_transfers(block, [other])  # a false positive here is ~1e-7 in a block this quiet
    (by_hash,) = await chain.token_transfers_in([block.hash], [token])
    assert (by_hash.tx_hash, by_hash.to_address, by_hash.value) == (receipt.tx_hash, RECIPIENT, 5)
    assert [by_hash] == await chain.token_transfers(block.number, block.number, [token])
    assert await chain.token_transfers_in([block.hash], [other]) == []


async def test_finalized_is_a_block_of_the_chain_below_the_head(chain: EvmChain) -> None:
    head = await chain.head()
    final = await chain.finalized()
    assert final.number <= max(0, await chain.head() - 64)  # Anvil: two epochs of 32 slots behind
    assert final.number >= max(0, head - 64)
    assert (await chain.block(final.number)).hash == final.hash


async def test_a_closed_port_is_unavailable_at_once() -> None:
    chain = EvmChain("nowhere", f"http://127.0.0.1:{free_port()}", timeout=2.0)
    started = time.monotonic()
    with pytest.raises(ChainUnavailable) as failure:
        await chain.head()
    assert time.monotonic() - started < 2.0
    assert failure.value.details == {"chain": "nowhere"}
    assert failure.value.code == "chain_unavailable"
    await chain.close()


async def test_a_node_that_never_answers_is_unavailable_after_the_timeout(silent_port: int) -> None:
    chain = EvmChain("silent", f"http://127.0.0.1:{silent_port}", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ChainUnavailable):
        await chain.head()
    assert 0.4 < time.monotonic() - started < 1.5
    await chain.close()


async def test_chain_for_builds_the_adapter_from_chain_settings(anvil_chain: AnvilChain) -> None:
    settings_chain = ChainSettings(name="ethereum", chain_id=TEST_CHAIN_ID, rpc_url=anvil_chain.rpc_url, native="ETH")
    chain = chain_for(settings_chain)
    try:
        assert chain.name == "ethereum"
        assert await chain.head() >= 0
    finally:
        await chain.close()
