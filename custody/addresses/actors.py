"""The allocator's jobs: keep every chain's deposit address pool above its low-water mark.

The allocator reads the account xpubs from ``settings.xpub_file`` and nothing else: it never
opens the signer's keystore and cannot derive a private key. It believes the file only with the
signer key's signature (``custody.hd.signed_xpubs``): a swapped file would send deposits elsewhere.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

import jobs
from core.settings import UnknownChain
from custody.addresses.pool import refill_pool
from custody.addresses.service import REFILL
from custody.hd import XpubError, signed_xpubs
from jobs.context import current_settings
from jobs.registry import job

log = logging.getLogger(__name__)

# The scheduler sends a refill every minute and allocation sends one after every assignment:
# an old or failed message is superseded by the next one, so retry little and drop stale ones.
REFILL_MAX_RETRIES = 2
REFILL_EXPIRES_AFTER_MS = 5 * 60_000


@job(REFILL, queue="allocator", max_retries=REFILL_MAX_RETRIES, expires_after_ms=REFILL_EXPIRES_AFTER_MS)
async def refill(session: AsyncSession, chain: str) -> None:
    """Top up ``chain``'s pool of unassigned deposit addresses."""
    settings = current_settings()
    try:
        configured = settings.chain(chain)
    except UnknownChain:
        log.warning("allocator.refill: chain %r is not configured; nothing to do", chain, extra={"chain": chain})
        return
    xpubs = signed_xpubs(settings)
    account = xpubs.get(chain)
    if account is None:
        raise XpubError(f"{settings.xpub_file} has no xpub for chain {chain!r}: run `virtuoz signer init` for it")
    if account.account != configured.account:
        raise XpubError(f"{chain}: the xpub file holds account {account.account}, the settings say {configured.account}")
    await refill_pool(session, chain, account.xpub, settings.address_pool_low_water, settings.address_pool_batch)


@job("allocator.refill_all", queue="allocator", max_retries=0, expires_after_ms=REFILL_EXPIRES_AFTER_MS)
async def refill_all(session: AsyncSession) -> None:
    """Send one ``allocator.refill`` per configured chain (the scheduler's entry point).

    The worker's settings name the chains, so the scheduler needs no chain list, and one chain's
    broken xpub does not stop the others' refills.
    """
    for chain in current_settings().chains:
        jobs.send_after_commit(session, REFILL, chain.name)
