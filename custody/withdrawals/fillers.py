"""Fillers: a nonce given back by a refused withdrawal while later nonces are already signed is filled at once.

A node mines a wallet's transactions in nonce order: with nothing at nonce 7, the withdrawals signed
at 8, 9… wait forever (no fee bump helps them). Usually the next withdrawal takes a released nonce
first; but when later nonces are held, the released one is taken by a *filler* instead — a 0-value
transfer of the hot wallet to itself, no data, 21 000 gas, today's fees within the signer's caps.
The signer signs one such self-transfer per nonce (``core.sign_requests``); its request carries the
filler's own id, never a withdrawal's. Its gas is a platform cost (``fees`` → ``network_fees``).

``pending`` (the nonce is the filler's; fees not quoted yet) → ``signing`` → ``signed`` →
``broadcast`` → ``mined``. The signer's refusal (``refused``) gives the nonce back and alerts; the
tracker makes a new filler for a blocking gap after ``REFILL_AFTER``. Each step locks the row and
checks the state it expects, so every job can run twice.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.settings import ChainSettings, Settings, UnknownChain
from core.sign_requests import UnsignedTx, request_digest
from core.time import utcnow
from custody.chains import Chain, ChainRejected, chain_for
from custody.chains.transactions import Fees, SignedTxMismatch, check_signed
from custody.withdrawals import attempts as sign_requests
from custody.withdrawals import fee_caps, gas, metrics, requesters
from custody.withdrawals.authorization import authorize, request_key
from custody.withdrawals.models import NonceFiller, ReleasedNonce, Withdrawal
from custody.withdrawals.nonces import release_nonce, take_released

log = logging.getLogger(__name__)

SIGN_FILLER = jobs.name("custody.sign_filler")
BROADCAST_FILLER = jobs.name("custody.broadcast_filler")
ACTIVE = ("pending", "signing", "signed", "broadcast")
# After the signer refused a filler (its fee budget spent, say), a new one is tried this much later.
REFILL_AFTER = timedelta(minutes=5)
# Refusals that may be a forged or garbled copy of our request: the genuine one is answered on its own.
IGNORED_REFUSALS = frozenset({"invalid_authorization", "malformed_request"})


# --- taking a nonce ------------------------------------------------------------------------------

async def fill_if_blocking(session: AsyncSession, chain: str, address: str, nonce: int) -> NonceFiller | None:
    """``nonce`` of ``address`` was just released: if a later nonce is held, a filler takes it now."""
    if not await _later_nonce_held(session, chain, address, nonce):
        return None  # the next withdrawal takes it; nothing waits behind it
    if not await take_released(session, chain, address, nonce):
        return None  # a withdrawal took it meanwhile
    filler = NonceFiller(id=uuid.uuid4(), chain=chain, address=address, nonce=nonce, state="pending")
    session.add(filler)
    await session.flush()
    jobs.send_after_commit(session, SIGN_FILLER, str(filler.id))
    metrics.NONCE_FILLERS.labels("created", chain).inc()
    log.warning("nonce %s of %s on %s given back below signed ones: filler %s takes it", nonce, address, chain,
                filler.id)
    await audit.append(session, "nonce_filler", filler.id, "nonce_filler.created",
                       {"chain": chain, "address": address, "nonce": nonce}, actor="custody")
    return filler


async def fill_gaps(session: AsyncSession) -> list[NonceFiller]:
    """The tracker's safety net: released nonces below held ones that no filler took (a lost message)."""
    made = []
    recent = utcnow() - REFILL_AFTER
    for released in list(await session.scalars(select(ReleasedNonce).order_by(ReleasedNonce.nonce))):
        refused_lately = await session.scalar(select(exists().where(
            NonceFiller.chain == released.chain, NonceFiller.address == released.address,
            NonceFiller.nonce == released.nonce, NonceFiller.state == "refused", NonceFiller.updated_at > recent)))
        if refused_lately:
            continue
        filler = await fill_if_blocking(session, released.chain, released.address, released.nonce)
        if filler is not None:
            made.append(filler)
    return made


async def _later_nonce_held(session: AsyncSession, chain: str, address: str, nonce: int) -> bool:
    withdrawal = exists().where(Withdrawal.chain == chain, Withdrawal.hot_wallet == address,
                                Withdrawal.nonce > nonce, Withdrawal.nonce_released.is_(False))
    filler = exists().where(NonceFiller.chain == chain, NonceFiller.address == address, NonceFiller.nonce > nonce,
                            NonceFiller.state != "refused")
    if await session.scalar(select(withdrawal | filler)):
        return True
    # The hot wallet's nonces are shared with other custody domains' requests (hot → cold transfers).
    return await requesters.nonce_held_above(session, chain, address, nonce)


