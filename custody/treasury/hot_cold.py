"""Hot and cold: each chain's hot wallet keeps, per asset, between its floor and its ceiling.

The scheduler sends ``treasury.check_levels`` every ``treasury_check_seconds``. For every chain and
asset with levels (``treasury_hot_levels``: ``hot_floor``, ``hot_target``, ``hot_ceiling``) it reads
the hot wallet's balance at the head and records it (``treasury_hot_levels``, which the API's
`/metrics` exports), then:

- **above the ceiling**, the surplus down to the target goes to the chain's cold wallet
  (``ChainSettings.cold_wallet``, watch-only). What the hot wallet owes already is left in it: the
  amounts of withdrawals signed or on their way to the chain, and, for the native coin, the gas of the
  transfer itself. The transfer is a ``ColdTransfer``: ``pending`` → ``signing`` (the next nonce of the
  hot wallet from the sequence withdrawals use, ``custody.withdrawals.nonces``; today's fees within
  the signer's caps, ``custody.withdrawals.fee_caps``; the custody request key's authorization of the
  cold kind) → ``signed`` (the signer's verified reply, the very transaction asked for) →
  ``broadcast`` → ``confirmed`` (or ``failed``: mined but reverted). Its gas is a platform cost
  (``fees`` → ``network_fees``). The signer signs it only to the cold wallet of its own
  configuration (``signer_cold_wallets``); a refusal gives the nonce back (a filler takes it if later
  nonces wait behind it) and alerts;
- **below the floor**, a gauge, an ``ALERT`` log line and an audited refill request
  (``custody.treasury.refills``) for the cold custodian to sign offline.

One transfer and one refill at a time per chain and asset (unique indexes): the check does nothing
more for an asset while one is on its way. The same job also sends the tracking of every transfer
and refill in flight, so a lost message or a crash only delays them. Every step locks its row and
checks the state it expects: each job may run twice. Fee bumps of a stuck transfer are not built
(it is sent again every ``withdrawal_rebroadcast_blocks``).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Counter
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.errors import InvalidInput
from core.settings import (
    ChainSettings,
    HotWalletLevels,
    Settings,
    SettingsError,
    UnknownChain,
)
from core.sign_requests import (
    REFUSED_REPLY,
    SIGN_COLD_TRANSFER_ACTOR,
    SIGNED_REPLY,
    SIGNER_QUEUE,
    UnsignedTx,
    cold_transfer_authorization_message,
    request_digest,
)
from core.signing import b64url_encode
from core.time import utcnow
from custody import ledger
from custody.chains import ChainError, ChainRejected, EvmChain, chain_for
from custody.chains.transactions import Fees, SignedTxMismatch, check_signed, payment_tx
from custody.hd import XpubError
from custody.treasury import refills
from custody.treasury.hot_cold_models import (
    COLD_TRANSFER_ACTIVE,
    ColdTransfer,
    HotWalletLevel,
)
from custody.withdrawals import fee_caps, fillers, gas, replies
from custody.withdrawals.authorization import request_key
from custody.withdrawals.models import Withdrawal
from custody.withdrawals.nonces import assign_nonce, release_nonce
from custody.withdrawals.pipeline import hot_wallet
from custody.withdrawals.preflight import gas_limit

log = logging.getLogger(__name__)

AGGREGATE = "cold_transfer"
SIGN_COLD = jobs.external(SIGN_COLD_TRANSFER_ACTOR, queue=SIGNER_QUEUE)  # the isolated signer answers it
SIGN_COLD_TRANSFER = jobs.name("treasury.sign_cold_transfer")
BROADCAST_COLD_TRANSFER = jobs.name("treasury.broadcast_cold_transfer")
TRACK_COLD_TRANSFER = jobs.name("treasury.track_cold_transfer")
TRACK_REFILL = jobs.name("treasury.track_refill")
# Withdrawals whose amount has left, or is about to leave, the hot wallet: not surplus.
OWED_STATES = ("approved", "signing", "signed", "broadcast")
# Refusals that may be a forged or garbled copy of our request: the genuine one is answered on its own.
IGNORED_REFUSALS = frozenset({"invalid_authorization", "malformed_request"})
# Refusals saying something is signed for this transfer already: its nonce is not given back.
SIGNED_ALREADY = frozenset({"nonce_taken", "withdrawal_signed_elsewhere", "replacement_not_allowed",
                            "too_many_replacements"})

# The levels' gauges are the API's (`/metrics`, from ``treasury_hot_levels``): the one process scraped.
COLD_TRANSFERS = Counter("virtuoz_treasury_cold_transfers_total", "Hot → cold transfers, by event and chain.",
                         ["event", "chain"])


def authorize_cold_transfer(key: Ed25519PrivateKey, transfer_id: str, unsigned_tx: str) -> str:
    """base64url of the custody request key's signature over a hot → cold request (``core.sign_requests``)."""
    return b64url_encode(key.sign(cold_transfer_authorization_message(transfer_id, unsigned_tx)))


