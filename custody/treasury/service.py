"""Sweeps: which deposit addresses to sweep, and how, planned here; driven to the chain by ``pipeline``.

The scheduler sends ``treasury.find_sweeps`` every ``sweep_interval_seconds``. Per chain, under an
advisory lock (two runs never plan the same address twice):

1. candidates: each ``(deposit address, asset)`` with a credited deposit in a block after the one
   its last confirmed sweep read its balances at, whose address has no sweep in progress, and
   whose last failed sweep is older than ``sweep_retry_seconds``;
2. balances at the chain's confirmed height (``head - confirmations + 1``; on a "finalized" chain,
   not above the node's finalized block): what is swept has its confirmations, whatever arrived since;
3. per address, one sweep at a time, tokens first (their gas is the address's native coin, which a
   native sweep would take away), each only from the asset's minimum up (``sweep_minimums``):
   below it, it waits — dust is never swept at a loss:

   * the native coin: one transfer of the balance less ``gas_limit × max_fee_per_gas`` of that
     transfer, at today's quote; starts ``ready``;
   * a token: the whole balance; its gas ``withdrawal_gas_limit_token × max_fee_per_gas`` at today's
     quote is what the address must hold. What it holds already counts (an earlier top-up of a sweep
     that failed): a top-up is only ever the shortfall, so a failed sweep is never topped up twice.
     ``pending_topup`` when short, else ``ready``.

Quotes above the signer's fee caps plan nothing (the next run tries again, and the operator is told
by a log line). Customer balances never move: a sweep is where funds sit on chain, the treasury's
view; only the gas it burns is booked (``fees`` → ``network_fees``, ``pipeline``).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.db import advisory_lock
from core.settings import ChainSettings, Settings
from core.time import utcnow
from custody import ledger
from custody.addresses.models import DepositAddress
from custody.chains import ChainError, EvmChain, chain_for
from custody.chains.base import FeeQuote
from custody.chains.transactions import Fees
from custody.deposits.models import CREDITED, Deposit
from custody.hd import XpubError
from custody.treasury import metrics
from custody.treasury.models import Sweep
from custody.treasury.states import ACTIVE, CONFIRMED, FAILED, PENDING_TOPUP, READY
from custody.withdrawals import fee_caps
from custody.withdrawals.pipeline import hot_wallet

log = logging.getLogger(__name__)

AGGREGATE = "sweep"
DRIVE_SWEEP = jobs.name("treasury.drive_sweep")
# Addresses looked at per chain and run, newest deposits first; the rest wait for the next run.
MAX_CANDIDATES = 500


@dataclass(frozen=True)
class Candidate:
    address: str
    derivation_index: int
    asset: str


@dataclass(frozen=True)
class GasPlan:
    """The sweep transaction's fees, and the top-up its address needs first (0: none)."""

    fees: Fees
    topup: int


async def record(session: AsyncSession, sweep: Sweep, event: str, data: dict[str, Any], actor: str) -> None:
    """Every state change of a sweep appends its audit event in the same transaction."""
    await audit.append(session, AGGREGATE, sweep.id, f"sweep.{event}",
                       {"state": sweep.state, "chain": sweep.chain, "asset": sweep.asset, "address": sweep.address,
                        **data}, actor=actor)


def plan_gas(quote: FeeQuote, min_priority_fee: int, gas: int, balance: int) -> GasPlan:
    """The fees of a transaction of ``gas`` from an address holding ``balance`` wei, and its top-up.

    Today's quote (``Fees.quote``: twice the base fee plus the tip) when the address can pay it, or
    else what it holds when that still pays today's base fee and tip (gas it was topped up with for
    a sweep that failed: it is used, never topped up again); otherwise the shortfall is the top-up —
    exactly ``gas × max_fee_per_gas`` for an address holding nothing.
    """
    fees = Fees.quote(quote, min_priority_fee)
    need = gas * fees.max_fee_per_gas
    if balance >= need:
        return GasPlan(fees, 0)
    affordable = balance // gas
    if affordable >= quote.base_fee + fees.max_priority_fee_per_gas:
        return GasPlan(Fees(affordable, fees.max_priority_fee_per_gas), 0)
    return GasPlan(fees, need - balance)


async def minimums(session: AsyncSession, settings: Settings, chain: ChainSettings) -> dict[str, int]:
    """The chain's assets with a sweep minimum, in minor units (an asset without one is never swept)."""
    found = {}
    for asset in chain.assets:
        text = settings.sweep_minimums.get(asset)
        if text is not None:
            found[asset] = max(1, (await ledger.currency(session, asset)).parse(text, allow_zero=True))
    return found


async def candidates(session: AsyncSession, settings: Settings, chain: str, assets: list[str]) -> list[Candidate]:
    swept = (select(func.max(Sweep.balance_block)).where(
        Sweep.chain == Deposit.chain, Sweep.address == Deposit.to_address, Sweep.asset == Deposit.asset,
        Sweep.state == CONFIRMED).scalar_subquery())
    busy = exists().where(Sweep.chain == Deposit.chain, Sweep.address == Deposit.to_address, Sweep.state.in_(ACTIVE))
    failed_lately = exists().where(
        Sweep.chain == Deposit.chain, Sweep.address == Deposit.to_address, Sweep.asset == Deposit.asset,
        Sweep.state == FAILED, Sweep.finished_at > utcnow() - timedelta(seconds=settings.sweep_retry_seconds))
    rows = await session.execute(
        select(Deposit.to_address, DepositAddress.derivation_index, Deposit.asset)
        .join(DepositAddress, and_(DepositAddress.chain == Deposit.chain, DepositAddress.address == Deposit.to_address))
        .where(Deposit.chain == chain, Deposit.state == CREDITED, Deposit.asset.in_(assets), ~busy, ~failed_lately,
               Deposit.block_number > func.coalesce(swept, -1))
        .group_by(Deposit.to_address, DepositAddress.derivation_index, Deposit.asset)
        .order_by(func.max(Deposit.block_number).desc()).limit(MAX_CANDIDATES))
    return [Candidate(*row) for row in rows]


