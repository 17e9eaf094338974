"""Withdrawals as the custody worker drives them: nonce, authorization, broadcast, receipts, fee bumps.

Each step locks the withdrawal row, checks the state it expects (anything else: a redelivered or
stale message, nothing to do), changes it, and sends what follows only after its commit — so
every step can run twice and change nothing the second time.

- ``request_signature`` (approved → signing): today's fees (``eth_feeHistory``), the next nonce
  from the wallet's locked row, the EIP-1559 transaction built by ``custody.chains``, the custody
  request key's Ed25519 authorization over it; the sign request goes to the signer after commit.
- ``on_signed`` (signing → signed): the reply must be the requested transaction, signed by the
  hot wallet; then ``broadcast`` (signed → broadcast).
- ``on_refused`` (signing → failed): the hold is voided and the nonce given back — only when the
  signer's answer guarantees nothing was signed for the withdrawal (see ``VOIDING_REFUSALS``).
- ``track`` (periodic): resends unanswered sign requests, re-drives broadcasts, follows receipts to
  the chain's confirmations (confirmed: the hold is posted, amount to ``chain_withdrawals`` and fee
  to ``fees``; reverted: failed, hold voided) and replaces a transaction not mined after
  ``withdrawal_stuck_blocks`` blocks by the same payment at the same nonce with higher fees.
  The gas of the mined transaction is a platform cost: ``fees`` → ``network_fees`` in the native coin.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.settings import ChainSettings, Settings, UnknownChain
from core.sign_requests import SIGN_ACTOR, SIGNER_QUEUE, UnsignedTx, request_digest
from core.time import utcnow
from custody import ledger
from custody.chains import ChainRejected, EvmChain, chain_for
from custody.chains.transactions import Fees, SignedTxMismatch, check_signed, payment_tx
from custody.hd import hot_wallet_address, load_xpubs
from custody.ledger import AccountRef
from custody.withdrawals import metrics
from custody.withdrawals.authorization import authorize, request_key
from custody.withdrawals.models import Withdrawal, WithdrawalAttempt
from custody.withdrawals.nonces import assign_nonce, release_nonce
from custody.withdrawals.service import SIGN_WITHDRAWAL, record_step
from custody.withdrawals.states import transition
from notifications.emails import product_email

log = logging.getLogger(__name__)

SIGN = jobs.external(SIGN_ACTOR, queue=SIGNER_QUEUE)  # the isolated signer answers it
BROADCAST_WITHDRAWAL = jobs.name("custody.broadcast_withdrawal")

CHAIN_WITHDRAWALS, NETWORK_FEES = "chain_withdrawals", "network_fees"
MAX_ATTEMPTS = 6  # the first transaction and five fee bumps; then operators look at it
# Refusals that may be a forged or garbled copy of our request: the genuine request is still
# answered on its own, so these change nothing here (they are logged and counted).
IGNORED_REFUSALS = frozenset({"invalid_authorization", "malformed_request"})
# Refusals saying a transaction for this withdrawal exists already: never void that hold.
ALERT_REFUSALS = frozenset({"withdrawal_signed_elsewhere", "replacement_not_allowed"})


# --- helpers ------------------------------------------------------------------------------------

def _chain_settings(settings: Settings, name: str) -> ChainSettings:
    try:
        return settings.chain(name)
    except UnknownChain:
        raise RuntimeError(f"withdrawal on chain {name!r}, which this worker's settings do not configure") from None


@lru_cache(maxsize=64)
def _hot_wallet(xpub: str) -> str:
    return hot_wallet_address(xpub)


def hot_wallet(settings: Settings, chain: ChainSettings) -> str:
    xpubs = load_xpubs(settings.xpub_file)  # type: ignore[arg-type]
    if chain.name not in xpubs:
        raise RuntimeError(f"{settings.xpub_file} has no xpub for chain {chain.name!r}")
    return _hot_wallet(xpubs[chain.name].xpub)


async def _locked(session: AsyncSession, withdrawal_id: str, *, skip_locked: bool = False) -> Withdrawal | None:
    try:
        key = uuid.UUID(withdrawal_id)
    except (ValueError, TypeError, AttributeError):
        log.warning("message about %r, which is not a withdrawal id", withdrawal_id)
        return None
    query = select(Withdrawal).where(Withdrawal.id == key).with_for_update(skip_locked=skip_locked)
    return await session.scalar(query.execution_options(populate_existing=True))


async def _attempts(session: AsyncSession, withdrawal: Withdrawal) -> list[WithdrawalAttempt]:
    return list(await session.scalars(select(WithdrawalAttempt).where(WithdrawalAttempt.withdrawal_id == withdrawal.id)
                                      .order_by(WithdrawalAttempt.attempt)))


def _send_sign_request(session: AsyncSession, attempt: WithdrawalAttempt) -> None:
    jobs.send_after_commit(session, SIGN, str(attempt.withdrawal_id), attempt.unsigned_tx, attempt.authorization)


async def _new_attempt(session: AsyncSession, settings: Settings, withdrawal: Withdrawal, number: int,
                       unsigned: UnsignedTx) -> WithdrawalAttempt:
    text = unsigned.canonical()
    attempt = WithdrawalAttempt(
        withdrawal_id=withdrawal.id, attempt=number, unsigned_tx=text, request_digest=request_digest(text),
        authorization=authorize(request_key(settings), str(withdrawal.id), text),
        max_fee_per_gas=unsigned.max_fee_per_gas, max_priority_fee_per_gas=unsigned.max_priority_fee_per_gas)
    session.add(attempt)
    await session.flush()
    _send_sign_request(session, attempt)
    withdrawal.sign_requested_at = utcnow()
    return attempt


def _followup(session: AsyncSession, job_name: str, withdrawal: Withdrawal) -> None:
    jobs.send_after_commit(session, job_name, str(withdrawal.id))


# --- approved → signing -------------------------------------------------------------------------

async def request_signature(session: AsyncSession, settings: Settings, withdrawal_id: str) -> None:
    withdrawal = await _locked(session, withdrawal_id)
    if withdrawal is None or withdrawal.state != "approved":
        return  # redelivered, rolled back meanwhile, or already signing (the tracker resends)
    chain_settings = _chain_settings(settings, withdrawal.chain)
    wallet = hot_wallet(settings, chain_settings)
    async with chain_for(chain_settings) as chain:
        fees = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
        nonce = await assign_nonce(session, withdrawal.chain, wallet, lambda: chain.mined_nonce(wallet))
    token = chain_settings.tokens.get(withdrawal.asset)
    unsigned = payment_tx(chain_id=chain_settings.chain_id, sender=wallet, nonce=nonce,
                          destination=withdrawal.to_address, amount=withdrawal.amount, token=token,
                          gas=settings.withdrawal_gas_limit_token if token else settings.withdrawal_gas_limit_native,
                          fees=fees)
    withdrawal.hot_wallet, withdrawal.nonce = wallet, nonce
    withdrawal.state = transition(withdrawal.state, "request_signature")
    await _new_attempt(session, settings, withdrawal, 1, unsigned)
    await session.flush()
    unit = await ledger.currency(session, withdrawal.asset)
    await record_step(session, withdrawal, unit, "withdrawal.signing", "custody",
                  {"hot_wallet": wallet, "nonce": nonce, "max_fee_per_gas": str(fees.max_fee_per_gas)})


# --- the signer's answers -----------------------------------------------------------------------

async def _attempt_answered(session: AsyncSession, withdrawal: Withdrawal | None, digest: str
                            ) -> WithdrawalAttempt | None:
    if withdrawal is None:
        return None
    attempt = await session.scalar(select(WithdrawalAttempt).where(
        WithdrawalAttempt.withdrawal_id == withdrawal.id, WithdrawalAttempt.request_digest == digest))
    if attempt is None:
        log.warning("signer answered withdrawal %s for a request it never made (digest %s)", withdrawal.id, digest)
    return attempt


async def on_signed(session: AsyncSession, settings: Settings, withdrawal_id: str, digest: str, raw_tx: str,
                    tx_hash: str) -> None:
    withdrawal = await _locked(session, withdrawal_id)
    attempt = await _attempt_answered(session, withdrawal, digest)
    if withdrawal is None or attempt is None:
        return
    if attempt.raw_tx is None:
        try:
            checked_hash = check_signed(raw_tx, UnsignedTx.parse(attempt.unsigned_tx))
        except SignedTxMismatch as mismatch:
            metrics.SIGNED_REPLIES_REJECTED.inc()
            log.error("withdrawal %s: signed reply rejected: %s", withdrawal.id, mismatch)
            return
        attempt.raw_tx, attempt.tx_hash, attempt.signed_at = raw_tx, checked_hash, utcnow()
        if checked_hash != tx_hash:
            log.warning("withdrawal %s: the signer named hash %s, the transaction hashes to %s", withdrawal.id,
                        tx_hash, checked_hash)
    if withdrawal.state == "signing" and attempt.attempt == 1:
        withdrawal.state = transition(withdrawal.state, "sign")
        await session.flush()
        await record_step(session, withdrawal, await ledger.currency(session, withdrawal.asset), "withdrawal.signed",
                      "signer", {"tx_hash": attempt.tx_hash, "nonce": withdrawal.nonce})
    if withdrawal.state in ("signed", "broadcast"):
        _followup(session, BROADCAST_WITHDRAWAL, withdrawal)
    elif withdrawal.state != "signing":
        log.warning("withdrawal %s is %s: its signed transaction is kept, never broadcast", withdrawal.id,
                    withdrawal.state)


async def on_refused(session: AsyncSession, settings: Settings, withdrawal_id: str, digest: str, reason: str,
                     message: str) -> None:
    metrics.SIGNER_REFUSALS.labels(reason if isinstance(reason, str) else "unknown").inc()
    withdrawal = await _locked(session, withdrawal_id)
    attempt = await _attempt_answered(session, withdrawal, digest)
    if withdrawal is None or attempt is None:
        return
    log.warning("signer refused withdrawal %s attempt %s: %s (%s)", withdrawal.id, attempt.attempt, reason, message)
    if reason in IGNORED_REFUSALS:
        return  # perhaps a forged copy; our own request is answered on its own (and resent if lost)
    attempt.refusal = attempt.refusal or str(reason)[:60]
    unit = await ledger.currency(session, withdrawal.asset)
    if withdrawal.state != "signing" or attempt.attempt != 1:
        # A fee bump refused: the transaction already broadcast stands.
        await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.fee_bump_refused",
                           {"attempt": attempt.attempt, "reason": reason, "message": message}, actor="signer")
        return
    if reason in ALERT_REFUSALS:
        withdrawal.failure_reason = str(reason)[:60]
        log.error("withdrawal %s: the signer has a transaction for it already (%s); left for an operator",
                  withdrawal.id, reason)
        await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.signer_alert",
                           {"reason": reason, "message": message}, actor="signer")
        return
    withdrawal.state = transition(withdrawal.state, "refuse")
    withdrawal.failure_reason = str(reason)[:60]
    withdrawal.finished_at = utcnow()
    await ledger.void_hold(session, withdrawal.hold_id, type="withdrawal_void")
    if reason != "nonce_taken" and withdrawal.nonce is not None and withdrawal.hot_wallet is not None:
        # Nothing was signed at this nonce for this withdrawal: the next one takes it, no gap stays.
        await release_nonce(session, withdrawal.chain, withdrawal.hot_wallet, withdrawal.nonce)
        withdrawal.nonce_released = True
    await session.flush()
    await record_step(session, withdrawal, unit, "withdrawal.failed", "signer", {"reason": reason, "message": message})


# --- signed → broadcast -------------------------------------------------------------------------

async def broadcast(session: AsyncSession, settings: Settings, withdrawal_id: str) -> None:
    withdrawal = await _locked(session, withdrawal_id)
    if withdrawal is None or withdrawal.state not in ("signed", "broadcast"):
        return
    signed = [attempt for attempt in await _attempts(session, withdrawal) if attempt.raw_tx is not None]
    if not signed:
        return
    latest = signed[-1]
    if latest.broadcast_at is not None:
        return
    async with chain_for(_chain_settings(settings, withdrawal.chain)) as chain:
        head = await chain.head()
        try:
            await chain.broadcast(bytes.fromhex(latest.raw_tx.removeprefix("0x")))  # type: ignore[union-attr]
        except ChainRejected as rejected:
            if withdrawal.state == "broadcast":
                # A bump the node refuses (the first one was mined meanwhile, say): receipts decide.
                log.warning("withdrawal %s: fee bump %s rejected: %s", withdrawal.id, latest.attempt, rejected.message)
                latest.refusal = "broadcast_rejected"
                return
            raise
    latest.broadcast_at, latest.broadcast_block = utcnow(), head
    unit = await ledger.currency(session, withdrawal.asset)
    if withdrawal.state == "signed":
        withdrawal.state = transition(withdrawal.state, "broadcast")
        withdrawal.broadcast_at, withdrawal.tx_hash = latest.broadcast_at, latest.tx_hash
        await session.flush()
        await record_step(session, withdrawal, unit, "withdrawal.broadcast", "custody", {"tx_hash": latest.tx_hash})
    else:
        withdrawal.state = transition(withdrawal.state, "replace")
        await session.flush()
        await record_step(session, withdrawal, unit, "withdrawal.replaced", "custody",
                      {"tx_hash": latest.tx_hash, "attempt": latest.attempt,
                       "max_fee_per_gas": str(latest.max_fee_per_gas)})


# --- tracking -----------------------------------------------------------------------------------

async def track(session: AsyncSession, settings: Settings, withdrawal_id: str) -> None:
    withdrawal = await _locked(session, withdrawal_id, skip_locked=True)  # busy: the next tick will do
    if withdrawal is None:
        return
    stale = utcnow() - timedelta(seconds=settings.withdrawal_resend_seconds)
    if withdrawal.state == "approved" and withdrawal.updated_at < stale:
        _followup(session, SIGN_WITHDRAWAL, withdrawal)
    elif withdrawal.state == "signing":
        if withdrawal.failure_reason is None and (withdrawal.sign_requested_at or stale) <= stale:
            attempts = await _attempts(session, withdrawal)
            _send_sign_request(session, attempts[-1])
            withdrawal.sign_requested_at = utcnow()
    elif withdrawal.state == "signed":
        _followup(session, BROADCAST_WITHDRAWAL, withdrawal)
    elif withdrawal.state == "broadcast":
        chain_settings = _chain_settings(settings, withdrawal.chain)
        async with chain_for(chain_settings) as chain:
            await _follow(session, settings, chain_settings, chain, withdrawal, stale)


async def _follow(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: EvmChain,
                  withdrawal: Withdrawal, stale: Any) -> None:
    attempts = await _attempts(session, withdrawal)
    head = await chain.head()
    for attempt in attempts:
        if attempt.tx_hash is None:
            continue
        receipt = await chain.receipt(attempt.tx_hash)
        if receipt is None:
            continue
        # One nonce, one mined transaction: whichever attempt it is, it is the withdrawal's.
        depth = max(head - receipt.block_number + 1, 0)
        if (withdrawal.tx_hash, withdrawal.block_number, withdrawal.confirmations) != (
                attempt.tx_hash, receipt.block_number, depth):
            withdrawal.tx_hash, withdrawal.block_number, withdrawal.confirmations = (
                attempt.tx_hash, receipt.block_number, depth)
        if depth >= chain_settings.confirmations:
            await _settle(session, chain_settings, withdrawal, attempt, receipt.status,
                          receipt.gas_used * receipt.effective_gas_price)
        return

    latest = attempts[-1]
    if latest.raw_tx is None:  # a fee bump waiting for the signer
        if latest.refusal is None and latest.requested_at <= stale and (withdrawal.sign_requested_at or stale) <= stale:
            _send_sign_request(session, latest)
            withdrawal.sign_requested_at = utcnow()
        return
    if latest.broadcast_at is None:
        if latest.refusal is None:
            _followup(session, BROADCAST_WITHDRAWAL, withdrawal)
        return
    if head - (latest.broadcast_block or head) < settings.withdrawal_stuck_blocks:
        return
    if await chain.mined_nonce(withdrawal.hot_wallet) < (withdrawal.nonce or 0):  # type: ignore[arg-type]
        return  # an earlier nonce is not mined yet: bumping this one would not help (that one's tracker bumps)
    if latest.attempt >= MAX_ATTEMPTS:
        log.error("withdrawal %s: not mined after %s fee bumps", withdrawal.id, latest.attempt - 1)
        return
    previous = Fees(latest.max_fee_per_gas, latest.max_priority_fee_per_gas)
    today = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
    bumped = previous.bumped(settings.withdrawal_fee_bump_percent, floor=today)
    unsigned = replace(UnsignedTx.parse(attempts[0].unsigned_tx), max_fee_per_gas=bumped.max_fee_per_gas,
                       max_priority_fee_per_gas=bumped.max_priority_fee_per_gas)
    await _new_attempt(session, settings, withdrawal, latest.attempt + 1, unsigned)
    await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.fee_bump_requested",
                       {"attempt": latest.attempt + 1, "stuck_since_block": latest.broadcast_block, "head": head,
                        "max_fee_per_gas": str(bumped.max_fee_per_gas)}, actor="custody")
    metrics.count("fee_bump_requested", withdrawal.chain, withdrawal.asset)


async def _settle(session: AsyncSession, chain_settings: ChainSettings, withdrawal: Withdrawal,
                  attempt: WithdrawalAttempt, status: int, gas_cost: int) -> None:
    unit = await ledger.currency(session, withdrawal.asset)
    withdrawal.gas_cost = gas_cost
    withdrawal.finished_at = utcnow()
    if gas_cost > 0:
        # The hot wallet paid the network: a platform cost, charged against the fee income.
        await ledger.move(session, reference=f"withdrawal:{withdrawal.id}:gas", type="withdrawal_gas",
                          source=AccountRef.system(ledger.FEES), destination=AccountRef.system(NETWORK_FEES),
                          currency=chain_settings.native, amount=gas_cost, reference_kind="withdrawal",
                          reference_id=str(withdrawal.id), tx_hash=attempt.tx_hash)
    data = {"tx_hash": attempt.tx_hash, "block_number": withdrawal.block_number,
            "confirmations": withdrawal.confirmations, "gas_cost": str(gas_cost)}
    if status == 1:
        await ledger.post_hold(session, withdrawal.hold_id, AccountRef.system(CHAIN_WITHDRAWALS), withdrawal.amount,
                               fee=withdrawal.fee, fee_account=AccountRef.system(ledger.FEES), type="withdrawal_post",
                               tx_hash=attempt.tx_hash)
        withdrawal.state = transition(withdrawal.state, "confirm")
        await session.flush()
        await record_step(session, withdrawal, unit, "withdrawal.confirmed", "custody", data)
        product_email(session, withdrawal.user_id, "withdrawal.confirmed", withdrawal.id)
    else:
        await ledger.void_hold(session, withdrawal.hold_id, type="withdrawal_void")
        withdrawal.state = transition(withdrawal.state, "revert")
        withdrawal.failure_reason = "reverted"
        await session.flush()
        await record_step(session, withdrawal, unit, "withdrawal.failed", "custody", {**data, "reason": "reverted"})


async def active_withdrawals(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(Withdrawal.id).where(
        Withdrawal.state.in_(("approved", "signing", "signed", "broadcast"))).order_by(Withdrawal.created_at))
    return [str(row) for row in rows]