@dataclass(frozen=True)
class Level:
    chain: str
    asset: str
    hot_wallet: str
    balance: int
    floor: int
    target: int
    ceiling: int
    block: int

    @property
    def state(self) -> str:
        if self.balance < self.floor:
            return "below_floor"
        return "above_ceiling" if self.balance > self.ceiling else "ok"


# --- the periodic check --------------------------------------------------------------------------

async def check_levels(session: AsyncSession, settings: Settings) -> list[Level]:
    """The scheduler's entry point: track what is in flight, then compare every watched hot wallet with
    its levels. A chain whose node does not answer is logged and skipped; the next check tries again."""
    for transfer_id in await session.scalars(select(ColdTransfer.id).where(
            ColdTransfer.state.in_(COLD_TRANSFER_ACTIVE)).order_by(ColdTransfer.created_at)):
        jobs.send_after_commit(session, TRACK_COLD_TRANSFER, str(transfer_id))
    for refill_id in await refills.active_ids(session):
        jobs.send_after_commit(session, TRACK_REFILL, refill_id)
    levels: list[Level] = []
    for chain_settings in settings.chains:
        watched = settings.treasury_hot_levels.get(chain_settings.name)
        if not watched:
            continue
        try:
            levels += await _check_chain(session, settings, chain_settings, watched)
        except (ChainError, XpubError, SettingsError) as unavailable:
            log.warning("treasury check of %s skipped: %s", chain_settings.name, unavailable)
    return levels


async def _check_chain(session: AsyncSession, settings: Settings, chain_settings: ChainSettings,
                       watched: dict[str, HotWalletLevels]) -> list[Level]:
    hot = hot_wallet(settings, chain_settings)
    assets = {asset: levels for asset, levels in watched.items() if asset in chain_settings.assets}
    for asset in sorted(set(watched) - set(assets)):
        log.warning("treasury levels name %s on %s, which is not an asset of that chain", asset, chain_settings.name)
    found = []
    async with chain_for(chain_settings) as chain:
        head = await chain.head()
        balances = await chain.balances([hot], [chain_settings.tokens[asset] for asset in assets
                                                if asset in chain_settings.tokens], head)
        for asset, configured in assets.items():
            try:
                unit = await ledger.currency(session, asset)
            except InvalidInput:
                log.warning("treasury levels name %s on %s, which the ledger has no currency for", asset,
                            chain_settings.name)
                continue
            floor, target, ceiling = configured.minor(unit.decimals)
            level = Level(chain_settings.name, asset, hot, balances[(hot, chain_settings.tokens.get(asset))], floor,
                          target, ceiling, head)
            previous = await _record(session, level)
            if level.state == "above_ceiling":
                await _plan_cold_transfer(session, settings, chain_settings, chain, level)
            elif level.state == "below_floor":
                if previous != "below_floor":
                    log.error("ALERT: the %s hot wallet %s holds %s %s, below its floor %s: a refill from the cold "
                              "wallet is needed", level.chain, hot, unit.format(level.balance), asset,
                              unit.format(floor))
                await refills.request_if_needed(session, settings, chain_settings, chain, level.asset, hot,
                                                level.balance, target)
            found.append(level)
    return found


