"""The verbs the rest of VirtuOZ may use on a chain, whatever the chain is.

The scanner and the withdrawal service talk to a ``Chain``, never to web3 or raw JSON-RPC, so a
chain family is added by writing one subclass (the Bitcart pattern, STYLE.md). An ``abc.ABC``
rather than a ``Protocol``: an adapter that forgets a verb fails when it is constructed, not
when the scanner first calls the missing method in production.

Hashes are 0x-prefixed lowercase hex strings and addresses EIP-55 strings, so values from
different adapters compare equal and go straight into the database.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

from core.errors import AppError


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    hash: str
    parent_hash: str  # compared with the previous block's hash to detect reorgs
    timestamp: int  # seconds since the epoch, as the chain reports it
    transactions: tuple[str, ...]  # transaction hashes, in block order


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int  # 1 success, 0 reverted (the fee is spent either way)
    block_number: int
    block_hash: str  # a receipt from a block later reorged away is only as good as that hash


class ChainError(AppError):
    """A chain call failed; ``details`` names the chain."""

    status, code, message = 502, "chain_error", "The blockchain node returned an error."


class ChainUnavailable(ChainError):
    """The node did not answer in time, or could not be reached: retrying later may work."""

    status, code, message = 503, "chain_unavailable", "The blockchain node is unavailable."


class ChainRejected(ChainError):
    """The node answered and refused the request (a bad transaction, an unknown method)."""

    code, message = "chain_rejected", "The blockchain node rejected the request."


class BlockNotFound(ChainError):
    """The block is above the node's head (or the node pruned it)."""

    status, code, message = 404, "block_not_found", "The block does not exist on this chain."


class Chain(ABC):
    """One chain, reached through one node. Every call is bounded by the adapter's timeout."""

    name: str

    @abstractmethod
    async def head(self) -> int:
        """The latest block number."""

    @abstractmethod
    async def block(self, number: int) -> Block:
        """The block at ``number`` on the node's current canonical chain; ``BlockNotFound`` above head."""

    @abstractmethod
    async def nonce(self, address: str) -> int:
        """The next nonce for ``address``, counting its transactions still in the mempool."""

    @abstractmethod
    async def broadcast(self, raw: bytes) -> str:
        """Send a signed transaction; returns its hash. Sending the same bytes twice is harmless."""

    @abstractmethod
    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined transaction, or ``None`` while it is pending or unknown."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; the adapter is not used afterwards."""

    async def __aenter__(self) -> Chain:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
