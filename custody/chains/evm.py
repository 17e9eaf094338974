"""EVM chains (Ethereum, Polygon, Anvil) behind the ``Chain`` verbs, over web3.py's async HTTP client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import ClientError, ClientTimeout
from eth_utils import keccak
from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import BlockNotFound as Web3BlockNotFound
from web3.exceptions import TransactionNotFound, Web3Exception, Web3RPCError

from custody.chains.base import Block, BlockNotFound, Chain, ChainRejected, ChainUnavailable, Receipt

T = TypeVar("T")

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
        return Block(
            number=data["number"],
            hash=_hex(data["hash"]),
            parent_hash=_hex(data["parentHash"]),
            timestamp=data["timestamp"],
            transactions=tuple(_hex(tx_hash) for tx_hash in data["transactions"]),
        )

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
        )

    async def close(self) -> None:
        await self._web3.provider.disconnect()

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


def _hex(value: bytes | str) -> str:
    # web3 returns HexBytes; ``bytes.hex()`` has no 0x prefix since hexbytes 1.0.
    return HexBytes(value).to_0x_hex()