async def _record(session: AsyncSession, level: Level) -> str | None:
    """Upsert the level row; the state it had before (None: first check)."""
    previous = await session.scalar(select(HotWalletLevel.state).where(
        HotWalletLevel.chain == level.chain, HotWalletLevel.asset == level.asset))
    values = {"hot_wallet": level.hot_wallet, "balance": level.balance, "floor": level.floor, "target": level.target,
              "ceiling": level.ceiling, "state": level.state, "block_number": level.block, "checked_at": utcnow()}
    await session.execute(insert(HotWalletLevel).values(chain=level.chain, asset=level.asset, **values)
                          .on_conflict_do_update(index_elements=["chain", "asset"], set_=values))
    return previous


async def owed_by_hot_wallet(session: AsyncSession, chain: str, hot: str, asset: str) -> int:
    """What withdrawals of ``asset`` approved or on their way will still take from the hot wallet."""
    return int(await session.scalar(select(func.coalesce(func.sum(Withdrawal.amount), 0)).where(
        Withdrawal.chain == chain, Withdrawal.asset == asset, Withdrawal.state.in_(OWED_STATES),
        (Withdrawal.hot_wallet == hot) | Withdrawal.hot_wallet.is_(None))) or 0)


async def surplus(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                  level: Level) -> int:
    """What may go to the cold wallet now: the balance less what is owed, less the target, less (native) gas."""
    spare = level.balance - await owed_by_hot_wallet(session, level.chain, level.hot_wallet, level.asset) - level.target
    if level.asset == chain_settings.native:
        fees = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
        spare -= gas_limit(settings, None) * fees.max_fee_per_gas
    return spare


async def _plan_cold_transfer(session: AsyncSession, settings: Settings, chain_settings: ChainSettings,
                              chain: EvmChain, level: Level) -> ColdTransfer | None:
    cold = chain_settings.cold_wallet
    if cold is None:
        log.warning("the %s hot wallet holds %s minor units of %s, above its ceiling %s, and %s has no cold wallet "
                    "(VIRTUOZ_CHAINS cold_wallet): nothing moves", level.chain, level.balance, level.asset,
                    level.ceiling, level.chain)
        return None
    active = await session.scalar(select(ColdTransfer.id).where(
        ColdTransfer.chain == level.chain, ColdTransfer.asset == level.asset,
        ColdTransfer.state.in_(COLD_TRANSFER_ACTIVE)))
    if active is not None:
        return None  # its surplus is on its way: the next check after it sees what is left
    amount = await surplus(session, settings, chain_settings, chain, level)
    if amount <= 0:
        return None
    transfer = ColdTransfer(id=uuid.uuid4(), chain=level.chain, asset=level.asset, hot_wallet=level.hot_wallet,
                            cold_wallet=cold, amount=amount, state="pending")
    session.add(transfer)
    await session.flush()
    COLD_TRANSFERS.labels("requested", level.chain).inc()
    log.info("the %s hot wallet is above its ceiling for %s: %s minor units go to the cold wallet %s (transfer %s)",
             level.chain, level.asset, amount, cold, transfer.id)
    await _event(session, transfer, "requested", {
        "chain": level.chain, "asset": level.asset, "from": level.hot_wallet, "to": cold, "amount": str(amount),
        "hot_balance": str(level.balance), "hot_target": str(level.target), "hot_ceiling": str(level.ceiling),
        "block_number": level.block}, actor="treasury")
    jobs.send_after_commit(session, SIGN_COLD_TRANSFER, str(transfer.id))
    return transfer


async def _event(session: AsyncSession, transfer: ColdTransfer, state: str, data: dict[str, Any], *,
                 actor: str) -> None:
    await audit.append(session, AGGREGATE, transfer.id, f"{AGGREGATE}.{state}", data, actor=actor)


async def _locked(session: AsyncSession, transfer_id: object, *, skip_locked: bool = False) -> ColdTransfer | None:
    try:
        key = uuid.UUID(str(transfer_id))
    except ValueError:
        return None
    query = select(ColdTransfer).where(ColdTransfer.id == key).with_for_update(skip_locked=skip_locked)
    return await session.scalar(query.execution_options(populate_existing=True))


