"""Withdrawals as the custody worker drives them: nonce, authorization, broadcast, receipts, fee bumps.

Each step locks the withdrawal row, checks the state it expects (anything else: a redelivered or
stale message, nothing to do), changes it, and sends what follows only after its commit — so
every step can run twice and change nothing the second time.

- ``request_signature`` (approved → signing): a frozen owner's withdrawal is rolled back instead
  (``custody.freezes``), and so is one the node says would revert (``preflight``, eth_estimateGas);
  then today's fees (``eth_feeHistory``), the next nonce from the wallet's locked row, the EIP-1559 transaction built by ``custody.chains``, the custody
  request key's Ed25519 authorization over it; the sign request goes to the signer after commit.
- ``on_signed`` (signing → signed): the reply must be signed by the signer key (``replies``) and
  carry the requested transaction, signed by the hot wallet; then ``broadcast`` (signed → broadcast).
- ``on_refused`` (signing → failed): only a refusal signed by the signer key is heard; the hold is
  voided and the nonce given back — only when the signer's answer guarantees nothing was signed
  for the withdrawal (see ``VOIDING_REFUSALS``).
- ``track`` (periodic): resends unanswered sign requests, re-drives broadcasts, follows receipts to
  the chain's confirmations (confirmed: the hold is posted, amount to ``chain_withdrawals`` and fee
  to ``fees``; reverted: failed, the amount back to the customer and the fee to ``fees``; a mined
  cancel: failed, the hold voided, ``cancels``). Until something at the nonce is mined, ``stuck``
  sends the highest-fee transaction again, retries what the node rejected, and replaces a payment
  not mined after ``withdrawal_stuck_blocks`` blocks by the same payment with higher fees.
  The gas of the mined transaction is a platform cost: ``fees`` → ``network_fees`` in the native coin.

Fees stay within the signer's caps (``fee_caps``): above one, nothing is asked and the withdrawal
waits, alerted once. A nonce given back below signed ones is filled at once (``fillers``).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core import audit
from core.settings import ChainSettings, Settings, UnknownChain
from core.sign_requests import REFUSED_REPLY, SIGNED_REPLY, UnsignedTx
from core.time import utcnow
from custody import ledger
from custody.chains import Chain, ChainRejected, chain_for
from custody.chains.transactions import Fees, SignedTxMismatch, check_signed, payment_tx
from custody.freezes import withdrawals_frozen
from custody.hd import XpubError, signed_xpubs
from custody.ledger import AccountRef
from custody.withdrawals import cancels, fee_caps, fillers, metrics, replies, stuck
from custody.withdrawals.attempts import new_attempt, resend
from custody.withdrawals.models import Withdrawal, WithdrawalAttempt
from custody.withdrawals.nonces import assign_nonce, release_nonce
from custody.withdrawals.preflight import WouldRevert, check_payment, gas_limit
from custody.withdrawals.service import SIGN_WITHDRAWAL, record_step
from custody.withdrawals.states import transition
from notifications.emails import product_email

log = logging.getLogger(__name__)

BROADCAST_WITHDRAWAL = jobs.name("custody.broadcast_withdrawal")

CHAIN_WITHDRAWALS, NETWORK_FEES = "chain_withdrawals", "network_fees"
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


def hot_wallet(settings: Settings, chain: ChainSettings) -> str:
    """The chain's hot wallet as the signer-signed xpub file names it (``XpubError`` if it does not verify)."""
    entry = signed_xpubs(settings).get(chain.name)
    if entry is None:
        raise XpubError(f"{settings.xpub_file} has no entry for chain {chain.name!r}: run `virtuoz signer export`")
    if entry.hot_account != chain.hot_account:
        raise XpubError(f"{chain.name}: the xpub file's hot wallet is on account {entry.hot_account}, the settings "
                        f"say {chain.hot_account}")
    return entry.hot_wallet


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


def _followup(session: AsyncSession, job_name: str, withdrawal: Withdrawal) -> None:
    jobs.send_after_commit(session, job_name, str(withdrawal.id))


# --- approved → signing -------------------------------------------------------------------------

async def _roll_back_unsigned(session: AsyncSession, withdrawal: Withdrawal, reason: str,
                              data: dict[str, Any] | None = None) -> None:
    """Nothing was asked of the signer: the approved withdrawal is rolled back and its hold voided."""
    previous = withdrawal.state
    withdrawal.state = transition(previous, "rollback")
    withdrawal.failure_reason, withdrawal.finished_at = reason, utcnow()
    await ledger.void_hold(session, withdrawal.hold_id, type="withdrawal_void")
    await session.flush()
    await record_step(session, withdrawal, await ledger.currency(session, withdrawal.asset), "withdrawal.rolled_back",
                      "custody", {"previous_state": previous, "reason": reason, **(data or {})})
    log.warning("withdrawal %s rolled back before signing: %s", withdrawal.id, reason)


