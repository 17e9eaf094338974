"""Proof of reserves: per asset, a Merkle sum tree of what every customer is owed, and what the
platform's addresses hold on chain, published as one epoch.

What an epoch is made of, and why:

- **Liabilities** are read in one REPEATABLE READ snapshot of the ledger (the epoch's session must not
  have read anything before): per customer and asset, ``available + held`` in minor units. Held money
  (escrows, pending withdrawals) is still owed. The tree's root sum must equal the ledger's own sum of
  the customer accounts in the same snapshot, or nothing is published.
- **Assets** are the ledger's on-chain currencies (native coins and tokens). Fiat (USD) is not in the
  proof: what backs it is not on a chain this platform can read.
- **Reserves** are the balances of every platform address of each configured chain — the hot wallet,
  the hot wallet of before its move to an account of its own (still the platform's money until moved),
  the chain's cold wallet when one is configured, and every derived deposit address — read at one
  block per chain: the newest block with the chain's ``confirmations`` (``head - confirmations + 1``),
  so a shallow reorg does not undo what was recorded. The hot wallets come from the signed xpub file,
  believed only once the signer key's signature verifies.
- **Refusals** (``ReservesRefused``) publish nothing, and alert: an ERROR log line and
  ``virtuoz_reserves_refusals_total{reason, asset}``. A negative customer balance never enters a tree.

Every customer with an account in a proof asset gets a random nonce for the epoch; their leaf id is
``H(user_id:nonce)`` (``custody.treasury.merkle`` has the rules). The whole tree is stored, so a proof is
a few indexed reads.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

from prometheus_client import Counter
from sqlalchemy import func, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import Conflict, NotFound
from core.settings import ChainSettings, Settings, SettingsError
from custody import ledger
from custody.addresses.models import DepositAddress
from custody.chains import Block, ChainError, ChainUnavailable, chain_for
from custody.hd import (
    XpubError,
    checksum_address,
    retired_hot_wallet_address,
    signed_xpubs,
)
from custody.ledger.models import LedgerAccount
from custody.treasury import merkle
from custody.treasury.reserves_models import (
    ReserveAsset,
    ReserveBlock,
    ReserveEpoch,
    ReserveHolding,
    ReserveNode,
    ReserveNonce,
)

log = logging.getLogger(__name__)

AGGREGATE = "reserve_epoch"
JOB_ACTOR = "treasury"
RATIO_DECIMALS = 4
INSERT_CHUNK = 5_000

REFUSALS = Counter(
    "virtuoz_reserves_refusals_total",
    "Proof-of-reserves epochs refused (nothing published), by reason and asset (or chain).", ["reason", "asset"])
EPOCHS = Counter("virtuoz_reserves_epochs_total", "Proof-of-reserves epochs published.")


class NoEpoch(NotFound):
    code, message = "no_reserves_epoch", "No proof of reserves has been published yet."


class NotInProof(NotFound):
    code, message = "not_in_reserves_proof", "You had no account in this asset when the latest proof was built."


class ReservesRefused(Conflict):
    """The epoch is refused: nothing is published. Raised through ``_refuse``, which alerts."""

    code, message = "reserves_refused", "The proof of reserves was refused."


class NegativeLiability(ReservesRefused):
    code, message = "negative_liability", "A customer balance is negative: it cannot enter a proof of reserves."


class XpubFileRefused(ReservesRefused):
    code, message = "xpub_file_refused", "The xpub file does not verify: its hot wallets cannot be counted."


class ChainRefused(ReservesRefused):
    code, message = "chain_refused", "A chain node refused to answer the balances at the epoch's block."


def _refuse(error: ReservesRefused, reason: str, subject: str) -> ReservesRefused:
    REFUSALS.labels(reason, subject).inc()
    log.error("proof of reserves refused (%s, %s): %s", reason, subject, error.message)
    return error


# --- the trees --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Liability:
    user_id: uuid.UUID
    balance: int  # minor units: available + held


def liability_tree(asset: str, liabilities: Sequence[Liability], nonces: Mapping[uuid.UUID, str]) -> merkle.Tree:
    """The asset's tree over the customers' liabilities; ``NegativeLiability`` (alerted) on a negative one."""
    leaves = [merkle.Leaf(merkle.leaf_id(str(item.user_id), nonces[item.user_id]), item.balance, item.user_id)
              for item in liabilities]
    try:
        return merkle.build_tree(leaves)
    except merkle.NegativeBalance as negative:
        raise _refuse(NegativeLiability(
            f"Customer {negative.leaf.owner} has a negative {asset} balance ({negative.leaf.balance}): no proof "
            "of reserves is published until the books are corrected.",
            details={"asset": asset, "user_id": str(negative.leaf.owner)}), "negative_liability", asset) from None


def new_nonce() -> str:
    return secrets.token_hex(16)


# --- the chains -------------------------------------------------------------------------------

HOT, RETIRED_HOT, COLD, DEPOSIT = "hot_wallet", "retired_hot_wallet", "cold_wallet", "deposit_address"


@dataclass(frozen=True)
class PlatformAddress:
    address: str  # EIP-55
    role: str


@dataclass(frozen=True)
class ChainReserves:
    chain: str
    block: Block
    # (address, asset) -> minor units, for every platform address and every asset of the chain
    balances: dict[tuple[str, str], int]
    roles: dict[str, str]


async def platform_addresses(session: AsyncSession, settings: Settings) -> dict[str, list[PlatformAddress]]:
    """Per configured chain, every address whose coins are the platform's (each once, first role wins)."""
    if not settings.chains:
        return {}
    try:
        xpubs = signed_xpubs(settings)
    except (XpubError, SettingsError) as refused:
        raise _refuse(XpubFileRefused(f"The xpub file is refused: {refused}"), "xpub_file_refused", "*") from None
    found: dict[str, list[PlatformAddress]] = {}
    for chain in settings.chains:
        entry = xpubs.get(chain.name)
        if entry is None:
            raise _refuse(XpubFileRefused(f"The xpub file has no hot wallet for {chain.name}.",
                                          details={"chain": chain.name}), "xpub_file_refused", chain.name)
        listed = [PlatformAddress(entry.hot_wallet, HOT),
                  PlatformAddress(retired_hot_wallet_address(entry.xpub), RETIRED_HOT)]
        # Another part of treasury adds the cold wallet to the chain settings; a chain without one has none.
        cold = getattr(chain, "cold_wallet", None)
        if cold:
            listed.append(PlatformAddress(checksum_address(cold), COLD))
        # Every derived address, assigned or still in the pool: coins sent to any of them are ours.
        listed += [PlatformAddress(address, DEPOSIT) for address in await session.scalars(
            select(DepositAddress.address).where(DepositAddress.chain == chain.name)
            .order_by(DepositAddress.derivation_index))]
        unique: dict[str, PlatformAddress] = {}
        for item in listed:
            unique.setdefault(item.address, item)
        found[chain.name] = list(unique.values())
    return found