def _chain_settings(settings: Settings, transfer: ColdTransfer) -> ChainSettings | None:
    try:
        return settings.chain(transfer.chain)
    except UnknownChain:
        log.error("cold transfer %s is on chain %r, which this worker's settings do not configure", transfer.id,
                  transfer.chain)
        return None


# --- pending → signing ---------------------------------------------------------------------------

async def request_signature(session: AsyncSession, settings: Settings, transfer_id: str) -> None:
    """Fees, the amount again (withdrawals may have taken some since the check), the nonce, the request."""
    transfer = await _locked(session, transfer_id)
    if transfer is None or transfer.state != "pending":
        return
    if (chain_settings := _chain_settings(settings, transfer)) is None:
        return
    if (hot_wallet(settings, chain_settings), chain_settings.cold_wallet) != (transfer.hot_wallet,
                                                                              transfer.cold_wallet):
        await _drop(session, transfer, "wallets_changed")  # the settings moved on since the check
        return
    token = chain_settings.tokens.get(transfer.asset)
    gas = gas_limit(settings, token)
    async with chain_for(chain_settings) as chain:
        fees = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
        if (breach := fee_caps.breach(settings, transfer.chain, gas, fees)) is not None:
            await _alert(session, transfer, *breach)
            return  # the next check's tracking asks again
        head = await chain.head()
        balance = (await chain.balances([transfer.hot_wallet], [token] if token else [], head))[
            (transfer.hot_wallet, token)]
        configured = settings.treasury_hot_levels.get(transfer.chain, {}).get(transfer.asset)
        if configured is None:
            await _drop(session, transfer, "not_watched")  # its levels left the settings since the check
            return
        target = configured.minor((await ledger.currency(session, transfer.asset)).decimals)[1]
        level = Level(transfer.chain, transfer.asset, transfer.hot_wallet, balance, 0, target, 0, head)
        amount = min(transfer.amount, await surplus(session, settings, chain_settings, chain, level))
        if amount <= 0:
            await _drop(session, transfer, "no_surplus")
            return
        nonce = await assign_nonce(session, transfer.chain, transfer.hot_wallet,
                                   lambda: chain.mined_nonce(transfer.hot_wallet))
    unsigned = payment_tx(chain_id=chain_settings.chain_id, sender=transfer.hot_wallet, nonce=nonce,
                          destination=transfer.cold_wallet, amount=amount, token=token, gas=gas, fees=fees)
    text = unsigned.canonical()
    transfer.amount, transfer.nonce = amount, nonce
    transfer.unsigned_tx, transfer.request_digest = text, request_digest(text)
    transfer.authorization = authorize_cold_transfer(request_key(settings), str(transfer.id), text)
    transfer.max_fee_per_gas, transfer.max_priority_fee_per_gas = fees.max_fee_per_gas, fees.max_priority_fee_per_gas
    transfer.state, transfer.alert, transfer.sign_requested_at = "signing", None, utcnow()
    _send_sign_request(session, transfer)
    await _event(session, transfer, "signing", {"amount": str(amount), "nonce": nonce, "request_digest":
                                                transfer.request_digest, **fee_caps.fee_data(gas, fees)},
                 actor="treasury")


def _send_sign_request(session: AsyncSession, transfer: ColdTransfer) -> None:
    jobs.send_after_commit(session, SIGN_COLD, str(transfer.id), transfer.unsigned_tx, transfer.authorization)


async def _drop(session: AsyncSession, transfer: ColdTransfer, reason: str) -> None:
    transfer.state, transfer.reason = "dropped", reason
    await _event(session, transfer, "dropped", {"reason": reason}, actor="treasury")


async def _alert(session: AsyncSession, transfer: ColdTransfer, reason: str, message: str) -> None:
    if transfer.alert == reason:
        return
    transfer.alert = reason
    log.warning("cold transfer %s (%s on %s) waits: %s (%s)", transfer.id, transfer.asset, transfer.chain, message,
                reason)
    await _event(session, transfer, "fee_above_cap", {"reason": reason, "message": message}, actor="treasury")


