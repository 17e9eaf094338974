"""Jobs of the hot and cold wallets (``custody.treasury.hot_cold``, ``refills``), on the ``treasury`` queue.

``treasury.check_levels`` is the scheduler's entry (every ``treasury_check_seconds``); it sends the
tracking of every transfer and refill in flight, which therefore have no retries of their own: a
node outage is logged and the next check is the retry. The signer's answers to hot → cold requests
arrive on the custody queue like every reply (``custody.withdrawals.requesters``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import rollback
from core.settings import Settings
from custody.chains import ChainError
from custody.treasury import hot_cold, refills
from jobs.context import current_settings
from jobs.registry import job

log = logging.getLogger(__name__)

# A check not run by then has been superseded by the next one.
CHECK_EXPIRES_AFTER_MS = 60_000


@job("treasury.check_levels", queue="treasury", max_retries=0, expires_after_ms=CHECK_EXPIRES_AFTER_MS)
async def check_levels(session: AsyncSession) -> None:
    await hot_cold.check_levels(session, current_settings())


@job(hot_cold.SIGN_COLD_TRANSFER, queue="treasury")
async def sign_cold_transfer(session: AsyncSession, transfer_id: str) -> None:
    await hot_cold.request_signature(session, current_settings(), transfer_id)


@job(hot_cold.BROADCAST_COLD_TRANSFER, queue="treasury")
async def broadcast_cold_transfer(session: AsyncSession, transfer_id: str) -> None:
    await hot_cold.broadcast(session, current_settings(), transfer_id)


@job(hot_cold.TRACK_COLD_TRANSFER, queue="treasury", max_retries=0, expires_after_ms=CHECK_EXPIRES_AFTER_MS)
async def track_cold_transfer(session: AsyncSession, transfer_id: str) -> None:
    await _tracking(session, transfer_id, hot_cold.track)


@job(hot_cold.TRACK_REFILL, queue="treasury", max_retries=0, expires_after_ms=CHECK_EXPIRES_AFTER_MS)
async def track_refill(session: AsyncSession, refill_id: str) -> None:
    await _tracking(session, refill_id, refills.track)


async def _tracking(session: AsyncSession, subject: str,
                    step: Callable[[AsyncSession, Settings, str], Awaitable[None]]) -> None:
    try:
        await step(session, current_settings(), subject)
    except ChainError as unreachable:
        await rollback(session)  # nothing of this run is kept: the next check tries again
        log.warning("treasury tracking of %s: %s", subject, unreachable)
