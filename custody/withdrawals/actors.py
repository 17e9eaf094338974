"""Withdrawal jobs of the custody worker (queue ``custody``), and the signer's replies.

Message contract with the signer (``core.sign_requests``; the signer documents the same in
``signer.daemon``):

- this worker sends ``signer.sign_withdrawal(withdrawal_id, unsigned_tx, authorization)`` to the
  ``signer`` queue — a transaction and an Ed25519 authorization, never key material;
- the signer answers on this queue with ``custody.withdrawal_signed(withdrawal_id, request_digest,
  raw_tx, tx_hash, signature)`` or ``custody.withdrawal_refused(withdrawal_id, request_digest, reason,
  message, signature)``; both are jobs below, declared like any other and checked like any other
  input: the signer key must have signed the reply (``custody.withdrawals.replies``; a reply without
  a signature is ignored and alerted), and a signed reply must be the requested transaction, signed
  by the hot wallet.

Every job is idempotent (see ``custody.withdrawals.pipeline``); ``custody.track_withdrawals``
is sent by the scheduler every ``withdrawal_track_seconds`` and re-drives whatever a lost
message or a crash left behind. Its follow-ups (``custody.track_withdrawal``, ``custody.track_filler``)
have no retries of their own and at most one in flight per withdrawal or filler (``jobs.inflight``):
a node that times out on every call delays tracking, it never floods the queue. Such an outage is
logged and counted, not raised: the next tick is the retry, and nothing is dead-lettered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core.db import rollback
from core.sign_requests import REFUSED_ACTOR, SIGNED_ACTOR
from custody.chains import ChainError
from custody.withdrawals import fillers, hot_wallet_move, metrics, pipeline, requesters
from custody.withdrawals.cancels import CANCEL_WITHDRAWAL
from custody.withdrawals.pipeline import BROADCAST_WITHDRAWAL
from custody.withdrawals.service import SIGN_WITHDRAWAL
from jobs import inflight
from jobs.context import current_settings
from jobs.registry import job

log = logging.getLogger(__name__)

# Tracking runs every few seconds: a message older than this has been superseded by newer ones,
# and a tracking message not run by then frees its withdrawal for the next tick.
TRACK_EXPIRES_AFTER_MS = 30_000
TRACK_WITHDRAWAL = jobs.name("custody.track_withdrawal")
TRACK_FILLER = jobs.name("custody.track_filler")


@job(SIGN_WITHDRAWAL, queue="custody")
async def sign_withdrawal(session: AsyncSession, withdrawal_id: str) -> None:
    """approved → signing: nonce, transaction, authorization; the sign request leaves after commit."""
    await pipeline.request_signature(session, current_settings(), withdrawal_id)


@job(SIGNED_ACTOR, queue="custody")
async def withdrawal_signed(session: AsyncSession, withdrawal_id: str, request_digest: str, raw_tx: str,
                            tx_hash: str, signature: str | None = None) -> None:
    if await hot_wallet_move.is_move(session, withdrawal_id):  # `virtuoz hot-wallet migrate`'s transfers
        await hot_wallet_move.on_signed(session, current_settings(), withdrawal_id, request_digest, raw_tx, tx_hash,
                                        signature)
        return
    if (requester := await requesters.owner_of(session, withdrawal_id)) is not None:  # e.g. hot → cold transfers
        await requester.on_signed(session, current_settings(), withdrawal_id, request_digest, raw_tx, tx_hash,
                                  signature)
        return
    await pipeline.on_signed(session, current_settings(), withdrawal_id, request_digest, raw_tx, tx_hash, signature)


@job(REFUSED_ACTOR, queue="custody")
async def withdrawal_refused(session: AsyncSession, withdrawal_id: str, request_digest: str, reason: str,
                             message: str, signature: str | None = None) -> None:
    if await hot_wallet_move.is_move(session, withdrawal_id):
        await hot_wallet_move.on_refused(session, current_settings(), withdrawal_id, request_digest, reason, message,
                                         signature)
        return
    if (requester := await requesters.owner_of(session, withdrawal_id)) is not None:
        await requester.on_refused(session, current_settings(), withdrawal_id, request_digest, reason, message,
                                   signature)
        return
    await pipeline.on_refused(session, current_settings(), withdrawal_id, request_digest, reason, message, signature)


@job(BROADCAST_WITHDRAWAL, queue="custody")
async def broadcast_withdrawal(session: AsyncSession, withdrawal_id: str) -> None:
    await pipeline.broadcast(session, current_settings(), withdrawal_id)


@job(CANCEL_WITHDRAWAL, queue="custody")
async def cancel_withdrawal(session: AsyncSession, withdrawal_id: str) -> None:
    """An operator cancelled a broadcast withdrawal: the cancel's sign request leaves after commit."""
    await pipeline.cancel_withdrawal(session, current_settings(), withdrawal_id)


@job(fillers.SIGN_FILLER, queue="custody")
async def sign_filler(session: AsyncSession, filler_id: str) -> None:
    await fillers.request_signature(session, current_settings(), filler_id)


@job(fillers.BROADCAST_FILLER, queue="custody")
async def broadcast_filler(session: AsyncSession, filler_id: str) -> None:
    await fillers.broadcast(session, current_settings(), filler_id)


@job(TRACK_WITHDRAWAL, queue="custody", max_retries=0, expires_after_ms=TRACK_EXPIRES_AFTER_MS)
async def track_withdrawal(session: AsyncSession, withdrawal_id: str) -> None:
    await _tracking(session, TRACK_WITHDRAWAL, withdrawal_id, pipeline.track)


@job(TRACK_FILLER, queue="custody", max_retries=0, expires_after_ms=TRACK_EXPIRES_AFTER_MS)
async def track_filler(session: AsyncSession, filler_id: str) -> None:
    await _tracking(session, TRACK_FILLER, filler_id, fillers.track)


async def _tracking(session: AsyncSession, job_name: str, subject: str,
                    step: Callable[[AsyncSession, object, str], Awaitable[None]]) -> None:
    try:
        await step(session, current_settings(), subject)
    except ChainError as unreachable:
        # Expected during a node outage: nothing of this run is kept, the next tick tries again.
        await rollback(session)
        metrics.TRACKING_FAILURES.labels(str((unreachable.details or {}).get("chain", "unknown"))).inc()
        log.warning("tracking %s: %s", subject, unreachable)
    finally:
        await inflight.release(session, job_name, subject)


@job("custody.track_withdrawals", queue="custody", max_retries=0, expires_after_ms=TRACK_EXPIRES_AFTER_MS)
async def track_withdrawals(session: AsyncSession) -> None:
    """One ``custody.track_withdrawal`` per withdrawal in flight, one ``custody.track_filler`` per live
    filler — unless the last one is still waiting — and a filler for any blocking gap (the scheduler's
    entry point)."""
    await fillers.fill_gaps(session)
    for job_name, subjects in ((TRACK_WITHDRAWAL, await pipeline.active_withdrawals(session)),
                               (TRACK_FILLER, await fillers.active_fillers(session))):
        for subject in await inflight.claim(session, job_name, subjects, TRACK_EXPIRES_AFTER_MS):
            inflight.send_after_commit(session, job_name, subject)
