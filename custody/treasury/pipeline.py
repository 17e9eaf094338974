"""Sweeps as the treasury worker drives them: the top-up, its confirmations, the sweep, its confirmations.

``drive`` locks the sweep (a busy one is skipped: whoever holds it is driving it), looks at its
state and its transactions, does the next thing and goes on while the state moves. Every step can
run twice and change nothing the second time; what goes to the signer leaves after the commit that
records it (``requests``), so a worker killed anywhere only delays a sweep:

- ``pending_topup``: no top-up in flight → the address's native balance at the head is read again
  and the shortfall of the sweep's gas at today's quote (``service.plan_gas``) is asked of the signer,
  from the hot wallet at its next nonce (the withdrawals' own sequence, ``custody.withdrawals.nonces``).
  Nothing is short any more → ``ready``. A top-up waiting for the signer is asked again after
  ``withdrawal_resend_seconds``; signed, it is broadcast → ``topup_sent``. A refused one (verified,
  ``replies``) gave its nonce back: a new one is asked for after ``sweep_retry_seconds``. A top-up is
  never asked for while another may still be mined: a new request follows only a verified refusal
  (nothing was signed) or a top-up mined and reverted (its value never arrived).
- ``topup_sent``: its receipt, to the chain's confirmations (its gas booked ``fees`` → ``network_fees``)
  → ``ready``; not mined, the highest-fee transaction is sent again every
  ``withdrawal_rebroadcast_blocks``, and after ``withdrawal_stuck_blocks`` replaced by the same top-up
  with higher fees at the same nonce (within the fee caps, as many times as withdrawals' bumps):
  one nonce, so at most one of them is ever mined.
- ``ready``: the address must hold the asset and the gas at the head (short of gas again →
  ``pending_topup``, for the shortfall only; the asset gone → ``failed``); the sweep transaction at the
  address's own next nonce (tracked like the hot wallet's) is asked of the signer → ``sweeping``.
- ``sweeping``: broadcast once signed, sent again every ``withdrawal_rebroadcast_blocks`` until mined
  (never bumped: the address holds the gas of these fees and no more), followed to the chain's
  confirmations → ``confirmed`` (or ``failed`` if it reverted); its gas is booked either way.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import ChainSettings, Settings, UnknownChain
from core.sign_requests import UnsignedTx
from core.sweep_requests import SWEEP, TOPUP
from core.time import utcnow
from custody.chains import ChainRejected, EvmChain, Receipt, chain_for
from custody.chains.transactions import Fees, payment_tx
from custody.treasury import metrics, requests
from custody.treasury.models import Sweep, SweepTransaction
from custody.treasury.service import plan_gas, record
from custody.treasury.states import (
    ACTIVE,
    FINAL,
    PENDING_TOPUP,
    READY,
    SWEEPING,
    TOPUP_SENT,
    transition,
)
from custody.withdrawals import fee_caps, gas
from custody.withdrawals.nonces import assign_nonce

log = logging.getLogger(__name__)

BROADCAST_REJECTED = "broadcast_rejected"
# Refusals saying something is signed under the request already: nothing is given back, an operator looks.
ALERT_REFUSALS = frozenset({"withdrawal_signed_elsewhere", "replacement_not_allowed"})
MAX_STEPS = 6  # states a sweep may pass in one run (it never loops: each step moves forward or stops)


async def locked(session: AsyncSession, sweep_id: object, *, skip_locked: bool = False) -> Sweep | None:
    try:
        key = uuid.UUID(str(sweep_id))
    except ValueError:
        log.warning("message about %r, which is not a sweep id", sweep_id)
        return None
    query = select(Sweep).where(Sweep.id == key).with_for_update(skip_locked=skip_locked)
    return await session.scalar(query.execution_options(populate_existing=True))


async def active_sweeps(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(Sweep.id).where(Sweep.state.in_(ACTIVE)).order_by(Sweep.created_at))
    return [str(row) for row in rows]


async def drive(session: AsyncSession, settings: Settings, sweep_id: str) -> None:
    sweep = await locked(session, sweep_id, skip_locked=True)  # busy: whoever holds it drives it
    if sweep is None or sweep.state in FINAL:
        return
    try:
        chain_settings = settings.chain(sweep.chain)
    except UnknownChain:
        log.error("sweep %s is on chain %r, which this worker's settings do not configure", sweep.id, sweep.chain)
        return
    async with chain_for(chain_settings) as chain:
        head = await chain.head()
        for _ in range(MAX_STEPS):
            before = sweep.state
            await STEPS[sweep.state](session, settings, chain_settings, chain, sweep, head)
            if sweep.state == before or sweep.state in FINAL:
                return


def _stale(settings: Settings, row: SweepTransaction) -> bool:
    return (row.sign_requested_at or utcnow()) <= utcnow() - timedelta(seconds=settings.withdrawal_resend_seconds)


async def _alert(session: AsyncSession, sweep: Sweep, reason: str, message: str) -> None:
    """Start waiting for ``reason`` (fees above the caps); alerted once per wait."""
    if sweep.alert == reason:
        return
    sweep.alert = reason
    metrics.SWEEP_FEE_ALERTS.labels(sweep.chain).inc()
    log.warning("sweep %s waits: %s (%s)", sweep.id, message, reason)
    await record(session, sweep, "fee_above_cap", {"reason": reason, "message": message}, "treasury")


# --- pending_topup ------------------------------------------------------------------------------

def live_topup(sweep: Sweep, rows: list[SweepTransaction]) -> list[SweepTransaction]:
    """The attempts of the sweep's top-up request still in flight (asked, signed, sent), or [] when none
    is: none was asked yet, or the last one was refused (nothing signed) or mined and reverted."""
    attempts = sorted((row for row in rows if row.request_id == sweep.topup_request_id), key=lambda row: row.attempt)
    if not attempts:
        return []
    first = attempts[0]
    if first.refusal not in (None, BROADCAST_REJECTED) and first.refusal not in ALERT_REFUSALS:
        return []
    if any(row.status == 0 for row in attempts):
        return []
    return attempts


async def _pending_topup(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                         sweep: Sweep, head: int) -> None:
    attempts = live_topup(sweep, await requests.of_sweep(session, sweep, TOPUP))
    if attempts:
        if attempts[0].refusal in ALERT_REFUSALS:
            return  # the signer says something is signed under it: an operator looks (replies alerted)
        signed = [row for row in attempts if row.raw_tx is not None]
        if not signed:
            if attempts[0].refusal is None and _stale(settings, attempts[0]):
                requests.resend(session, sweep, attempts[0])
            return
        if await _send(chain, signed[-1], head):
            sweep.state = transition(sweep.state, "send_topup")
            sweep.topup_tx_hash = signed[-1].tx_hash
            await session.flush()
            await record(session, sweep, "topup_sent", {"tx_hash": signed[-1].tx_hash, "nonce": signed[-1].nonce,
                                                        "amount": str(signed[-1].value)}, "treasury")
            metrics.count("topup_sent", sweep.chain, sweep.asset)
        return
    if sweep.retry_at is not None and utcnow() < sweep.retry_at:
        return
    await _request_topup(session, settings, chain_settings, chain, sweep, head)


async def _request_topup(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                         sweep: Sweep, head: int) -> None:
    balance = (await chain.balances([sweep.address], [], head))[(sweep.address, None)]
    plan = plan_gas(await chain.fees(), settings.withdrawal_min_priority_fee_wei, sweep.gas_limit, balance)
    for gas_limit in (sweep.gas_limit, settings.withdrawal_gas_limit_native):
        if (breach := fee_caps.breach(settings, sweep.chain, gas_limit, plan.fees)) is not None:
            await _alert(session, sweep, *breach)
            return
    sweep.alert, sweep.retry_at = None, None
    sweep.max_fee_per_gas = plan.fees.max_fee_per_gas
    sweep.max_priority_fee_per_gas = plan.fees.max_priority_fee_per_gas
    if plan.topup == 0:
        # An earlier top-up arrived after all, or the address was paid gas meanwhile: nothing to send.
        sweep.state = transition(sweep.state, "gas_present")
        await session.flush()
        await record(session, sweep, "gas_present", {"native_balance": str(balance),
                                                     "max_fee_per_gas": str(plan.fees.max_fee_per_gas)}, "treasury")
        return
    wallet = sweep.hot_wallet
    nonce = await assign_nonce(session, sweep.chain, wallet, lambda: chain.mined_nonce(wallet))
    unsigned = payment_tx(chain_id=chain_settings.chain_id, sender=wallet, nonce=nonce, destination=sweep.address,
                          amount=plan.topup, token=None, gas=settings.withdrawal_gas_limit_native, fees=plan.fees)
    row = await requests.new_transaction(session, settings, sweep, TOPUP, uuid.uuid4(), 1, unsigned, plan.topup, head)
    sweep.topup_amount, sweep.topup_request_id = plan.topup, row.request_id
    await session.flush()
    await record(session, sweep, "topup_requested", {
        "request_id": str(row.request_id), "nonce": nonce, "amount": str(plan.topup), "native_balance": str(balance),
        **fee_caps.fee_data(sweep.gas_limit, plan.fees)}, "treasury")


# --- topup_sent ---------------------------------------------------------------------------------

async def _topup_sent(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                      sweep: Sweep, head: int) -> None:
    attempts = live_topup(sweep, await requests.of_sweep(session, sweep, TOPUP))
    if not attempts:
        return
    mined = await _mined(chain, attempts)
    if mined is None:
        await _keep_sending(session, settings, chain, sweep, attempts, head)
        return
    attempt, receipt = mined
    sweep.topup_tx_hash = attempt.tx_hash
    if head - receipt.block_number + 1 < chain_settings.confirmations:
        return
    cost = await _settle(session, chain_settings, sweep, attempt, receipt, f"sweep:{sweep.id}:topup:"
                                                                          f"{attempt.request_id}:gas", "sweep_topup_gas")
    sweep.topup_gas_cost = (sweep.topup_gas_cost or 0) + cost
    data = {"tx_hash": attempt.tx_hash, "block_number": receipt.block_number, "gas_cost": str(cost)}
    if receipt.status == 1:
        sweep.state = transition(sweep.state, "topup_confirmed")
        await session.flush()
        await record(session, sweep, "topup_confirmed", data, "treasury")
        metrics.count("topup_confirmed", sweep.chain, sweep.asset)
    else:
        # Its value never arrived (only its gas was spent): the shortfall is asked for again.
        sweep.state = transition(sweep.state, "retry_topup")
        await session.flush()
        await record(session, sweep, "topup_reverted", data, "treasury")
        log.warning("sweep %s: top-up %s reverted; asking again", sweep.id, attempt.tx_hash)


async def _keep_sending(session: AsyncSession, settings: Settings, chain: EvmChain, sweep: Sweep,
                        attempts: list[SweepTransaction], head: int) -> None:
    """A top-up not mined yet: a bump signed meanwhile goes out, the rest is sent again now and then,
    and one not mined after the stuck window is replaced at its nonce with higher fees."""
    latest = attempts[-1]
    if latest.raw_tx is None:
        if latest.refusal is None and _stale(settings, latest):
            requests.resend(session, sweep, latest)  # a bump waiting for the signer
    elif latest.broadcast_at is None:
        await _send(chain, latest, head)
        return
    signed = [row for row in attempts if row.raw_tx is not None]
    last_sent = max(row.sent_block or row.broadcast_block or 0 for row in signed)
    if head - last_sent >= settings.withdrawal_rebroadcast_blocks:
        for row in sorted(signed, key=lambda item: item.max_fee_per_gas, reverse=True):
            if await _send(chain, row, head):
                break
    await _bump_if_stuck(session, settings, chain, sweep, attempts, head)


async def _bump_if_stuck(session: AsyncSession, settings: Settings, chain: EvmChain, sweep: Sweep,
                         attempts: list[SweepTransaction], head: int) -> None:
    latest = attempts[-1]
    if latest.raw_tx is None and latest.refusal is None:
        return  # the signer has not answered the last bump yet
    since = latest.broadcast_block if latest.raw_tx is not None else latest.requested_block
    if since is None or head - since < settings.withdrawal_stuck_blocks:
        return
    if await chain.mined_nonce(latest.sender) < latest.nonce:
        return  # an earlier nonce of the hot wallet is not mined yet: its own tracker bumps it
    if len(attempts) - 1 >= fee_caps.bumps_allowed(settings, sweep.chain):
        await _alert(session, sweep, fee_caps.BUMPS_EXHAUSTED, f"top-up not mined after {len(attempts) - 1} fee bumps")
        return
    previous = Fees(max(row.max_fee_per_gas for row in attempts), max(row.max_priority_fee_per_gas for row in attempts))
    today = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
    bumped = previous.bumped(settings.withdrawal_fee_bump_percent, floor=today)
    first = UnsignedTx.parse(attempts[0].unsigned_tx)
    if (breach := fee_caps.breach(settings, sweep.chain, first.gas, bumped)) is not None:
        await _alert(session, sweep, *breach)
        return
    unsigned = replace(first, max_fee_per_gas=bumped.max_fee_per_gas,
                       max_priority_fee_per_gas=bumped.max_priority_fee_per_gas)
    row = await requests.new_transaction(session, settings, sweep, TOPUP, attempts[0].request_id, latest.attempt + 1,
                                         unsigned, attempts[0].value, head)
    await record(session, sweep, "topup_fee_bump_requested", {"request_id": str(row.request_id),
                                                              "attempt": row.attempt, "stuck_since_block": since,
                                                              "max_fee_per_gas": str(bumped.max_fee_per_gas)},
                 "treasury")


# --- ready --------------------------------------------------------------------------------------

async def _ready(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                 sweep: Sweep, head: int) -> None:
    token = chain_settings.tokens.get(sweep.asset) if sweep.asset != chain_settings.native else None
    held = await chain.balances([sweep.address], [token] if token else [], head)
    native, gas_cost = held[(sweep.address, None)], sweep.gas_limit * sweep.max_fee_per_gas
    if (held[(sweep.address, token)] if token else native - gas_cost) < sweep.amount:
        await _fail(session, sweep, "balance_changed", f"the address holds less than {sweep.amount} now", "treasury")
        return
    if native < gas_cost:
        # Its gas was spent since (a sweep of it that reverted): top it up again, the shortfall only.
        sweep.state = transition(sweep.state, "need_topup")
        await session.flush()
        await record(session, sweep, "short_of_gas", {"native_balance": str(native), "needed": str(gas_cost)},
                     "treasury")
        return
    fees = Fees(sweep.max_fee_per_gas, sweep.max_priority_fee_per_gas)
    if (breach := fee_caps.breach(settings, sweep.chain, sweep.gas_limit, fees)) is not None:
        await _alert(session, sweep, *breach)  # the caps were lowered since it was planned
        return
    address = sweep.address
    nonce = await assign_nonce(session, sweep.chain, address, lambda: chain.mined_nonce(address))
    unsigned = payment_tx(chain_id=chain_settings.chain_id, sender=address, nonce=nonce, destination=sweep.hot_wallet,
                          amount=sweep.amount, token=token, gas=sweep.gas_limit, fees=fees)
    await requests.new_transaction(session, settings, sweep, SWEEP, sweep.id, 1, unsigned, sweep.amount, head)
    sweep.state, sweep.alert = transition(sweep.state, "send_sweep"), None
    await session.flush()
    await record(session, sweep, "sweep_requested", {"nonce": nonce, "amount": str(sweep.amount),
                                                     **fee_caps.fee_data(sweep.gas_limit, fees)}, "treasury")


# --- sweeping -----------------------------------------------------------------------------------

async def _sweeping(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                    sweep: Sweep, head: int) -> None:
    rows = await requests.of_sweep(session, sweep, SWEEP)
    if not rows:
        return
    row = rows[-1]
    if row.raw_tx is None:
        if row.refusal is None and _stale(settings, row):
            requests.resend(session, sweep, row)
        return
    if row.broadcast_at is None:
        if await _send(chain, row, head):
            sweep.sweep_tx_hash = row.tx_hash
            await record(session, sweep, "sweep_broadcast", {"tx_hash": row.tx_hash, "nonce": row.nonce}, "treasury")
            metrics.count("sent", sweep.chain, sweep.asset)
        return
    receipt = await chain.receipt(row.tx_hash)  # type: ignore[arg-type]
    if receipt is None:
        if head - (row.sent_block or row.broadcast_block or head) >= settings.withdrawal_rebroadcast_blocks:
            await _send(chain, row, head)  # a node may have dropped it
        return
    sweep.block_number, sweep.confirmations = receipt.block_number, max(head - receipt.block_number + 1, 0)
    if sweep.confirmations < chain_settings.confirmations:
        return
    sweep.sweep_gas_cost = await _settle(session, chain_settings, sweep, row, receipt, f"sweep:{sweep.id}:gas",
                                         "sweep_gas")
    data = {"tx_hash": row.tx_hash, "block_number": receipt.block_number, "confirmations": sweep.confirmations,
            "gas_cost": str(sweep.sweep_gas_cost)}
    if receipt.status == 1:
        sweep.state, sweep.finished_at = transition(sweep.state, "confirm"), utcnow()
        await session.flush()
        await record(session, sweep, "confirmed", data, "treasury")
        metrics.count("confirmed", sweep.chain, sweep.asset)
    else:
        await _fail(session, sweep, "reverted", "the sweep transaction was mined but reverted", "treasury", data)


# --- shared -------------------------------------------------------------------------------------

async def _fail(session: AsyncSession, sweep: Sweep, reason: str, message: str, actor: str,
                data: dict[str, object] | None = None) -> None:
    sweep.state = transition(sweep.state, "fail")
    sweep.failure_reason, sweep.finished_at = reason[:60], utcnow()
    await session.flush()
    await record(session, sweep, "failed", {"reason": reason, "message": message, **(data or {})}, actor)
    metrics.count("failed", sweep.chain, sweep.asset)
    log.warning("sweep %s failed: %s (%s)", sweep.id, reason, message)


async def _send(chain: EvmChain, row: SweepTransaction, head: int) -> bool:
    """Broadcast ``row`` (again); False when the node refuses it now (tried again later)."""
    try:
        await chain.broadcast(bytes.fromhex(row.raw_tx.removeprefix("0x")))  # type: ignore[union-attr]
    except ChainRejected as rejected:
        log.warning("sweep transaction %s (%s, nonce %s) rejected by the node at block %s: %s", row.tx_hash, row.kind,
                    row.nonce, head, rejected.message)
        if row.refusal is None:
            row.refusal = BROADCAST_REJECTED
        return False
    if row.refusal == BROADCAST_REJECTED:
        row.refusal = None
    if row.broadcast_at is None:
        row.broadcast_at, row.broadcast_block = utcnow(), head
    row.sent_block = head
    return True


async def _mined(chain: EvmChain, attempts: list[SweepTransaction]) -> tuple[SweepTransaction, Receipt] | None:
    """The one transaction mined at the request's nonce, if any (its attempts share the nonce)."""
    for row in attempts:
        if row.tx_hash is not None and (receipt := await chain.receipt(row.tx_hash)) is not None:
            return row, receipt
    return None


async def _settle(session: AsyncSession, chain_settings: ChainSettings, sweep: Sweep, row: SweepTransaction,
                  receipt: Receipt, reference: str, ledger_type: str) -> int:
    """Record the receipt on ``row`` and book its gas (a platform cost) once, whatever the outcome."""
    cost = receipt.gas_used * receipt.effective_gas_price
    row.block_number, row.status, row.gas_cost = receipt.block_number, receipt.status, cost
    await gas.book(session, reference=reference, type=ledger_type, currency=chain_settings.native, amount=cost,
                   reference_kind="sweep", reference_id=str(sweep.id), tx_hash=row.tx_hash)
    return cost


STEPS = {PENDING_TOPUP: _pending_topup, TOPUP_SENT: _topup_sent, READY: _ready, SWEEPING: _sweeping}