async def request_signature(session: AsyncSession, settings: Settings, withdrawal_id: str) -> None:
    withdrawal = await _locked(session, withdrawal_id)
    if withdrawal is None or withdrawal.state != "approved":
        return  # redelivered, rolled back meanwhile, or already signing (the tracker resends)
    if await withdrawals_frozen(session, withdrawal.user_id):
        # Rolled back rather than kept waiting: its approval was given before the freeze was known,
        # and lifting the freeze must not silently send it without a fresh approval.
        await _roll_back_unsigned(session, withdrawal, "withdrawals_frozen")
        return
    chain_settings = _chain_settings(settings, withdrawal.chain)
    wallet = hot_wallet(settings, chain_settings)
    async with chain_for(chain_settings) as chain:
        try:
            # Binding: no sign request leaves without the node's verdict that the payment goes through now.
            await check_payment(chain, settings, sender=wallet, destination=withdrawal.to_address,
                                amount=withdrawal.amount, token=chain_settings.tokens.get(withdrawal.asset))
        except WouldRevert as would_revert:
            verdict = {key: value for key, value in would_revert.details.items() if value is not None}
            await _roll_back_unsigned(session, withdrawal, "would_revert", {"detail": verdict.pop("reason", None),
                                                                            **verdict})
            return
        fees = Fees.quote(await chain.fees(), settings.withdrawal_min_priority_fee_wei)
        token = chain_settings.tokens.get(withdrawal.asset)
        gas = gas_limit(settings, token)
        if (breach := fee_caps.breach(settings, withdrawal.chain, gas, fees)) is not None:
            # The signer would refuse it: ask nothing, keep the nonce free, wait (the tracker asks again).
            await fee_caps.alert(session, withdrawal, *breach, fee_caps.fee_data(gas, fees))
            return
        nonce = await assign_nonce(session, withdrawal.chain, wallet, lambda: chain.mined_nonce(wallet))
    unsigned = payment_tx(chain_id=chain_settings.chain_id, sender=wallet, nonce=nonce,
                          destination=withdrawal.to_address, amount=withdrawal.amount, token=token, gas=gas, fees=fees)
    fee_caps.clear(withdrawal)
    withdrawal.hot_wallet, withdrawal.nonce = wallet, nonce
    withdrawal.state = transition(withdrawal.state, "request_signature")
    await new_attempt(session, settings, withdrawal, 1, unsigned)
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
                    tx_hash: str, signature: str | None = None) -> None:
    if not await replies.verified(session, settings, SIGNED_REPLY, withdrawal_id, digest, (raw_tx, tx_hash),
                                  signature):
        return
    withdrawal = await _locked(session, withdrawal_id)
    if withdrawal is None:
        # Not a withdrawal's id: a filler's (core.sign_requests), or a request this worker never made.
        if not await fillers.on_signed(session, withdrawal_id, digest, raw_tx):
            log.warning("signer answered %r, which names no withdrawal or filler", withdrawal_id)
        return
    attempt = await _attempt_answered(session, withdrawal, digest)
    if attempt is None:
        return
    if attempt.raw_tx is None:
        try:
            checked_hash = check_signed(raw_tx, UnsignedTx.parse(attempt.unsigned_tx))
        except SignedTxMismatch as mismatch:
            # The signer key vouches for this reply, yet it is not what was asked: a signer bug or a
            # compromised signer. Nothing is broadcast; an operator looks.
            metrics.SIGNED_REPLIES_REJECTED.inc()
            log.error("ALERT: withdrawal %s: signed reply rejected: %s", withdrawal.id, mismatch)
            await audit.append(session, "withdrawal", withdrawal.id, "withdrawal.signed_reply_rejected",
                               {"attempt": attempt.attempt, "request_digest": digest, "tx_hash": str(tx_hash)[:80],
                                "reason": str(mismatch)}, actor="signer")
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
                     message: str, signature: str | None = None) -> None:
    if not await replies.verified(session, settings, REFUSED_REPLY, withdrawal_id, digest, (reason, message),
                                  signature):
        return  # the hold, the nonce and the state stay: the genuine answer comes on its own
    metrics.SIGNER_REFUSALS.labels(reason).inc()
    withdrawal = await _locked(session, withdrawal_id)
    if withdrawal is None:
        # Not a withdrawal's id: a filler's (core.sign_requests), or a request this worker never made.
        if not await fillers.on_refused(session, withdrawal_id, digest, reason, message):
            log.warning("signer refused %r, which names no withdrawal or filler", withdrawal_id)
        return
    attempt = await _attempt_answered(session, withdrawal, digest)
    if attempt is None:
        return
    log.warning("signer refused withdrawal %s attempt %s: %s (%s)", withdrawal.id, attempt.attempt, reason, message)
    if reason in IGNORED_REFUSALS:
        return  # perhaps a forged copy; our own request is answered on its own (and resent if lost)
    if attempt.refusal is not None or attempt.raw_tx is not None:
        return  # answered already (a redelivered refusal): heard once, acted on once
    attempt.refusal = str(reason)[:60]
    unit = await ledger.currency(session, withdrawal.asset)
    if attempt.kind == "cancel":
        await cancels.on_refused(session, withdrawal, attempt, reason, message)
        return
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
        # Unless later nonces are signed already: they wait behind this one, so a filler takes it now.
        await fillers.fill_if_blocking(session, withdrawal.chain, withdrawal.hot_wallet, withdrawal.nonce)
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
                # A bump (or cancel) the node refuses (a full pool; the first one mined meanwhile): not
                # final — tried again after withdrawal_rebroadcast_blocks (``stuck``); receipts decide.
                log.warning("withdrawal %s: fee bump %s rejected: %s", withdrawal.id, latest.attempt, rejected.message)
                stuck.rejected_by_node(withdrawal, latest, head, rejected)
                return
            raise
    if withdrawal.state == "broadcast":
        await stuck.sent(session, withdrawal, latest, head)
        return
    latest.broadcast_at, latest.broadcast_block, latest.sent_block = utcnow(), head, head
    withdrawal.state = transition(withdrawal.state, "broadcast")
    withdrawal.broadcast_at, withdrawal.tx_hash = latest.broadcast_at, latest.tx_hash
    await session.flush()
    await record_step(session, withdrawal, await ledger.currency(session, withdrawal.asset), "withdrawal.broadcast",
                      "custody", {"tx_hash": latest.tx_hash})


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
            resend(session, attempts[-1])
            withdrawal.sign_requested_at = utcnow()
    elif withdrawal.state == "signed":
        _followup(session, BROADCAST_WITHDRAWAL, withdrawal)
    elif withdrawal.state == "broadcast":
        chain_settings = _chain_settings(settings, withdrawal.chain)
        async with chain_for(chain_settings) as chain:
            await _follow(session, settings, chain_settings, chain, withdrawal, stale)


