"""An in-memory chain behind the ``Chain`` verbs, for worker-level withdrawal tests (no Anvil).

Deterministic and told what to do: the test sets the fees, the hot wallet's mined nonce, which
verbs fail with one of the adapter's own errors (``errors["broadcast"] = ChainRejected(...)``), and
mines transactions (success or revert) at the head it moves by hand; a transaction it has not
mined has no receipt (pending). Every raw transaction it accepts is kept, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_utils import keccak

from custody.chains import (
    Block,
    BlockNotFound,
    BlockTransfers,
    Chain,
    ChainError,
    Receipt,
    TransactionTransfers,
)
from custody.chains.base import FeeQuote, TokenTransfer

GWEI = 10**9
QUIET_CHAIN_FEES = FeeQuote(base_fee=10 * GWEI, priority_fee=2 * GWEI)


def _block_hash(number: int) -> str:
    return "0x" + keccak(f"stub-block-{number}".encode()).hex()


class StubChain(Chain):
    def __init__(self, name: str, chain_id: int, *, head: int = 100,
                 fees: FeeQuote = QUIET_CHAIN_FEES) -> None:
        self.name = name
        self._chain_id = chain_id
        self.head_number = head
        self.fee_quote = fees
        self.mined_nonces: dict[str, int] = {}  # address → transactions of it in mined blocks
        self.errors: dict[str, ChainError] = {}  # verb → the error it raises while set
        self.broadcasts: list[bytes] = []  # every raw transaction accepted, in order
        self.receipts_by_hash: dict[str, Receipt] = {}
        self.gas_estimate: int | None = None  # what estimate_gas answers (None: the transaction's own minimum)
        self.closed = 0

    # --- what a test does to the chain ---------------------------------------------------------

    def advance(self, blocks: int) -> None:
        self.head_number += blocks

    def mine(self, tx_hash: str, *, status: int = 1, gas_used: int = 21_000,
             effective_gas_price: int = 12 * GWEI) -> Receipt:
        """Mine ``tx_hash`` in a new block at head + 1 (status 1: success, 0: reverted)."""
        self.head_number += 1
        receipt = Receipt(tx_hash=tx_hash, status=status, block_number=self.head_number,
                          block_hash=_block_hash(self.head_number), gas_used=gas_used,
                          effective_gas_price=effective_gas_price)
        self.receipts_by_hash[tx_hash] = receipt
        return receipt

    def _fail_if_told(self, verb: str) -> None:
        if verb in self.errors:
            raise self.errors[verb]

    # --- the verbs -----------------------------------------------------------------------------

    async def head(self) -> int:
        self._fail_if_told("head")
        return self.head_number

    async def block(self, number: int) -> Block:
        if number > self.head_number:
            raise BlockNotFound(details={"chain": self.name, "block": number})
        mined = tuple(receipt.tx_hash for receipt in self.receipts_by_hash.values() if receipt.block_number == number)
        return Block(number=number, hash=_block_hash(number), parent_hash=_block_hash(number - 1),
                     timestamp=1_700_000_000 + number, transactions=mined)

    async def nonce(self, address: str) -> int:
        self._fail_if_told("nonce")
        return self.mined_nonces.get(address, 0)  # the stub has no mempool worth counting

    async def mined_nonce(self, address: str) -> int:
        self._fail_if_told("mined_nonce")
        return self.mined_nonces.get(address, 0)

    async def fees(self) -> FeeQuote:
        self._fail_if_told("fees")
        return self.fee_quote

    async def broadcast(self, raw: bytes) -> str:
        self._fail_if_told("broadcast")
        self.broadcasts.append(raw)
        return "0x" + keccak(raw).hex()

    async def receipt(self, tx_hash: str) -> Receipt | None:
        self._fail_if_told("receipt")
        return self.receipts_by_hash.get(tx_hash)  # None: pending or unknown

    async def estimate_gas(self, sender: str, to: str, value: int, data: str) -> int:
        self._fail_if_told("estimate_gas")  # ExecutionReverted: the payment would revert
        if self.gas_estimate is not None:
            return self.gas_estimate
        return 21_000 if data in ("", "0x") else 50_000

    async def chain_id(self) -> int:
        return self._chain_id

    async def transfers(self, numbers: Sequence[int]) -> list[BlockTransfers]:
        return [BlockTransfers(await self.block(number), ()) for number in numbers]

    async def token_transfers(self, from_block: int, to_block: int, tokens: Sequence[str]) -> list[TokenTransfer]:
        return []

    def may_have_token_transfers(self, block: Block, tokens: Sequence[str]) -> bool:
        return False  # the stub's blocks carry no token logs

    async def token_transfers_in(self, block_hashes: Sequence[str], tokens: Sequence[str]) -> list[TokenTransfer]:
        return []

    async def finalized(self) -> Block:
        return await self.block(max(0, self.head_number - 64))  # as Anvil answers: two epochs of 32 slots behind

    async def receipts(self, tx_hashes: Sequence[str]) -> list[Receipt | None]:
        return [await self.receipt(tx_hash) for tx_hash in tx_hashes]

    async def transaction_transfers(self, tx_hash: str) -> TransactionTransfers | None:
        receipt = await self.receipt(tx_hash)
        return None if receipt is None else TransactionTransfers(receipt, None, ())

    async def token_decimals(self, token: str) -> int:
        return 6

    async def close(self) -> None:
        self.closed += 1  # the pipeline opens and closes the adapter per step; the stub outlives that
