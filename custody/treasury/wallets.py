"""What the platform owes its customers against what its wallets hold on chain (`GET /admin/treasury/wallets`).

Per asset, the customer liabilities are the ledger's user accounts: ``available`` plus ``held``
(pending withdrawals and escrow funding are still the customers' money). Per chain, at one block:
the hot wallet (from the signer-signed xpub file), the cold wallet (watch-only, from the settings)
and the deposit addresses assigned to customers — read in batches (``eth_getBalance``, ERC-20
``balanceOf``; ``EvmChain.balances``), at most ``MAX_DEPOSIT_ADDRESSES`` per chain, the oldest
assignments first, and the answer says when it stopped short. The difference is on chain less
owed: negative is a shortfall. A chain whose node does not answer is reported as such and left out
of the sums (``complete`` is false).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import ChainSettings, Settings, SettingsError
from custody import ledger
from custody.addresses.models import DepositAddress
from custody.chains import ChainError, chain_for
from custody.hd import XpubError, signed_xpubs
from custody.ledger.models import LedgerAccount

MAX_DEPOSIT_ADDRESSES = 5_000  # per chain and view: a bounded read, 500 calls per JSON-RPC batch


@dataclass(frozen=True)
class ChainHolding:
    asset: str
    hot: int
    cold: int
    deposit_addresses: int

    @property
    def total(self) -> int:
        return self.hot + self.cold + self.deposit_addresses


@dataclass
class ChainView:
    chain: str
    hot_wallet: str | None
    cold_wallet: str | None
    block: int | None = None
    deposit_addresses_assigned: int = 0
    deposit_addresses_read: int = 0
    holdings: list[ChainHolding] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class AssetView:
    asset: str
    unit: ledger.CurrencyInfo
    available: int
    held: int
    hot: int
    cold: int
    deposit_addresses: int

    @property
    def liabilities(self) -> int:
        return self.available + self.held

    @property
    def on_chain(self) -> int:
        return self.hot + self.cold + self.deposit_addresses

    @property
    def difference(self) -> int:
        return self.on_chain - self.liabilities


@dataclass(frozen=True)
class WalletsView:
    assets: list[AssetView]
    chains: list[ChainView]

    @property
    def complete(self) -> bool:
        return all(chain.error is None and chain.deposit_addresses_read == chain.deposit_addresses_assigned
                   for chain in self.chains)


async def liabilities(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Per currency, what the user accounts hold: ``{"available": …, "held": …}`` in minor units."""
    rows = await session.execute(select(LedgerAccount.currency, LedgerAccount.kind, func.sum(LedgerAccount.balance))
                                 .where(LedgerAccount.owner_type == "user")
                                 .group_by(LedgerAccount.currency, LedgerAccount.kind))
    owed: dict[str, dict[str, int]] = defaultdict(lambda: {ledger.AVAILABLE: 0, ledger.HELD: 0})
    for currency, kind, total in rows:
        owed[currency][kind] = int(total or 0)
    return dict(owed)


async def chain_view(session: AsyncSession, chain_settings: ChainSettings, hot: str | None) -> ChainView:
    view = ChainView(chain_settings.name, hot, chain_settings.cold_wallet)
    assigned = DepositAddress.chain == chain_settings.name, DepositAddress.user_id.is_not(None)
    view.deposit_addresses_assigned = await session.scalar(select(func.count()).where(*assigned)) or 0
    deposits = list(await session.scalars(select(DepositAddress.address).where(*assigned)
                                          .order_by(DepositAddress.assigned_at, DepositAddress.id)
                                          .limit(MAX_DEPOSIT_ADDRESSES)))
    wallets = [wallet for wallet in (hot, chain_settings.cold_wallet) if wallet is not None]
    try:
        async with chain_for(chain_settings) as chain:
            view.block = await chain.head()
            balances = await chain.balances([*wallets, *deposits], list(chain_settings.tokens.values()), view.block)
    except ChainError as unavailable:
        view.error = unavailable.message
        return view
    view.deposit_addresses_read = len(deposits)
    for asset in chain_settings.assets:
        token = chain_settings.tokens.get(asset)
        view.holdings.append(ChainHolding(
            asset, balances.get((hot, token), 0) if hot else 0,
            balances.get((chain_settings.cold_wallet, token), 0) if chain_settings.cold_wallet else 0,
            sum(balances.get((address, token), 0) for address in deposits)))
    return view


async def overview(session: AsyncSession, settings: Settings) -> WalletsView:
    try:
        hot_wallets = {name: entry.hot_wallet for name, entry in signed_xpubs(settings).items()}
    except (XpubError, SettingsError):
        hot_wallets = {}  # no verified xpub file in this process: no hot wallet to read (each chain says so)
    chains = []
    for chain_settings in settings.chains:
        view = await chain_view(session, chain_settings, hot_wallets.get(chain_settings.name))
        if view.hot_wallet is None and view.error is None:
            view.error = "no hot wallet: the signed xpub file does not name one for this chain"
        chains.append(view)
    owed = await liabilities(session)
    held: dict[str, list[ChainHolding]] = defaultdict(list)
    for view in chains:
        for holding in view.holdings:
            held[holding.asset].append(holding)
    units = await ledger.currencies(session)
    assets = []
    for asset in sorted(set(owed) | set(held)):
        parts, owed_here = held.get(asset, []), owed.get(asset, {})
        unit = units.get(asset) or ledger.CurrencyInfo(asset, 0, "token", ())  # a chain asset the ledger lacks
        assets.append(AssetView(asset, unit,
                                owed_here.get(ledger.AVAILABLE, 0), owed_here.get(ledger.HELD, 0),
                                sum(part.hot for part in parts), sum(part.cold for part in parts),
                                sum(part.deposit_addresses for part in parts)))
    return WalletsView(assets, chains)
