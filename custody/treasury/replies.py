"""The signer's answers to sweep and top-up requests, believed only with the signer key's signature.

Anyone who can write to Redis can put a message on the treasury queue. A believed refusal gives a
nonce back — of the hot wallet for a top-up — and a new top-up is asked for later: forged while the
real signer signs the first, that would top the address up twice. So each reply
(``core.sweep_requests``) must carry the signer key's signature over its kind, the request, the
digest it answers and its fields, checked with the public key of this process's own configuration
(``signer_public_key_file``); anything else changes nothing and alerts (log, metric, and an audit
event on the sweep it names). A signed reply must be the very transaction asked for, signed by its
sender (``check_signed``) before it is broadcast.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core.settings import Settings
from core.sign_requests import UnsignedTx, load_signer_public_key, reply_verifies
from core.sweep_requests import SWEEP_REFUSED_REPLY, SWEEP_SIGNED_REPLY, TOPUP
from core.time import utcnow
from custody.chains.transactions import SignedTxMismatch, check_signed
from custody.treasury import metrics
from custody.treasury.models import Sweep, SweepTransaction
from custody.treasury.pipeline import ALERT_REFUSALS, BROADCAST_REJECTED, locked
from custody.treasury.service import DRIVE_SWEEP, record
from custody.treasury.states import SWEEPING, transition
from custody.withdrawals import fillers
from custody.withdrawals.nonces import release_nonce

log = logging.getLogger(__name__)

MAX_LOGGED = 80  # a forged message chooses its strings: keep only so much of them
# Refusals that may be a forged or garbled copy of our request: the genuine one is answered on its own.
IGNORED_REFUSALS = frozenset({"invalid_authorization", "malformed_request"})


async def _named(session: AsyncSession, request_id: object, digest: object | None = None
                 ) -> tuple[Sweep, SweepTransaction | None] | None:
    """The sweep a request id belongs to (locked), and the transaction row answered by ``digest``."""
    try:
        key = uuid.UUID(str(request_id))
    except ValueError:
        return None
    sweep_id = await session.scalar(select(SweepTransaction.sweep_id).where(SweepTransaction.request_id == key)
                                    .limit(1))
    if sweep_id is None:
        return None
    sweep = await locked(session, sweep_id)
    if sweep is None:
        return None
    row = None if digest is None else await session.scalar(select(SweepTransaction).where(
        SweepTransaction.request_id == key, SweepTransaction.request_digest == str(digest)))
    return sweep, row


async def verified(session: AsyncSession, settings: Settings, kind: str, request_id: object, digest: object,
                   fields: Sequence[object], signature: object) -> bool:
    """True when the reply is the signer's; otherwise alert (log, metric, audit) and return False."""
    assert settings.signer_public_key_file is not None  # filled in by Settings
    if reply_verifies(load_signer_public_key(settings.signer_public_key_file), kind, request_id, digest, fields,
                      signature):
        return True
    metrics.SWEEP_UNVERIFIED_REPLIES.labels(kind).inc()
    log.error("ALERT: a %s reply about request %r is not signed by the signer key (%s); ignored", kind,
              str(request_id)[:MAX_LOGGED], "no signature" if signature is None else "the signature does not verify")
    named = await _named(session, request_id)
    if named is not None:
        await record(session, named[0], "unverified_reply", {
            "kind": kind, "request_id": str(request_id)[:MAX_LOGGED], "request_digest": str(digest)[:MAX_LOGGED],
            "signature": "missing" if signature is None else "invalid"}, "treasury")
    return False


async def on_signed(session: AsyncSession, settings: Settings, request_id: str, digest: str, raw_tx: str,
                    tx_hash: str, signature: str | None) -> None:
    if not await verified(session, settings, SWEEP_SIGNED_REPLY, request_id, digest, (raw_tx, tx_hash), signature):
        return
    named = await _named(session, request_id, digest)
    if named is None or named[1] is None:
        log.warning("signer answered %r (digest %s), a request this worker never made", request_id, digest)
        return
    sweep, row = named
    if row.raw_tx is None:
        try:
            checked = check_signed(raw_tx, UnsignedTx.parse(row.unsigned_tx))
        except SignedTxMismatch as mismatch:
            # The signer key vouches for it, yet it is not what was asked: nothing is broadcast.
            log.error("ALERT: sweep %s: signed reply rejected: %s", sweep.id, mismatch)
            await record(session, sweep, "signed_reply_rejected", {"request_id": request_id, "kind": row.kind,
                                                                    "reason": str(mismatch)}, "signer")
            return
        row.raw_tx, row.tx_hash, row.signed_at = raw_tx, checked, utcnow()
        await record(session, sweep, f"{row.kind}_signed", {"request_id": request_id, "attempt": row.attempt,
                                                            "tx_hash": checked, "nonce": row.nonce}, "signer")
    jobs.send_after_commit(session, DRIVE_SWEEP, str(sweep.id))


async def on_refused(session: AsyncSession, settings: Settings, request_id: str, digest: str, reason: str,
                     message: str, signature: str | None) -> None:
    if not await verified(session, settings, SWEEP_REFUSED_REPLY, request_id, digest, (reason, message), signature):
        return  # the nonce and the state stay: the genuine answer comes on its own
    named = await _named(session, request_id, digest)
    if named is None or named[1] is None:
        log.warning("signer refused %r (digest %s), a request this worker never made", request_id, digest)
        return
    sweep, row = named
    metrics.SWEEP_SIGNER_REFUSALS.labels(row.kind, str(reason)[:MAX_LOGGED]).inc()
    log.warning("signer refused %s %s of sweep %s: %s (%s)", row.kind, request_id, sweep.id, reason, message)
    if reason in IGNORED_REFUSALS:
        return  # perhaps a forged copy; ours is answered on its own (and sent again if lost)
    if row.refusal not in (None, BROADCAST_REJECTED) or row.raw_tx is not None:
        return  # answered already: heard once, acted on once
    row.refusal = str(reason)[:60]
    data = {"request_id": request_id, "kind": row.kind, "attempt": row.attempt, "reason": reason, "message": message}
    if row.attempt > 1:
        await record(session, sweep, "fee_bump_refused", data, "signer")  # the transaction already sent stands
        return
    if reason in ALERT_REFUSALS:
        sweep.alert = str(reason)[:60]
        log.error("ALERT: sweep %s: the signer has a transaction for %s already (%s); left for an operator",
                  sweep.id, request_id, reason)
        await record(session, sweep, "signer_alert", data, "signer")
        return
    if reason != "nonce_taken":
        # Nothing was signed at this nonce for the request: the sender's next transaction takes it.
        await release_nonce(session, row.chain, row.sender, row.nonce)
        row.nonce_released = True
        await session.flush()
        if row.kind == TOPUP:
            # Later hot wallet nonces may be signed already (withdrawals): a filler takes this one now.
            await fillers.fill_if_blocking(session, row.chain, row.sender, row.nonce)
    if row.kind == TOPUP:
        sweep.retry_at = utcnow() + timedelta(seconds=settings.sweep_retry_seconds)
        await record(session, sweep, "topup_refused", {**data, "retry_at": sweep.retry_at.isoformat()}, "signer")
        return
    if sweep.state == SWEEPING:
        sweep.state = transition(sweep.state, "fail")
        sweep.failure_reason, sweep.finished_at = str(reason)[:60], utcnow()
        await session.flush()
        await record(session, sweep, "failed", data, "signer")
        metrics.count("failed", sweep.chain, sweep.asset)