async def active_fillers(session: AsyncSession) -> list[str]:
    return [str(row) for row in await session.scalars(
        select(NonceFiller.id).where(NonceFiller.state.in_(ACTIVE)).order_by(NonceFiller.created_at))]


async def _locked(session: AsyncSession, filler_id: str, *, skip_locked: bool = False) -> NonceFiller | None:
    try:
        key = uuid.UUID(filler_id)
    except (ValueError, TypeError, AttributeError):
        return None
    query = select(NonceFiller).where(NonceFiller.id == key).with_for_update(skip_locked=skip_locked)
    return await session.scalar(query.execution_options(populate_existing=True))


def _chain_settings(settings: Settings, filler: NonceFiller) -> ChainSettings | None:
    try:
        return settings.chain(filler.chain)
    except UnknownChain:
        log.error("filler %s is on chain %r, which this worker's settings do not configure", filler.id, filler.chain)
        return None


# --- pending → signing ---------------------------------------------------------------------------

async def request_signature(session: AsyncSession, settings: Settings, filler_id: str) -> None:
    filler = await _locked(session, filler_id)
    if filler is None or filler.state != "pending" or (chain_settings := _chain_settings(settings, filler)) is None:
        return
    gas_limit = settings.withdrawal_gas_limit_native
    async with chain_for(chain_settings) as chain:
        fees = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
    if (breach := fee_caps.breach(settings, filler.chain, gas_limit, fees)) is not None:
        await _alert(session, filler, *breach)
        return  # the tracker asks again
    unsigned = UnsignedTx(chain_id=chain_settings.chain_id, sender=filler.address, nonce=filler.nonce,
                          to=filler.address, value=0, data="0x", gas=gas_limit, max_fee_per_gas=fees.max_fee_per_gas,
                          max_priority_fee_per_gas=fees.max_priority_fee_per_gas)
    text = unsigned.canonical()
    filler.unsigned_tx, filler.request_digest = text, request_digest(text)
    filler.authorization = authorize(request_key(settings), str(filler.id), text)
    filler.max_fee_per_gas, filler.max_priority_fee_per_gas = fees.max_fee_per_gas, fees.max_priority_fee_per_gas
    filler.state, filler.alert, filler.sign_requested_at = "signing", None, utcnow()
    sign_requests.send_sign_request(session, str(filler.id), text, filler.authorization)
    await audit.append(session, "nonce_filler", filler.id, "nonce_filler.signing",
                       {"nonce": filler.nonce, **fee_caps.fee_data(gas_limit, fees)}, actor="custody")


async def _alert(session: AsyncSession, filler: NonceFiller, reason: str, message: str) -> None:
    if filler.alert == reason:
        return
    filler.alert = reason
    metrics.FEE_ALERTS.labels(reason, filler.chain).inc()
    log.warning("filler %s (nonce %s on %s) waits: %s (%s)", filler.id, filler.nonce, filler.chain, message, reason)
    await audit.append(session, "nonce_filler", filler.id, "nonce_filler.fee_above_cap",
                       {"reason": reason, "message": message}, actor="custody")


# --- the signer's answers (routed here by the withdrawal pipeline: the id is not a withdrawal's) -----

async def on_signed(session: AsyncSession, filler_id: str, digest: str, raw_tx: str) -> bool:
    """False when ``filler_id`` names no filler (the caller tries what else it may name)."""
    filler = await _locked(session, filler_id)
    if filler is None:
        return False
    if filler.request_digest != digest:
        log.warning("signer answered filler %s for a request this worker never made (digest %s)", filler_id, digest)
        return True
    if filler.raw_tx is None:
        try:
            filler.tx_hash = check_signed(raw_tx, UnsignedTx.parse(filler.unsigned_tx))  # type: ignore[arg-type]
        except SignedTxMismatch as mismatch:
            metrics.SIGNED_REPLIES_REJECTED.inc()
            log.error("ALERT: filler %s: signed reply rejected: %s", filler.id, mismatch)
            await audit.append(session, "nonce_filler", filler.id, "nonce_filler.signed_reply_rejected",
                               {"reason": str(mismatch)}, actor="signer")
            return True
        filler.raw_tx = raw_tx
        if filler.state == "signing":
            filler.state = "signed"
    if filler.state in ("signed", "broadcast"):
        jobs.send_after_commit(session, BROADCAST_FILLER, str(filler.id))
    return True