# --- the signer's answers (the custody worker hears them: custody.withdrawals.requesters) ----------

class ColdTransfers:
    """The ``Requester`` of hot → cold transfers, installed by ``cli.registry``."""

    name = AGGREGATE

    async def owns(self, session: AsyncSession, request_id: str) -> bool:
        try:
            key = uuid.UUID(str(request_id))
        except ValueError:
            return False
        return await session.get(ColdTransfer, key) is not None

    async def holds_nonce_above(self, session: AsyncSession, chain: str, address: str, nonce: int) -> bool:
        held = await session.scalar(select(ColdTransfer.id).where(
            ColdTransfer.chain == chain, ColdTransfer.hot_wallet == address, ColdTransfer.nonce > nonce,
            ColdTransfer.state.in_(("signing", "signed", "broadcast", "confirmed", "failed"))).limit(1))
        return held is not None

    async def on_signed(self, session: AsyncSession, settings: Settings, request_id: str, digest: str, raw_tx: str,
                        tx_hash: str, signature: str | None) -> None:
        if not await replies.verified(session, settings, SIGNED_REPLY, request_id, digest, (raw_tx, tx_hash),
                                      signature):
            return
        transfer = await _locked(session, request_id)
        if transfer is None or transfer.request_digest != digest:
            log.warning("signer answered cold transfer %s for a request this worker never made", request_id)
            return
        if transfer.raw_tx is None:
            try:
                checked = check_signed(raw_tx, UnsignedTx.parse(transfer.unsigned_tx))
            except SignedTxMismatch as mismatch:
                log.error("ALERT: cold transfer %s: signed reply rejected: %s", transfer.id, mismatch)
                await _event(session, transfer, "signed_reply_rejected", {"reason": str(mismatch)}, actor="signer")
                return
            transfer.raw_tx, transfer.tx_hash = raw_tx, checked
            if transfer.state == "signing":
                transfer.state = "signed"
                COLD_TRANSFERS.labels("signed", transfer.chain).inc()
                await _event(session, transfer, "signed", {"tx_hash": checked, "nonce": transfer.nonce},
                             actor="signer")
        if transfer.state in ("signed", "broadcast"):
            jobs.send_after_commit(session, BROADCAST_COLD_TRANSFER, str(transfer.id))

    async def on_refused(self, session: AsyncSession, settings: Settings, request_id: str, digest: str, reason: str,
                         message: str, signature: str | None) -> None:
        if not await replies.verified(session, settings, REFUSED_REPLY, request_id, digest, (reason, message),
                                      signature):
            return  # the nonce and the state stay: the genuine answer comes on its own
        transfer = await _locked(session, request_id)
        if transfer is None or transfer.request_digest != digest:
            log.warning("signer refused cold transfer %s, a request this worker never made", request_id)
            return
        if reason in IGNORED_REFUSALS or transfer.state != "signing":
            return  # perhaps a forged copy; or answered already
        transfer.state, transfer.reason = "refused", str(reason)[:60]
        COLD_TRANSFERS.labels("refused", transfer.chain).inc()
        log.error("ALERT: the signer refused cold transfer %s (%s %s on %s to %s): %s (%s)", transfer.id,
                  transfer.amount, transfer.asset, transfer.chain, transfer.cold_wallet, reason, message)
        await _event(session, transfer, "refused", {"reason": reason, "message": message}, actor="signer")
        if reason not in SIGNED_ALREADY and transfer.nonce is not None:
            # Nothing is signed at its nonce: the next withdrawal takes it, or a filler at once if later
            # nonces are signed already and would wait behind it.
            await release_nonce(session, transfer.chain, transfer.hot_wallet, transfer.nonce)
            await session.flush()
            await fillers.fill_if_blocking(session, transfer.chain, transfer.hot_wallet, transfer.nonce)


COLD_TRANSFER_REQUESTER = ColdTransfers()


# --- signed → broadcast → confirmed --------------------------------------------------------------

