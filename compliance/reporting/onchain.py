"""What the platform holds on chain: the hot wallet and the deposit addresses of each configured
chain, per asset, at the last block at or before a moment (the reconciliation report's input).

The hot wallet is derived from the public xpub file, like the custody worker does; deposit addresses
are every address assigned to a customer (unassigned pool addresses have never been shown to
anyone). Balances are read at one block per chain (``eth_getBalance`` and ERC-20 ``balanceOf`` in
batches), so a chain moving on while the report is built changes nothing in it. A node that does
not keep the state of that block (a pruned node, a period long past) refuses: the report fails with
the node's reason. A node that does not answer makes the job fail and Dramatiq retry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import ChainSettings
from custody.addresses.models import DepositAddress
from custody.chains import ChainUnavailable, chain_for
from custody.hd import XpubError, hot_wallet_address, load_xpubs


class ChainsUnavailable(RuntimeError):
    """A node did not answer: not a refusal to record, a reason to try again (the job is retried)."""


@dataclass(frozen=True)
class Holding:
    chain: str
    block: int | None  # None: the chain began after the moment (it held nothing then)
    asset: str
    hot_wallet: int  # minor units
    deposit_addresses: int
    addresses: int  # deposit addresses read
    note: str = ""

    @property
    def total(self) -> int:
        return self.hot_wallet + self.deposit_addresses


def _hot_wallet(xpub_file: Path | None, chain: str) -> str | None:
    if xpub_file is None:
        return None
    try:
        xpubs = load_xpubs(xpub_file)
    except XpubError:
        return None
    return hot_wallet_address(xpubs[chain].xpub) if chain in xpubs else None


async def holdings(session: AsyncSession, chains: Sequence[ChainSettings], xpub_file: Path | None,
                   moment: datetime) -> list[Holding]:
    found: list[Holding] = []
    for chain in chains:
        addresses = list(await session.scalars(select(DepositAddress.address).where(
            DepositAddress.chain == chain.name, DepositAddress.user_id.is_not(None))
            .order_by(DepositAddress.address)))
        hot = _hot_wallet(xpub_file, chain.name)
        note = "" if hot is not None else f"no hot wallet: the xpub file has no xpub for {chain.name}"
        assets = {chain.native: None, **{symbol: contract for symbol, contract in chain.tokens.items()}}
        try:
            async with chain_for(chain) as adapter:
                block = await adapter.block_at(int(moment.timestamp()))
                balances = {} if block is None else await adapter.balances(
                    [*([hot] if hot else []), *addresses], list(chain.tokens.values()), block.number)
        except ChainUnavailable as error:
            raise ChainsUnavailable(f"{chain.name}: {error.message}") from error
        for asset, token in assets.items():
            found.append(Holding(
                chain.name, None if block is None else block.number, asset,
                balances.get((hot, token), 0) if hot else 0,
                sum(balances.get((address, token), 0) for address in addresses), len(addresses),
                note if block is not None else f"{chain.name} has no block at or before the moment"))
    return found
