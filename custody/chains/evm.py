"""EVM chains (Ethereum, Polygon, Anvil) behind the ``Chain`` verbs, over web3.py's async HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from aiohttp import ClientError, ClientTimeout
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import BlockNotFound as Web3BlockNotFound
from web3.exceptions import (
    ContractLogicError,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)

from custody.chains import evm_batch
from custody.chains.base import (
    Block,
    BlockNotFound,
    BlockTransfers,
    Chain,
    ChainRejected,
    ChainUnavailable,
    ExecutionReverted,
    FeeQuote,
    Receipt,
    TokenTransfer,
    TransactionTransfers,
)

T = TypeVar("T")

FEE_HISTORY_BLOCKS = 5  # withdrawals: blocks of fee history a fee quote looks at
BALANCE_OF_SELECTOR = "0x70a08231"  # reconciliation: ERC-20 balanceOf(address)

# What nodes (geth, reth, anvil, erigon) answer when they already hold the transaction.
_ALREADY_KNOWN = ("already known", "already imported", "known transaction", "alreadyknown")


class EvmChain(Chain):
    """An EVM chain reached through one JSON-RPC endpoint; each call gives up after ``timeout`` seconds."""

    def __init__(self, name: str, rpc_url: str, *, timeout: float = 5.0) -> None:
        self.name = name
        self.rpc_url = rpc_url
        self.timeout = timeout
        provider = AsyncHTTPProvider(
            rpc_url,
            request_kwargs={"timeout": ClientTimeout(total=timeout)},
            # web3 retries five times with back-off by default, which turns a 5 s timeout into
            # half a minute; the scanner and the custody worker own the retry policy instead.
            exception_retry_configuration=None,
        )
        self._web3 = AsyncWeb3(provider)

    def __repr__(self) -> str:
        return f"EvmChain({self.name!r}, {self.rpc_url!r})"

    async def head(self) -> int:
        return await self._call(self._web3.eth.block_number)

    async def block(self, number: int) -> Block:
        try:
            data = await self._call(self._web3.eth.get_block(number, full_transactions=False))
        except Web3BlockNotFound as missing:
            raise BlockNotFound(details={"chain": self.name, "block": number}) from missing
        return _block(data)

    async def finalized(self) -> Block:
        try:
            data = await self._call(self._web3.eth.get_block("finalized", full_transactions=False))
        except Web3BlockNotFound as missing:
            # A node before the merge (or not following a beacon chain) has no finalized block to name.
            raise ChainRejected(f"{self.name}: the node names no finalized block",
                                details={"chain": self.name, "block": "finalized"}) from missing
        return _block(data)

    async def nonce(self, address: str) -> int:
        # "pending": a withdrawal broadcast but not yet mined already holds its nonce.
        checksum = AsyncWeb3.to_checksum_address(address)
        return await self._call(self._web3.eth.get_transaction_count(checksum, "pending"))

    async def broadcast(self, raw: bytes) -> str:
        # The hash is known before sending, so a re-broadcast after a lost answer is recognisable.
        tx_hash = _hex(keccak(raw))
        try:
            return _hex(await self._call(self._web3.eth.send_raw_transaction(raw)))
        except ChainRejected as rejected:
            if any(phrase in rejected.message.lower() for phrase in _ALREADY_KNOWN):
                return tx_hash
            # "nonce too low" for our own transaction means it was mined: that is success too.
            if await self.receipt(tx_hash) is not None:
                return tx_hash
            raise

    async def receipt(self, tx_hash: str) -> Receipt | None:
        try:
            data = await self._call(self._web3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None
        return Receipt(
            tx_hash=_hex(data["transactionHash"]),
            status=data["status"],
            block_number=data["blockNumber"],
            block_hash=_hex(data["blockHash"]),
            gas_used=int(data.get("gasUsed", 0)),
            effective_gas_price=int(data.get("effectiveGasPrice", 0)),
        )

    async def estimate_gas(self, sender: str, to: str, value: int, data: str) -> int:
        transaction = {"from": AsyncWeb3.to_checksum_address(sender), "to": AsyncWeb3.to_checksum_address(to),
                       "value": value, "data": data}
        return int(await self._call(self._web3.eth.estimate_gas(transaction)))  # type: ignore[arg-type]

    # --- withdrawals: fees, the mined nonce, transaction building helpers ------------

    async def fees(self) -> FeeQuote:
        # The last base fee eth_feeHistory returns is the *next* block's; the tip is the median
        # reward of the last few blocks (0 on an idle chain: callers apply their own minimum).
        history = await self._call(self._web3.eth.fee_history(FEE_HISTORY_BLOCKS, "latest", [50]))
        rewards = sorted(int(block[0]) for block in history.get("reward") or [] if block)
        return FeeQuote(base_fee=int(history["baseFeePerGas"][-1]),
                        priority_fee=rewards[len(rewards) // 2] if rewards else 0)

    async def mined_nonce(self, address: str) -> int:
        """Transactions of ``address`` in mined blocks: a nonce below it is used for good (or until a reorg)."""
        checksum = AsyncWeb3.to_checksum_address(address)
        return await self._call(self._web3.eth.get_transaction_count(checksum, "latest"))

    # --- deposits: batched reads for the scanner, event checks for the ingest route ----
    # One JSON-RPC batch per call: custody/chains/evm_batch.py says why not web3's batch API.

    @property
    def _reads(self) -> evm_batch.JsonRpcBatch:
        reads = getattr(self, "_batch_reads", None)
        if reads is None:
            reads = self._batch_reads = evm_batch.JsonRpcBatch(self.name, self.rpc_url, self.timeout)
        return reads

    async def chain_id(self) -> int:
        return await self._call(self._web3.eth.chain_id)

    async def transfers(self, numbers: Sequence[int]) -> list[BlockTransfers]:
        answers = await self._reads.call([("eth_getBlockByNumber", [hex(number), True]) for number in numbers])
        blocks = []
        for number, data in zip(numbers, answers, strict=True):
            if data is None:
                raise BlockNotFound(details={"chain": self.name, "block": number})
            try:
                parsed = evm_batch.parse_block_transfers(data)
            except (KeyError, TypeError, ValueError) as error:
                raise evm_batch.malformed(self.name, f"block {number}", error) from error
            if parsed.block.number != number:
                raise evm_batch.malformed(self.name, f"block {number}", ValueError(f"numbered {parsed.block.number}"))
            blocks.append(parsed)
        return blocks

    async def token_transfers(self, from_block: int, to_block: int, tokens: Sequence[str]) -> list[TokenTransfer]:
        if not tokens or from_block > to_block:
            return []
        query = {"fromBlock": hex(from_block), "toBlock": hex(to_block), "topics": [evm_batch.TRANSFER_TOPIC],
                 "address": [evm_batch.checksum(token) for token in tokens]}
        try:
            (entries,) = await self._reads.call([("eth_getLogs", [query])])
        except ChainRejected:
            # Nodes cap what one log query may span or return: halve the range until it passes.
            if from_block == to_block:
                raise
            middle = (from_block + to_block) // 2
            return [*await self.token_transfers(from_block, middle, tokens),
                    *await self.token_transfers(middle + 1, to_block, tokens)]
        return self._token_transfers_of(entries or [], f"logs of blocks {from_block}-{to_block}")

    def may_have_token_transfers(self, block: Block, tokens: Sequence[str]) -> bool:
        if block.logs_bloom is None:
            return True
        topic = bytes.fromhex(evm_batch.TRANSFER_TOPIC[2:])
        return any(evm_batch.bloom_may_contain(block.logs_bloom, bytes.fromhex(token[2:]), topic) for token in tokens)

    async def token_transfers_in(self, block_hashes: Sequence[str], tokens: Sequence[str]) -> list[TokenTransfer]:
        if not tokens or not block_hashes:
            return []
        addresses = [evm_batch.checksum(token) for token in tokens]
        queries = [{"blockHash": block_hash, "topics": [evm_batch.TRANSFER_TOPIC], "address": addresses}
                   for block_hash in block_hashes]
        answers = await self._reads.call([("eth_getLogs", [query]) for query in queries])
        transfers = []
        for block_hash, entries in zip(block_hashes, answers, strict=True):
            found = self._token_transfers_of(entries or [], f"logs of block {block_hash}")
            if any(transfer.block_hash != block_hash for transfer in found):
                raise evm_batch.malformed(self.name, f"logs of block {block_hash}", ValueError("logs of another block"))
            transfers.extend(found)
        return transfers

    async def receipts(self, tx_hashes: Sequence[str]) -> list[Receipt | None]:
        answers = await self._reads.call([("eth_getTransactionReceipt", [tx_hash]) for tx_hash in tx_hashes])
        try:
            return [None if data is None else evm_batch.parse_receipt(data) for data in answers]
        except (KeyError, TypeError, ValueError) as error:
            raise evm_batch.malformed(self.name, "receipt", error) from error

    async def transaction_transfers(self, tx_hash: str) -> TransactionTransfers | None:
        transaction, receipt = await self._reads.call(
            [("eth_getTransactionByHash", [tx_hash]), ("eth_getTransactionReceipt", [tx_hash])])
        if transaction is None or receipt is None:
            return None
        try:
            parsed = evm_batch.parse_receipt(receipt)
            value = evm_batch.parse_value_transfer(transaction)
        except (KeyError, TypeError, ValueError) as error:
            raise evm_batch.malformed(self.name, f"transaction {tx_hash}", error) from error
        tokens = self._token_transfers_of(receipt.get("logs") or [], f"logs of {tx_hash}")
        return TransactionTransfers(parsed, value, tuple(tokens))

    async def token_decimals(self, token: str) -> int:
        call = {"to": evm_batch.checksum(token), "data": evm_batch.DECIMALS_SELECTOR}
        (answer,) = await self._reads.call([("eth_call", [call, "latest"])])
        if not isinstance(answer, str) or len(answer) < 3:
            raise ChainRejected(f"{self.name}: {token} has no decimals(): not an ERC-20 contract",
                                details={"chain": self.name, "token": token})
        return int(answer, 16)

    # --- reconciliation: what addresses hold, at a block ---------------------------------

    async def balances(self, addresses: Sequence[str], tokens: Sequence[str], block: int,
                       chunk: int = 500) -> dict[tuple[str, str | None], int]:
        """Minor units held at ``block`` by each address: ``(address, None)`` for the native coin,
        ``(address, token)`` for each ERC-20 contract. Batched (``chunk`` calls per request)."""
        calls: list[tuple[tuple[str, str | None], tuple[str, list[Any]]]] = []
        for address in addresses:
            checksummed = evm_batch.checksum(address)
            calls.append(((address, None), ("eth_getBalance", [checksummed, hex(block)])))
            for token in tokens:
                data = BALANCE_OF_SELECTOR + checksummed[2:].lower().rjust(64, "0")
                calls.append(((address, token), ("eth_call", [{"to": evm_batch.checksum(token), "data": data},
                                                             hex(block)])))
        found: dict[tuple[str, str | None], int] = {}
        for start in range(0, len(calls), chunk):
            part = calls[start:start + chunk]
            answers = await self._reads.call([call for _, call in part])
            for (key, _), answer in zip(part, answers, strict=True):
                if not isinstance(answer, str) or not answer.startswith("0x"):
                    raise evm_batch.malformed(self.name, f"balance of {key[0]}", ValueError(repr(answer)))
                found[key] = int(answer, 16) if answer != "0x" else 0
        return found

    async def block_at(self, timestamp: int) -> Block | None:
        """The last block with ``timestamp`` at or before the given one (binary search), or None if
        the chain began later."""
        head = await self.block(await self.head())
        if head.timestamp <= timestamp:
            return head
        low, high = 0, head.number - 1  # the answer, if any, is in [low, high]
        if (await self.block(low)).timestamp > timestamp:
            return None
        while low < high:
            middle = (low + high + 1) // 2
            if (await self.block(middle)).timestamp <= timestamp:
                low = middle
            else:
                high = middle - 1
        return await self.block(low)

    def _token_transfers_of(self, entries: list[Any], what: str) -> list[TokenTransfer]:
        transfers = []
        for entry in entries:
            try:
                transfer = evm_batch.parse_token_transfer(entry)
            except (KeyError, TypeError, ValueError) as error:
                raise evm_batch.malformed(self.name, what, error) from error
            if transfer is not None:
                transfers.append(transfer)
        return transfers

    async def close(self) -> None:
        await self._web3.provider.disconnect()
        if (reads := getattr(self, "_batch_reads", None)) is not None:
            await reads.close()

    async def _call(self, request: Awaitable[T]) -> T:
        """Await one RPC call, turning transport and node errors into the adapter's typed errors."""
        details: dict[str, Any] = {"chain": self.name}
        try:
            # aiohttp's timeout bounds the HTTP exchange; this one also bounds connecting and
            # web3's own processing, so no call can outlive ``timeout``.
            async with asyncio.timeout(self.timeout):
                return await request
        except (TransactionNotFound, Web3BlockNotFound):
            raise  # "not there (yet)" is an answer, and the verbs turn it into one
        except TimeoutError as slow:
            raise ChainUnavailable(
                f"{self.name} did not answer within {self.timeout:g}s", details=details
            ) from slow
        except ClientError as unreachable:
            raise ChainUnavailable(f"{self.name} is unreachable: {unreachable}", details=details) from unreachable
        except ContractLogicError as reverted:
            # Before the Web3Exception handler: a revert is the node's verdict on the transaction, not a refusal.
            data = reverted.data if isinstance(reverted.data, str) else None
            raise ExecutionReverted(f"{self.name}: {reverted.message or 'execution reverted'}",
                                    details={**details, "data": data}) from reverted
        except Web3RPCError as refused:
            raise ChainRejected(f"{self.name}: {_node_message(refused)}", details=details) from refused
        except Web3Exception as failed:
            raise ChainRejected(f"{self.name}: {failed}", details=details) from failed


def _node_message(error: Web3RPCError) -> str:
    # web3 8 puts the whole JSON-RPC error object, stringified, in ``message``; the node's own
    # words are clearer in logs and API errors.
    response = error.rpc_response or {}
    node_error = response.get("error")
    if isinstance(node_error, dict) and node_error.get("message"):
        return str(node_error["message"])
    return error.message


def _block(data: Any) -> Block:
    bloom = data.get("logsBloom")
    return Block(
        number=data["number"],
        hash=_hex(data["hash"]),
        parent_hash=_hex(data["parentHash"]),
        timestamp=data["timestamp"],
        transactions=tuple(_hex(tx_hash) for tx_hash in data["transactions"]),
        logs_bloom=None if bloom is None else _hex(bloom),
    )


def _hex(value: bytes | str) -> str:
    # web3 returns HexBytes; ``bytes.hex()`` has no 0x prefix since hexbytes 1.0.
    return HexBytes(value).to_0x_hex()
