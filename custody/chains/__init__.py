"""Chain adapters: the only door from VirtuOZ to a blockchain node (see ``base.Chain`` for the verbs)."""

from __future__ import annotations

from typing import Protocol

from custody.chains.base import (
    Block,
    BlockNotFound,
    BlockTransfers,
    Chain,
    ChainError,
    ChainRejected,
    ChainUnavailable,
    ExecutionReverted,
    Receipt,
    TokenTransfer,
    TransactionTransfers,
    ValueTransfer,
)
from custody.chains.evm import EvmChain


class ChainEndpoint(Protocol):
    """What ``chain_for`` needs of a chain's settings (``core.settings.ChainSettings`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def rpc_url(self) -> str: ...


def chain_for(settings_chain: ChainEndpoint, *, timeout: float = 5.0) -> EvmChain:
    """The adapter for one configured chain; every chain VirtuOZ follows today is an EVM chain."""
    return EvmChain(settings_chain.name, settings_chain.rpc_url, timeout=timeout)


__all__ = [
    "Block",
    "BlockNotFound",
    "Chain",
    "ChainEndpoint",
    "ChainError",
    "ChainRejected",
    "ChainUnavailable",
    "EvmChain",
    "ExecutionReverted",
    "Receipt",
    "chain_for",
    "BlockTransfers",
    "TokenTransfer",
    "TransactionTransfers",
    "ValueTransfer",
]