async def on_refused(session: AsyncSession, filler_id: str, digest: str, reason: str, message: str) -> bool:
    """False when ``filler_id`` names no filler (the caller tries what else it may name)."""
    filler = await _locked(session, filler_id)
    if filler is None:
        return False
    if filler.request_digest != digest:
        log.warning("signer refused filler %s, a request this worker never made (digest %s)", filler_id, digest)
        return True
    if reason in IGNORED_REFUSALS or filler.state != "signing":
        return True  # perhaps a forged copy; or answered already
    filler.state, filler.refusal = "refused", str(reason)[:60]
    if reason != "nonce_taken":
        # Nothing was signed at the nonce for it: the nonce is given back (the next withdrawal, or a
        # new filler after REFILL_AFTER, takes it).
        await release_nonce(session, filler.chain, filler.address, filler.nonce)
    metrics.NONCE_FILLERS.labels("refused", filler.chain).inc()
    log.error("ALERT: the signer refused filler %s (nonce %s on %s): %s (%s); later withdrawals wait behind it",
              filler.id, filler.nonce, filler.chain, reason, message)
    await audit.append(session, "nonce_filler", filler.id, "nonce_filler.refused",
                       {"reason": reason, "message": message}, actor="signer")
    return True


# --- signed → broadcast → mined ------------------------------------------------------------------

async def broadcast(session: AsyncSession, settings: Settings, filler_id: str) -> None:
    filler = await _locked(session, filler_id)
    if filler is None or filler.state not in ("signed", "broadcast") or filler.raw_tx is None:
        return
    if (chain_settings := _chain_settings(settings, filler)) is None:
        return
    async with chain_for(chain_settings) as chain:
        head = await chain.head()
        await _send(chain, filler, head)
    if filler.state == "signed":
        filler.state = "broadcast"
        metrics.NONCE_FILLERS.labels("broadcast", filler.chain).inc()
        await audit.append(session, "nonce_filler", filler.id, "nonce_filler.broadcast",
                           {"tx_hash": filler.tx_hash, "nonce": filler.nonce}, actor="custody")


async def _send(chain: Chain, filler: NonceFiller, head: int) -> None:
    try:
        await chain.broadcast(bytes.fromhex(filler.raw_tx.removeprefix("0x")))  # type: ignore[union-attr]
    except ChainRejected as rejected:
        if filler.state == "signed":
            raise  # the job fails and is retried; the tracker drives it again
        log.warning("filler %s: the node rejected it again: %s", filler.id, rejected.message)
    filler.sent_block = head


async def track(session: AsyncSession, settings: Settings, filler_id: str) -> None:
    filler = await _locked(session, filler_id, skip_locked=True)  # busy: the next tick will do
    if filler is None or filler.state not in ACTIVE:
        return
    stale = utcnow() - timedelta(seconds=settings.withdrawal_resend_seconds)
    if filler.state == "pending" and filler.updated_at < stale:
        jobs.send_after_commit(session, SIGN_FILLER, str(filler.id))
    elif filler.state == "signing" and (filler.sign_requested_at or stale) <= stale:
        sign_requests.send_sign_request(session, str(filler.id), filler.unsigned_tx,  # type: ignore[arg-type]
                                        filler.authorization)  # type: ignore[arg-type]
        filler.sign_requested_at = utcnow()
    elif filler.state == "signed":
        jobs.send_after_commit(session, BROADCAST_FILLER, str(filler.id))
    elif filler.state == "broadcast" and (chain_settings := _chain_settings(settings, filler)) is not None:
        async with chain_for(chain_settings) as chain:
            await _follow(session, settings, chain_settings, chain, filler)


async def _follow(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: Chain,
                  filler: NonceFiller) -> None:
    head = await chain.head()
    receipt = await chain.receipt(filler.tx_hash)  # type: ignore[arg-type]
    if receipt is None:
        if head - (filler.sent_block or head) >= settings.withdrawal_rebroadcast_blocks:
            await _send(chain, filler, head)  # a node may have dropped it
        return
    filler.block_number = receipt.block_number
    if head - receipt.block_number + 1 < chain_settings.confirmations:
        return
    filler.gas_cost, filler.state = receipt.gas_used * receipt.effective_gas_price, "mined"
    await gas.book(session, reference=f"filler:{filler.id}:gas", type="nonce_filler_gas",
                   currency=chain_settings.native, amount=filler.gas_cost, reference_kind="nonce_filler",
                   reference_id=str(filler.id), tx_hash=filler.tx_hash)
    metrics.NONCE_FILLERS.labels("mined", filler.chain).inc()
    await audit.append(session, "nonce_filler", filler.id, "nonce_filler.mined",
                       {"tx_hash": filler.tx_hash, "block_number": receipt.block_number,
                        "gas_cost": str(filler.gas_cost)}, actor="custody")
