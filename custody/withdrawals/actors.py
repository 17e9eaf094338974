"""Withdrawal jobs of the custody worker (queue ``custody``), and the signer's replies.

Message contract with the signer (``core.sign_requests``; the signer documents the same in
``signer.daemon``):

- this worker sends ``signer.sign_withdrawal(withdrawal_id, unsigned_tx, authorization)`` to the
  ``signer`` queue — a transaction and an Ed25519 authorization, never key material;
- the signer answers on this queue with ``custody.withdrawal_signed(withdrawal_id, request_digest,
  raw_tx, tx_hash)`` or ``custody.withdrawal_refused(withdrawal_id, request_digest, reason,
  message)``; both are jobs below, declared like any other and checked like any other input
  (a signed reply must be the requested transaction, signed by the hot wallet).

Every job is idempotent (see ``custody.withdrawals.pipeline``); ``custody.track_withdrawals``
is sent by the scheduler every ``withdrawal_track_seconds`` and re-drives whatever a lost
message or a crash left behind.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core.sign_requests import REFUSED_ACTOR, SIGNED_ACTOR
from custody.withdrawals import pipeline
from custody.withdrawals.pipeline import BROADCAST_WITHDRAWAL
from custody.withdrawals.service import SIGN_WITHDRAWAL
from jobs.context import current_settings
from jobs.registry import job

# Tracking runs every few seconds: a message older than this has been superseded by newer ones.
TRACK_EXPIRES_AFTER_MS = 30_000
TRACK_WITHDRAWAL = jobs.name("custody.track_withdrawal")


@job(SIGN_WITHDRAWAL, queue="custody")
async def sign_withdrawal(session: AsyncSession, withdrawal_id: str) -> None:
    """approved → signing: nonce, transaction, authorization; the sign request leaves after commit."""
    await pipeline.request_signature(session, current_settings(), withdrawal_id)


@job(SIGNED_ACTOR, queue="custody")
async def withdrawal_signed(session: AsyncSession, withdrawal_id: str, request_digest: str, raw_tx: str,
                            tx_hash: str) -> None:
    await pipeline.on_signed(session, current_settings(), withdrawal_id, request_digest, raw_tx, tx_hash)


@job(REFUSED_ACTOR, queue="custody")
async def withdrawal_refused(session: AsyncSession, withdrawal_id: str, request_digest: str, reason: str,
                             message: str) -> None:
    await pipeline.on_refused(session, current_settings(), withdrawal_id, request_digest, reason, message)


@job(BROADCAST_WITHDRAWAL, queue="custody")
async def broadcast_withdrawal(session: AsyncSession, withdrawal_id: str) -> None:
    await pipeline.broadcast(session, current_settings(), withdrawal_id)


@job(TRACK_WITHDRAWAL, queue="custody", max_retries=0, expires_after_ms=TRACK_EXPIRES_AFTER_MS)
async def track_withdrawal(session: AsyncSession, withdrawal_id: str) -> None:
    await pipeline.track(session, current_settings(), withdrawal_id)


@job("custody.track_withdrawals", queue="custody", max_retries=0, expires_after_ms=TRACK_EXPIRES_AFTER_MS)
async def track_withdrawals(session: AsyncSession) -> None:
    """One ``custody.track_withdrawal`` per withdrawal in flight (the scheduler's entry point)."""
    for withdrawal_id in await pipeline.active_withdrawals(session):
        jobs.send_after_commit(session, TRACK_WITHDRAWAL, withdrawal_id)