async def confirmed_height(chain_settings: ChainSettings, chain: EvmChain) -> int:
    """The highest block whose contents have the chain's confirmations (and finality)."""
    height = await chain.head() - chain_settings.confirmations + 1
    if chain_settings.finality == "finalized":
        height = min(height, (await chain.finalized()).number)
    return height


async def find_sweeps(session: AsyncSession, settings: Settings) -> list[Sweep]:
    """Plan the sweeps due on every configured chain; each is driven after commit."""
    created: list[Sweep] = []
    for chain_settings in settings.chains:
        await advisory_lock(session, f"treasury.find_sweeps:{chain_settings.name}")
        wanted = await minimums(session, settings, chain_settings)
        found = await candidates(session, settings, chain_settings.name, list(wanted)) if wanted else []
        if not found:
            continue  # nothing credited since the last sweeps: the node is not even asked
        try:
            async with chain_for(chain_settings) as chain:
                created += await find_on_chain(session, settings, chain_settings, chain, wanted, found)
        except (ChainError, XpubError) as problem:
            # Nothing of this chain was written (reads come first): the next run tries again.
            log.warning("sweeps on %s: not planned this time: %s", chain_settings.name, problem)
    for sweep in created:
        jobs.send_after_commit(session, DRIVE_SWEEP, str(sweep.id))
    return created


async def find_on_chain(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                        wanted: dict[str, int], found: list[Candidate]) -> list[Sweep]:
    """Plan one sweep per address of ``found`` whose balance reaches its asset's minimum (``wanted``)."""
    destination = hot_wallet(settings, chain_settings)
    height = await confirmed_height(chain_settings, chain)
    if height < 0:
        return []
    tokens = {asset: chain_settings.tokens[asset] for asset in wanted if asset != chain_settings.native}
    by_address: dict[tuple[str, int], list[str]] = defaultdict(list)
    for candidate in found:
        by_address[(candidate.address, candidate.derivation_index)].append(candidate.asset)
    balances = await chain.balances(sorted({address for address, _ in by_address}), list(tokens.values()), height)
    quote = await chain.fees()
    created = []
    for (address, index), assets in by_address.items():
        native_balance = balances.get((address, None), 0)
        # Tokens first: their gas is the address's native coin, which a native sweep would take.
        for asset in sorted(assets, key=lambda item: (item == chain_settings.native, item)):
            token = tokens.get(asset)
            held = balances.get((address, token), 0) if token else native_balance
            if held < wanted[asset]:
                continue  # below the minimum it waits: dust is never swept at a loss
            sweep = _plan(settings, chain_settings, quote, address, index, asset, token, held, native_balance,
                          destination, height)
            if sweep is not None:
                session.add(sweep)
                await session.flush()
                await record(session, sweep, "created", {
                    "derivation_index": index, "amount": str(sweep.amount), "hot_wallet": destination,
                    "balance_block": height, "gas_limit": sweep.gas_limit,
                    "max_fee_per_gas": str(sweep.max_fee_per_gas), "topup_amount": str(sweep.topup_amount)},
                    "treasury")
                metrics.count("created", sweep.chain, sweep.asset)
                created.append(sweep)
                break  # one sweep at a time per address: its nonce and its gas are shared
    return created


def _plan(settings: Settings, chain_settings: ChainSettings, quote: FeeQuote, address: str, index: int, asset: str,
          token: str | None, held: int, native_balance: int, destination: str, height: int) -> Sweep | None:
    tip = settings.withdrawal_min_priority_fee_wei
    if token is None:
        gas = settings.withdrawal_gas_limit_native
        fees = Fees.quote(quote, tip)
        amount, topup = held - gas * fees.max_fee_per_gas, 0
        if amount <= 0:
            return None  # its gas would eat it
    else:
        gas = settings.withdrawal_gas_limit_token
        plan = plan_gas(quote, tip, gas, native_balance)
        fees, amount, topup = plan.fees, held, plan.topup
        if topup and (breach := fee_caps.breach(settings, chain_settings.name,
                                                settings.withdrawal_gas_limit_native, fees)) is not None:
            log.warning("sweep of %s %s waits: its top-up's fees are above the caps: %s", address, asset, breach[1])
            return None
    if (breach := fee_caps.breach(settings, chain_settings.name, gas, fees)) is not None:
        log.warning("sweep of %s %s waits: fees above the caps: %s", address, asset, breach[1])
        return None
    return Sweep(id=uuid.uuid4(), chain=chain_settings.name, asset=asset, address=address, derivation_index=index,
                 hot_wallet=destination, amount=amount, balance_block=height, gas_limit=gas,
                 max_fee_per_gas=fees.max_fee_per_gas, max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
                 topup_amount=topup, state=PENDING_TOPUP if topup else READY, confirmations=0)