async def broadcast(session: AsyncSession, settings: Settings, transfer_id: str) -> None:
    transfer = await _locked(session, transfer_id)
    if transfer is None or transfer.state not in ("signed", "broadcast") or transfer.raw_tx is None:
        return
    if (chain_settings := _chain_settings(settings, transfer)) is None:
        return
    async with chain_for(chain_settings) as chain:
        await _send(session, transfer, chain, await chain.head())


async def _send(session: AsyncSession, transfer: ColdTransfer, chain: EvmChain, head: int) -> None:
    try:
        await chain.broadcast(bytes.fromhex(transfer.raw_tx.removeprefix("0x")))  # type: ignore[union-attr]
    except ChainRejected as rejected:
        # Its nonce is signed: later withdrawals wait behind it until it is mined. Tried again at every
        # tracking; an operator is alerted once.
        if transfer.alert != "broadcast_rejected":
            transfer.alert = "broadcast_rejected"
            log.error("ALERT: cold transfer %s (nonce %s of %s): the node rejects it: %s", transfer.id,
                      transfer.nonce, transfer.hot_wallet, rejected.message)
            await _event(session, transfer, "broadcast_rejected", {"message": rejected.message[:300]},
                         actor="treasury")
        return
    transfer.sent_block, transfer.alert = head, None
    if transfer.state == "signed":
        transfer.state = "broadcast"
        COLD_TRANSFERS.labels("broadcast", transfer.chain).inc()
        await _event(session, transfer, "broadcast", {"tx_hash": transfer.tx_hash}, actor="treasury")


async def track(session: AsyncSession, settings: Settings, transfer_id: str) -> None:
    transfer = await _locked(session, transfer_id, skip_locked=True)  # busy: the next check will do
    if transfer is None or transfer.state not in COLD_TRANSFER_ACTIVE:
        return
    stale = utcnow() - timedelta(seconds=settings.withdrawal_resend_seconds)
    if transfer.state == "pending" and transfer.updated_at < stale:
        jobs.send_after_commit(session, SIGN_COLD_TRANSFER, str(transfer.id))
    elif transfer.state == "signing" and (transfer.sign_requested_at or stale) <= stale:
        _send_sign_request(session, transfer)  # the signer answers a repeat with the same signature
        transfer.sign_requested_at = utcnow()
    elif transfer.state in ("signed", "broadcast") and (chain_settings := _chain_settings(settings, transfer)):
        async with chain_for(chain_settings) as chain:
            await _follow(session, settings, chain_settings, chain, transfer)


async def _follow(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                  transfer: ColdTransfer) -> None:
    head = await chain.head()
    receipt = await chain.receipt(transfer.tx_hash) if transfer.tx_hash else None  # type: ignore[arg-type]
    if receipt is None:
        if transfer.state == "signed" or head - (transfer.sent_block or head) >= settings.withdrawal_rebroadcast_blocks:
            await _send(session, transfer, chain, head)  # never sent, or a node may have dropped it
        return
    transfer.block_number = receipt.block_number
    if head - receipt.block_number + 1 < chain_settings.confirmations:
        return
    transfer.gas_cost = receipt.gas_used * receipt.effective_gas_price
    transfer.state = "confirmed" if receipt.status == 1 else "failed"
    await gas.book(session, reference=f"{AGGREGATE}:{transfer.id}:gas", type="cold_transfer_gas",
                   currency=chain_settings.native, amount=transfer.gas_cost, reference_kind=AGGREGATE,
                   reference_id=str(transfer.id), tx_hash=transfer.tx_hash)
    COLD_TRANSFERS.labels(transfer.state, transfer.chain).inc()
    if transfer.state == "failed":
        log.error("ALERT: cold transfer %s was mined but reverted: %s", transfer.id, transfer.tx_hash)
    await _event(session, transfer, transfer.state, {"tx_hash": transfer.tx_hash, "block_number": receipt.block_number,
                                                     "gas_cost": str(transfer.gas_cost)}, actor="treasury")


async def levels(session: AsyncSession) -> list[HotWalletLevel]:
    return list(await session.scalars(select(HotWalletLevel).order_by(HotWalletLevel.chain, HotWalletLevel.asset)))