def reserve_block(head: int, confirmations: int) -> int:
    """The newest block with ``confirmations`` confirmations (the head has one)."""
    return max(0, head - confirmations + 1)


async def chain_reserves(chain: ChainSettings, addresses: Sequence[PlatformAddress]) -> ChainReserves:
    """The balance of every address in every asset of ``chain``, all at one block."""
    tokens = {contract: symbol for symbol, contract in chain.tokens.items()}
    try:
        async with chain_for(chain) as adapter:
            block = await adapter.block(reserve_block(await adapter.head(), chain.confirmations))
            read = await adapter.balances([item.address for item in addresses], list(tokens), block.number)
    except ChainUnavailable:
        raise  # a node that does not answer now may answer later: the job is retried
    except ChainError as error:
        raise _refuse(ChainRefused(f"{chain.name}: {error.message}", details={"chain": chain.name}),
                      "chain_refused", chain.name) from None
    balances = {(address, chain.native if token is None else tokens[token]): amount
                for (address, token), amount in read.items()}
    return ChainReserves(chain.name, block, balances, {item.address: item.role for item in addresses})


# --- building an epoch ------------------------------------------------------------------------

@dataclass(frozen=True)
class AssetReserves:
    asset: ledger.CurrencyInfo
    root: merkle.Node
    liabilities: int  # minor units
    reserves: int
    blocks: dict[str, int]

    @property
    def ratio(self) -> str | None:
        """reserves / liabilities, rounded down to 4 decimals (never overstated); None when nothing is owed."""
        if self.liabilities == 0:
            return None
        with localcontext() as context:
            context.prec = 200  # 78-digit amounts: the quotient must be exact to the 4th decimal
            quotient = Decimal(self.reserves) / Decimal(self.liabilities)
            return str(quotient.quantize(Decimal(1).scaleb(-RATIO_DECIMALS), rounding=ROUND_DOWN))


