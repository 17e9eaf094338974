"""What the platform holds on chain: the hot wallet and the deposit addresses of each configured
chain, per asset, at the last block at or before a moment (the reconciliation report's input).

The hot wallets come from the xpub file, believed only with the signer key's signature (like the
custody worker and the allocator do): the one each chain pays withdrawals from, and the one of
before the hot wallet moved to an account of its own, until its balance is moved (it is still the
platform's money). Deposit addresses are every address assigned to a customer (unassigned pool
addresses have never been shown to anyone). Balances are read at one block per chain
(``eth_getBalance`` and ERC-20 ``balanceOf`` in batches), so a chain moving on while the report is
built changes nothing in it. A node that does not keep the state of that block (a pruned node, a
period long past) refuses: the report fails with the node's reason. A node that does not answer
makes the job fail and Dramatiq retry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import AppError
from core.settings import ChainSettings, SettingsError
from core.sign_requests import load_signer_public_key
from custody.addresses.models import DepositAddress
from custody.chains import ChainUnavailable, chain_for
from custody.hd import XpubError, load_xpubs, retired_hot_wallet_address


class ChainsUnavailable(RuntimeError):
    """A node did not answer: not a refusal to record, a reason to try again (the job is retried)."""


class XpubFileRefused(AppError):
    """The xpub file does not verify: the report fails, recorded, rather than reconcile wallets it names."""

    status, code = 409, "xpub_file_refused"


@dataclass(frozen=True)
class Holding:
    chain: str
    block: int | None  # None: the chain began after the moment (it held nothing then)
    asset: str
    hot_wallet: int  # minor units
    cold_wallet: int  # the chain's watch-only cold address: platform money as much as the hot wallet's
    deposit_addresses: int
    addresses: int  # deposit addresses read
    note: str = ""

    @property
    def total(self) -> int:
        return self.hot_wallet + self.cold_wallet + self.deposit_addresses


def hot_wallets(xpub_file: Path | None, public_key_file: Path | None) -> dict[str, list[str]]:
    """Per chain, the platform's hot wallets: the current one, then the one of before the move.

    No xpub file: none (the report says so). A file that does not verify refuses the whole report,
    whatever it lists, nothing included.
    """
    if xpub_file is None or not xpub_file.exists():
        return {}
    try:
        if public_key_file is None:
            raise SettingsError("no signer public key is configured (VIRTUOZ_SIGNER_PUBLIC_KEY_FILE)")
        xpubs = load_xpubs(xpub_file, load_signer_public_key(public_key_file))
    except (XpubError, SettingsError) as refused:
        raise XpubFileRefused(f"the xpub file is refused: {refused}") from None
    return {name: [entry.hot_wallet, retired_hot_wallet_address(entry.xpub)] for name, entry in xpubs.items()}


async def holdings(session: AsyncSession, chains: Sequence[ChainSettings], xpub_file: Path | None,
                   public_key_file: Path | None, moment: datetime) -> list[Holding]:
    wallets = hot_wallets(xpub_file, public_key_file)
    found: list[Holding] = []
    for chain in chains:
        addresses = list(await session.scalars(select(DepositAddress.address).where(
            DepositAddress.chain == chain.name, DepositAddress.user_id.is_not(None))
            .order_by(DepositAddress.address)))
        hot = wallets.get(chain.name, [])
        cold = [chain.cold_wallet] if chain.cold_wallet else []
        note = "" if hot else f"no hot wallet: the xpub file has no xpub for {chain.name}"
        assets = {chain.native: None, **{symbol: contract for symbol, contract in chain.tokens.items()}}
        try:
            async with chain_for(chain) as adapter:
                block = await adapter.block_at(int(moment.timestamp()))
                balances = {} if block is None else await adapter.balances(
                    [*hot, *cold, *addresses], list(chain.tokens.values()), block.number)
        except ChainUnavailable as error:
            raise ChainsUnavailable(f"{chain.name}: {error.message}") from error
        for asset, token in assets.items():
            found.append(Holding(
                chain.name, None if block is None else block.number, asset,
                sum(balances.get((wallet, token), 0) for wallet in hot),
                sum(balances.get((wallet, token), 0) for wallet in cold),
                sum(balances.get((address, token), 0) for address in addresses), len(addresses),
                note if block is not None else f"{chain.name} has no block at or before the moment"))
    return found
