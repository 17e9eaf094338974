"""Sweep jobs of the treasury worker (queue ``treasury``), and the signer's replies to sweeps and top-ups.

Message contract with the signer (``core.sweep_requests``): this worker sends
``signer.sign_sweep(request_id, kind, index, unsigned_tx, authorization)`` to the ``signer`` queue; the
signer answers here with ``treasury.sweep_signed`` or ``treasury.sweep_refused``, believed only once
the signer key's signature verifies (``custody.treasury.replies``).

The scheduler sends ``treasury.find_sweeps`` every ``sweep_interval_seconds`` (plan what is due) and
``treasury.track_sweeps`` every ``sweep_track_seconds`` (one ``treasury.track_sweep`` per sweep in
flight, at most one in flight each: ``jobs.inflight``), which re-drives whatever a lost message or a
crash left behind. Every job is idempotent; a node outage is logged, never dead-lettered: the next
tick is the retry.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core.db import rollback
from core.sweep_requests import SWEEP_REFUSED_ACTOR, SWEEP_SIGNED_ACTOR, TREASURY_QUEUE
from custody.chains import ChainError
from custody.treasury import pipeline, replies, service
from jobs import inflight
from jobs.context import current_settings
from jobs.registry import job

log = logging.getLogger(__name__)

# Periodic: a message older than this was superseded by newer ones.
TRACK_EXPIRES_AFTER_MS = 30_000
TRACK_SWEEP = jobs.name("treasury.track_sweep")


@job("treasury.find_sweeps", queue=TREASURY_QUEUE, max_retries=0, expires_after_ms=TRACK_EXPIRES_AFTER_MS)
async def find_sweeps(session: AsyncSession) -> None:
    """Plan the sweeps due on every chain (the scheduler's entry point)."""
    await service.find_sweeps(session, current_settings())


@job("treasury.track_sweeps", queue=TREASURY_QUEUE, max_retries=0, expires_after_ms=TRACK_EXPIRES_AFTER_MS)
async def track_sweeps(session: AsyncSession) -> None:
    """One ``treasury.track_sweep`` per sweep in flight, unless the last one is still waiting."""
    subjects = await pipeline.active_sweeps(session)
    for subject in await inflight.claim(session, TRACK_SWEEP, subjects, TRACK_EXPIRES_AFTER_MS):
        inflight.send_after_commit(session, TRACK_SWEEP, subject)


@job(TRACK_SWEEP, queue=TREASURY_QUEUE, max_retries=0, expires_after_ms=TRACK_EXPIRES_AFTER_MS)
async def track_sweep(session: AsyncSession, sweep_id: str) -> None:
    try:
        await _drive(session, sweep_id)
    finally:
        await inflight.release(session, TRACK_SWEEP, sweep_id)


@job(service.DRIVE_SWEEP, queue=TREASURY_QUEUE)
async def drive_sweep(session: AsyncSession, sweep_id: str) -> None:
    """The next step of a sweep at once (after it was planned, or the signer answered)."""
    await _drive(session, sweep_id)


async def _drive(session: AsyncSession, sweep_id: str) -> None:
    try:
        await pipeline.drive(session, current_settings(), sweep_id)
    except ChainError as unreachable:
        # Expected during a node outage: nothing of this run is kept, the tracker tries again.
        await rollback(session)
        log.warning("sweep %s: %s", sweep_id, unreachable)


@job(SWEEP_SIGNED_ACTOR, queue=TREASURY_QUEUE)
async def sweep_signed(session: AsyncSession, request_id: str, request_digest: str, raw_tx: str, tx_hash: str,
                       signature: str | None = None) -> None:
    await replies.on_signed(session, current_settings(), request_id, request_digest, raw_tx, tx_hash, signature)


@job(SWEEP_REFUSED_ACTOR, queue=TREASURY_QUEUE)
async def sweep_refused(session: AsyncSession, request_id: str, request_digest: str, reason: str, message: str,
                        signature: str | None = None) -> None:
    await replies.on_refused(session, current_settings(), request_id, request_digest, reason, message, signature)