@dataclass(frozen=True)
class Epoch:
    number: int
    created_at: datetime
    assets: list[AssetReserves]


async def build_epoch(session: AsyncSession, settings: Settings, *, actor: str, slot: str | None = None) -> Epoch | None:
    """Build and store one epoch; None when ``slot`` was already built (a redelivered scheduled message).

    ``session`` must not have been used yet: the ledger is read in the snapshot its transaction starts.
    """
    if session.in_transaction():
        raise RuntimeError("build_epoch needs a session of its own: its first read is the ledger snapshot")
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    if slot is not None and await session.scalar(select(ReserveEpoch.id).where(ReserveEpoch.slot == slot)):
        return None
    currencies = {code: info for code, info in (await ledger.currencies(session)).items() if info.kind != "fiat"}
    liabilities = await _liabilities(session, currencies)
    ledger_totals = await _ledger_totals(session, currencies)
    nonces = {user_id: new_nonce() for user_id in sorted({item.user_id for rows in liabilities.values()
                                                          for item in rows})}
    trees = {asset: liability_tree(asset, liabilities.get(asset, []), nonces) for asset in currencies}
    for asset, tree in trees.items():
        if tree.root.sum != ledger_totals.get(asset, 0):  # a bug, never a state of the books
            raise RuntimeError(f"{asset}: the tree sums to {tree.root.sum}, the ledger to {ledger_totals.get(asset, 0)}")

    addresses = await platform_addresses(session, settings)
    chains = [await chain_reserves(chain, addresses[chain.name]) for chain in settings.chains]

    epoch = ReserveEpoch(slot=slot, requested_by=actor)
    session.add(epoch)
    await session.flush()
    await session.refresh(epoch, ["created_at"])
    await _insert(session, ReserveNonce, [{"epoch_id": epoch.id, "user_id": user_id, "nonce": nonce}
                                          for user_id, nonce in nonces.items()])
    for asset, tree in trees.items():
        await _insert(session, ReserveNode, _node_rows(epoch.id, asset, tree))
    for held in chains:
        session.add(ReserveBlock(epoch_id=epoch.id, chain=held.chain, number=held.block.number, hash=held.block.hash))
        await _insert(session, ReserveHolding, [
            {"epoch_id": epoch.id, "chain": held.chain, "address": address, "asset": asset,
             "role": held.roles[address], "amount": amount}
            for (address, asset), amount in sorted(held.balances.items())])

    published = []
    for asset, info in currencies.items():
        carrying = [held for held, chain in zip(chains, settings.chains, strict=True) if asset in chain.assets]
        reserves = sum(amount for held in carrying for (_, held_asset), amount in held.balances.items()
                       if held_asset == asset)
        blocks = {held.chain: held.block.number for held in carrying}
        tree = trees[asset]
        session.add(ReserveAsset(epoch_id=epoch.id, asset=asset, root_hash=tree.root.hash, root_sum=tree.root.sum,
                                 liabilities=ledger_totals.get(asset, 0), reserves=reserves,
                                 customers=len(liabilities.get(asset, [])), depth=len(tree.levels) - 1,
                                 blocks=blocks))
        published.append(AssetReserves(info, tree.root, ledger_totals.get(asset, 0), reserves, blocks))
    await audit.append(session, AGGREGATE, str(epoch.id), "reserves.published", {
        "slot": slot,
        "assets": {item.asset.code: {"root_hash": item.root.hash, "root_sum": str(item.root.sum),
                                     "liabilities": str(item.liabilities), "reserves": str(item.reserves),
                                     "blocks": item.blocks} for item in published},
        "blocks": {held.chain: {"number": held.block.number, "hash": held.block.hash} for held in chains},
    }, actor=actor)
    await session.flush()
    EPOCHS.inc()
    log.info("proof of reserves: epoch %s published (%s)", epoch.id,
             ", ".join(f"{item.asset.code} ratio {item.ratio}" for item in published))
    return Epoch(epoch.id, epoch.created_at, published)


async def _liabilities(session: AsyncSession, currencies: Iterable[str]) -> dict[str, list[Liability]]:
    rows = await session.execute(
        select(LedgerAccount.currency, LedgerAccount.user_id, func.sum(LedgerAccount.balance).label("balance"))
        .where(LedgerAccount.owner_type == "user", LedgerAccount.currency.in_(list(currencies)))
        .group_by(LedgerAccount.currency, LedgerAccount.user_id)
        .order_by(LedgerAccount.currency, LedgerAccount.user_id))
    found: dict[str, list[Liability]] = defaultdict(list)
    for row in rows:
        found[row.currency].append(Liability(row.user_id, int(row.balance)))
    return found