async def _follow(session: AsyncSession, settings: Settings, chain_settings: ChainSettings, chain: Chain,
                  withdrawal: Withdrawal, stale: datetime) -> None:
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
            gas_cost = receipt.gas_used * receipt.effective_gas_price
            if attempt.kind == "cancel":
                await cancels.settle(session, chain_settings, withdrawal, attempt, gas_cost)
            else:
                await _settle(session, chain_settings, withdrawal, attempt, receipt.status, gas_cost)
        return
    await stuck.drive(session, settings, chain, withdrawal, attempts, head, stale)


async def cancel_withdrawal(session: AsyncSession, settings: Settings, withdrawal_id: str) -> None:
    """An operator asked for a cancel (``cancels.request_cancel``): ask the signer for it now."""
    withdrawal = await _locked(session, withdrawal_id)
    if withdrawal is None or withdrawal.state != "broadcast" or withdrawal.cancel_requested_at is None:
        return
    async with chain_for(_chain_settings(settings, withdrawal.chain)) as chain:
        await cancels.build_if_requested(session, settings, chain, withdrawal, await _attempts(session, withdrawal),
                                         await chain.head())


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
        # Mined but reverted: nothing reached the recipient, yet the hot wallet paid the gas. The amount
        # goes back to the customer; the withdrawal fee, which exists to cover that gas, is taken.
        if withdrawal.fee:
            await ledger.post_hold(session, withdrawal.hold_id, AccountRef.system(ledger.FEES), withdrawal.fee,
                                   type="withdrawal_revert_fee", tx_hash=attempt.tx_hash)
        else:
            await ledger.void_hold(session, withdrawal.hold_id, type="withdrawal_void")
        withdrawal.state = transition(withdrawal.state, "revert")
        withdrawal.failure_reason = "reverted"
        await session.flush()
        await record_step(session, withdrawal, unit, "withdrawal.failed", "custody",
                          {**data, "reason": "reverted", "fee_charged": unit.format(withdrawal.fee)})


async def active_withdrawals(session: AsyncSession) -> list[str]:
    rows = await session.scalars(select(Withdrawal.id).where(
        Withdrawal.state.in_(("approved", "signing", "signed", "broadcast"))).order_by(Withdrawal.created_at))
    return [str(row) for row in rows]
