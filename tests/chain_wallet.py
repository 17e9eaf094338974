"""Real transactions on an Anvil chain from its funded dev accounts: deposits, mining, reorgs.

Synchronous web3 (test set-up, like devnet/chains.py); from async tests call it through
``asyncio.to_thread`` so an in-process scanner keeps running meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.exceptions import BlockNotFound

from devnet.chains import ANVIL_DEV_KEYS, FAUCET_KEY

SENDER_KEY = ANVIL_DEV_KEYS[2]  # native deposits; the faucet (key 0) owns the USDC supply


@dataclass(frozen=True)
class Sent:
    tx_hash: str
    raw: str  # the signed transaction, to re-include it in a reorg (anvil_reorg)
    block_number: int | None = None
    block_hash: str | None = None
    log_index: int = -1  # the Transfer log's index for a token transfer


class ChainWallet:
    def __init__(self, rpc_url: str, usdc_address: str | None = None, usdc_abi: list[dict[str, Any]] | None = None):
        self.rpc_url = rpc_url
        self.w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
        self.usdc = (self.w3.eth.contract(address=Web3.to_checksum_address(usdc_address), abi=usdc_abi)
                     if usdc_address and usdc_abi else None)

    def rpc(self, method: str, params: list[Any]) -> Any:
        answer = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if answer.get("error"):
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result")

    def head(self) -> int:
        return self.w3.eth.block_number

    def finalized(self) -> int:
        """The number of the node's ``finalized`` block (Anvil: 64 below its head)."""
        return self.w3.eth.get_block("finalized")["number"]

    def _sign_and_send(self, key: str, transaction: dict[str, Any], wait: bool) -> Sent:
        account = Account.from_key(key)
        transaction = {"chainId": self.w3.eth.chain_id, "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                       "gasPrice": self.w3.eth.gas_price * 2, **transaction}
        signed = account.sign_transaction(transaction)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction).to_0x_hex()
        raw = signed.raw_transaction.to_0x_hex()
        if not wait:
            return Sent(tx_hash, raw)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)
        assert receipt["status"] == 1, receipt
        log_index = receipt["logs"][0]["logIndex"] if receipt["logs"] else -1
        return Sent(tx_hash, raw, receipt["blockNumber"], receipt["blockHash"].to_0x_hex(), log_index)

    def send_native(self, to: str, wei: int, *, wait: bool = True, key: str = SENDER_KEY) -> Sent:
        return self._sign_and_send(key, {"to": Web3.to_checksum_address(to), "value": wei, "gas": 21_000}, wait)

    def send_usdc(self, to: str, minor: int, *, wait: bool = True) -> Sent:
        assert self.usdc is not None, "this wallet was built without USDC"
        data = self.usdc.encode_abi("transfer", [Web3.to_checksum_address(to), minor])
        return self._sign_and_send(FAUCET_KEY, {"to": self.usdc.address, "data": data, "gas": 100_000}, wait)

    def mine(self, blocks: int = 1) -> None:
        """Mine now (pending transactions go into the first block), whatever the interval miner does."""
        self.rpc("anvil_mine", [hex(blocks)])

    def reorg_from(self, number: int, attempts: int = 5) -> None:
        """Replace block ``number`` and every block after it (``anvil_reorg``); their transactions are dropped.

        The interval miner may add a block between reading the head and the reorg, which would then
        start one block too high: check that block ``number`` changed, and go again if not.
        """
        before = self.block_hash(number)
        for _ in range(attempts):
            self.rpc("anvil_reorg", [self.head() - number + 1, []])
            if self._block_hash_once_mined(number) != before:
                return
        raise AssertionError(f"block {number} survived {attempts} reorgs")

    def resend(self, raw: str) -> str:
        """Send a signed transaction again (after a reorg dropped it: its nonce is free again)."""
        return self.w3.eth.send_raw_transaction(raw).to_0x_hex()

    def receipt_block(self, tx_hash: str, timeout: float = 30.0) -> tuple[int, str]:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.05)
        return receipt["blockNumber"], receipt["blockHash"].to_0x_hex()

    def _block_hash_once_mined(self, number: int, timeout: float = 10.0) -> str:
        # Under load the replacement blocks can be seen a moment after the reorg call returns.
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.block_hash(number)
            except BlockNotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def block_hash(self, number: int) -> str:
        return self.w3.eth.get_block(number)["hash"].to_0x_hex()