async def _ledger_totals(session: AsyncSession, currencies: Iterable[str]) -> dict[str, int]:
    """The books' own sum of the customer accounts per currency: what the roots must equal."""
    rows = await session.execute(
        select(LedgerAccount.currency, func.sum(LedgerAccount.balance))
        .where(LedgerAccount.owner_type == "user", LedgerAccount.currency.in_(list(currencies)))
        .group_by(LedgerAccount.currency))
    return {currency: int(total) for currency, total in rows}


def _node_rows(epoch_id: int, asset: str, tree: merkle.Tree) -> list[dict[str, Any]]:
    rows = [{"epoch_id": epoch_id, "asset": asset, "level": 0, "position": position, "hash": node.hash,
             "sum": node.sum, "leaf_id": leaf.id, "user_id": leaf.owner}
            for position, (leaf, node) in enumerate(zip(tree.leaves, tree.levels[0], strict=True))]
    rows += [{"epoch_id": epoch_id, "asset": asset, "level": level, "position": position, "hash": node.hash,
              "sum": node.sum, "leaf_id": None, "user_id": None}
             for level, nodes in enumerate(tree.levels[1:], start=1) for position, node in enumerate(nodes)]
    return rows


async def _insert(session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), INSERT_CHUNK):
        await session.execute(insert(model), rows[start:start + INSERT_CHUNK])


# --- reading what was published ---------------------------------------------------------------

async def latest(session: AsyncSession) -> Epoch:
    """The newest epoch (by snapshot); ``NoEpoch`` before the first."""
    epoch = await _latest_row(session)
    rows = (await session.scalars(select(ReserveAsset).where(ReserveAsset.epoch_id == epoch.id)
                                  .order_by(ReserveAsset.asset))).all()
    infos = await ledger.currencies(session, [row.asset for row in rows]) if rows else {}
    return Epoch(epoch.id, epoch.created_at, [
        AssetReserves(infos[row.asset], merkle.Node(row.root_hash, row.root_sum), row.liabilities, row.reserves,
                      {chain: int(number) for chain, number in sorted(row.blocks.items())})
        for row in rows])


async def _latest_row(session: AsyncSession) -> ReserveEpoch:
    epoch = await session.scalar(select(ReserveEpoch).order_by(ReserveEpoch.created_at.desc(),
                                                                ReserveEpoch.id.desc()).limit(1))
    if epoch is None:
        raise NoEpoch()
    return epoch


@dataclass(frozen=True)
class Proof:
    epoch: int
    asset: str
    nonce: str
    leaf: merkle.Leaf
    path: list[merkle.Step]
    root: merkle.Node

    @property
    def leaf_hash(self) -> str:
        return merkle.leaf_hash(self.leaf.id, self.leaf.balance)


async def proof(session: AsyncSession, user_id: uuid.UUID, asset: str) -> Proof:
    """The customer's path in the latest epoch's tree of ``asset``; ``NotInProof`` when they had no account
    in it at the snapshot (or the asset is not in the proof)."""
    epoch = await _latest_row(session)
    root = await session.get(ReserveAsset, (epoch.id, asset))
    leaf = None if root is None else await session.scalar(select(ReserveNode).where(
        ReserveNode.epoch_id == epoch.id, ReserveNode.asset == asset, ReserveNode.user_id == user_id))
    nonce = await session.scalar(select(ReserveNonce.nonce).where(ReserveNonce.epoch_id == epoch.id,
                                                                  ReserveNonce.user_id == user_id))
    if root is None or leaf is None or nonce is None:
        raise NotInProof(details={"epoch": epoch.id, "asset": asset})
    wanted = merkle.path_positions(leaf.position, root.depth)
    siblings = {(node.level, node.position): node for node in await session.scalars(select(ReserveNode).where(
        ReserveNode.epoch_id == epoch.id, ReserveNode.asset == asset,
        tuple_(ReserveNode.level, ReserveNode.position).in_(wanted)))}
    path = [merkle.Step(siblings[key].hash, siblings[key].sum, merkle.side_at(leaf.position, key[0]))
            for key in wanted]
    assert leaf.leaf_id is not None
    return Proof(epoch.id, asset, nonce, merkle.Leaf(leaf.leaf_id, leaf.sum, user_id), path,
                 merkle.Node(root.root_hash, root.root_sum))
