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
from collections.abc import Sequence
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
    # EVM: the header's 2048-bit bloom of its logs' addresses and topics (0x hex); None when unknown.
    logs_bloom: str | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    status: int  # 1 success, 0 reverted (the fee is spent either way)
    block_number: int
    block_hash: str  # a receipt from a block later reorged away is only as good as that hash
    # Withdrawals: what the sender paid the network, mined or reverted alike.
    gas_used: int = 0
    effective_gas_price: int = 0  # wei per gas
    # Deposits: the block log indexes of the transaction's logs, in order (every log, not only Transfers).
    log_indexes: tuple[int, ...] = ()

    def log_position(self, log_index: int) -> int | None:
        """The index within this transaction of its log at ``log_index`` in the block; None if not its log.

        What keys a token deposit: a reorg may mine the transaction at another place in a block,
        which moves ``log_index`` but never the log's place among the transaction's own logs.
        """
        try:
            return self.log_indexes.index(log_index)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class FeeQuote:
    """EIP-1559 fees for a transaction sent now (wei per gas), from the node's fee history."""

    base_fee: int  # the next block's base fee
    priority_fee: int  # the tip that recent blocks paid (a percentile of their rewards)

    def max_fee(self, min_priority_fee: int = 0) -> int:
        # Twice the base fee survives six full blocks of +12.5 % before the transaction stalls.
        return 2 * self.base_fee + max(self.priority_fee, min_priority_fee)


# --- deposits: what the scanner and the ingest route read ------------------------------

@dataclass(frozen=True, slots=True)
class ValueTransfer:
    """A transaction's own value in the native coin (internal transfers by contracts are not seen)."""

    tx_hash: str
    block_number: int
    block_hash: str
    from_address: str
    to_address: str
    value: int  # minor units (wei)


@dataclass(frozen=True, slots=True)
class BlockTransfers:
    block: Block
    transfers: tuple[ValueTransfer, ...]  # value > 0 to an address, in block order


@dataclass(frozen=True, slots=True)
class TokenTransfer:
    """An ERC-20 ``Transfer`` event, as logged by the token contract."""

    token: str  # the contract
    tx_hash: str
    log_index: int  # the log's index in its block (its index in its transaction: ``Receipt.log_position``)
    block_number: int
    block_hash: str
    from_address: str
    to_address: str
    value: int  # minor units of the token


@dataclass(frozen=True, slots=True)
class TransactionTransfers:
    """What one mined transaction moved: its receipt, native value and ERC-20 transfers."""

    receipt: Receipt
    value: ValueTransfer | None
    tokens: tuple[TokenTransfer, ...]

class ChainError(AppError):
    """A chain call failed; ``details`` names the chain."""

    status, code, message = 502, "chain_error", "The blockchain node returned an error."


class ChainUnavailable(ChainError):
    """The node did not answer in time, or could not be reached: retrying later may work."""

    status, code, message = 503, "chain_unavailable", "The blockchain node is unavailable."


class ChainRejected(ChainError):
    """The node answered and refused the request (a bad transaction, an unknown method)."""

    code, message = "chain_rejected", "The blockchain node rejected the request."


class ExecutionReverted(ChainError):
    """The node ran the transaction against its latest state and it reverted: sent now, it would be
    mined, fail and still cost its gas. ``message`` carries the node's reason (or the custom error's
    selector); ``details["data"]`` the raw revert data when there is any."""

    status, code, message = 422, "execution_reverted", "The transaction would revert."


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
    async def mined_nonce(self, address: str) -> int:
        """Transactions of ``address`` in mined blocks: a nonce below it is used for good (or until a reorg)."""

    @abstractmethod
    async def fees(self) -> FeeQuote:
        """Current EIP-1559 fees (from ``eth_feeHistory`` on EVM chains)."""

    @abstractmethod
    async def broadcast(self, raw: bytes) -> str:
        """Send a signed transaction; returns its hash. Sending the same bytes twice is harmless."""

    @abstractmethod
    async def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of a mined transaction, or ``None`` while it is pending or unknown."""

    @abstractmethod
    async def estimate_gas(self, sender: str, to: str, value: int, data: str) -> int:
        """The gas the transaction would use if sent now (``eth_estimateGas``: the node executes it);
        ``ExecutionReverted`` when it would revert."""

    # --- deposits ---------------------------------------------------------------------

    @abstractmethod
    async def chain_id(self) -> int:
        """The network's id: the scanner refuses to follow a node of another network."""

    @abstractmethod
    async def transfers(self, numbers: Sequence[int]) -> list[BlockTransfers]:
        """The blocks at ``numbers`` (one batched request) with their native transfers; ``BlockNotFound`` above head."""

    @abstractmethod
    async def token_transfers(self, from_block: int, to_block: int, tokens: Sequence[str]) -> list[TokenTransfer]:
        """ERC-20 ``Transfer`` events of the ``tokens`` contracts in blocks ``from_block..to_block``."""

    @abstractmethod
    def may_have_token_transfers(self, block: Block, tokens: Sequence[str]) -> bool:
        """Whether the block's header says a ``Transfer`` of one of ``tokens`` may be in it (EVM: its
        logsBloom, which has false positives but no false negatives); True when the header does not say."""

    @abstractmethod
    async def token_transfers_in(self, block_hashes: Sequence[str], tokens: Sequence[str]) -> list[TokenTransfer]:
        """``token_transfers`` of the blocks with these hashes, asked by hash (one batched request): a
        lagging node can answer a range with nothing, while by hash it must name that very block."""

    @abstractmethod
    async def finalized(self) -> Block:
        """The block at the node's ``finalized`` tag; ``ChainRejected`` when the node knows no such tag."""

    @abstractmethod
    async def receipts(self, tx_hashes: Sequence[str]) -> list[Receipt | None]:
        """``receipt`` for many transactions in one batched request."""

    @abstractmethod
    async def transaction_transfers(self, tx_hash: str) -> TransactionTransfers | None:
        """What a mined transaction moved, or ``None`` while it is pending or unknown."""

    @abstractmethod
    async def token_decimals(self, token: str) -> int:
        """The ERC-20 contract's ``decimals()``."""

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
