"""The devnet's Anvil chains: interval mining, USDC deployment, and resuming after a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from devnet.chains import ANVIL_DEV_KEYS, FAUCET_KEY, AnvilChain, compile_usdc, deploy_usdc
from devnet.processes import free_port
from tests.chain_fixtures import TEST_CHAIN_ID, anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401

pytestmark = pytest.mark.e2e

FAUCET = Account.from_key(FAUCET_KEY).address
INITIAL_SUPPLY = 1_000_000_000 * 10**6


def web3_for(chain: AnvilChain) -> Web3:
    return Web3(HTTPProvider(chain.rpc_url, request_kwargs={"timeout": 5}))


def wait_for_height_above(w3: Web3, height: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = w3.eth.block_number
        if current > height:
            return current
        time.sleep(0.05)
    raise AssertionError(f"no block above {height} within {timeout}s")


def test_chain_answers_with_its_chain_id(anvil_chain: AnvilChain) -> None:
    assert web3_for(anvil_chain).eth.chain_id == TEST_CHAIN_ID


def test_blocks_are_mined_without_any_transaction(anvil_chain: AnvilChain) -> None:
    w3 = web3_for(anvil_chain)
    start = w3.eth.block_number
    wait_for_height_above(w3, start + 2)


def test_dev_keys_are_anvils_funded_accounts(anvil_chain: AnvilChain) -> None:
    w3 = web3_for(anvil_chain)
    assert w3.eth.accounts[: len(ANVIL_DEV_KEYS)] == [Account.from_key(key).address for key in ANVIL_DEV_KEYS]
    assert FAUCET == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def test_usdc_has_six_decimals_and_the_faucet_holds_the_supply(
    anvil_chain: AnvilChain, usdc_artifact: dict[str, Any], tmp_path: Path
) -> None:
    address = deploy_usdc(anvil_chain.rpc_url, usdc_artifact, tmp_path / "contracts.json")

    assert address == Web3.to_checksum_address(address)
    usdc = web3_for(anvil_chain).eth.contract(address=address, abi=usdc_artifact["abi"])
    assert usdc.functions.decimals().call() == 6
    assert usdc.functions.symbol().call() == "USDC"
    assert usdc.functions.name().call() == "USD Coin (devnet)"
    assert usdc.functions.totalSupply().call() == INITIAL_SUPPLY
    assert usdc.functions.balanceOf(FAUCET).call() == INITIAL_SUPPLY


def test_a_warm_compile_reuses_the_cached_artifact(usdc_artifact: dict[str, Any], usdc_cache_dir: Path) -> None:
    started = time.monotonic()
    assert compile_usdc(usdc_cache_dir) == usdc_artifact
    # solcjs itself takes seconds; reading the cached JSON takes milliseconds.
    assert time.monotonic() - started < 0.5
    assert len(list(usdc_cache_dir.glob("usdc-*.json"))) >= 1


def test_a_restarted_chain_resumes_its_blocks_and_usdc(usdc_artifact: dict[str, Any], tmp_path: Path) -> None:
    contracts = tmp_path / "contracts.json"
    chain = AnvilChain("polygon", 31338, free_port(), tmp_path / "polygon", block_time=0.2, log_dir=tmp_path)
    chain.start()
    try:
        address = deploy_usdc(chain.rpc_url, usdc_artifact, contracts)
        w3 = web3_for(chain)
        height = wait_for_height_above(w3, w3.eth.block_number)
        deploy_block = w3.eth.get_block(height)
    finally:
        chain.stop()
    assert chain.state_file.exists()

    # Another port on purpose: the record is keyed by chain id, which is what identifies the chain.
    restarted = AnvilChain("polygon", 31338, free_port(), tmp_path / "polygon", block_time=0.2, log_dir=tmp_path)
    restarted.start()
    try:
        w3 = web3_for(restarted)
        assert w3.eth.block_number >= height
        assert w3.eth.get_block(height)["hash"] == deploy_block["hash"]
        assert deploy_usdc(restarted.rpc_url, usdc_artifact, contracts) == address
        assert w3.eth.get_code(address) != b""
        usdc = w3.eth.contract(address=address, abi=usdc_artifact["abi"])
        assert usdc.functions.balanceOf(FAUCET).call() == INITIAL_SUPPLY
        wait_for_height_above(w3, height)
    finally:
        restarted.stop()


def test_a_wiped_chain_gets_usdc_deployed_again(usdc_artifact: dict[str, Any], tmp_path: Path) -> None:
    contracts = tmp_path / "contracts.json"
    first = AnvilChain("wiped", 31339, free_port(), tmp_path / "first", block_time=0.2, log_dir=tmp_path).start()
    try:
        deploy_usdc(first.rpc_url, usdc_artifact, contracts)
    finally:
        first.stop()

    fresh = AnvilChain("wiped", 31339, free_port(), tmp_path / "fresh", block_time=0.2, log_dir=tmp_path).start()
    try:
        address = deploy_usdc(fresh.rpc_url, usdc_artifact, contracts)
        assert web3_for(fresh).eth.get_code(address) != b""
    finally:
        fresh.stop()


def _bytes_under(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


def test_a_long_running_chain_keeps_its_disk_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Anvil spills old block states to ~/.foundry as JSON (hundreds of KB each) and, killed, never
    # deletes them: a day of devnet or a few test sessions filled the disk.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    chain = AnvilChain("long", 31340, free_port(), tmp_path / "data", block_time=3600, log_dir=tmp_path).start()
    try:
        w3 = web3_for(chain)
        for _ in range(30):
            w3.provider.make_request("anvil_mine", [hex(100)])
        head = w3.eth.block_number
        assert head >= 3000
        assert w3.eth.get_balance(FAUCET, block_identifier=head - 32) > 0
    finally:
        chain.stop()
    assert _bytes_under(home) + _bytes_under(tmp_path / "data") < 200 * 2**20
