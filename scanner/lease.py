"""One active scanner per chain; the others stand by and take over when it dies or hangs.

The lease is a PostgreSQL advisory lock held by a connection of its own. That session is told to
end after ``seconds`` without a query (``idle_session_timeout``), which releases the lock, and the
active scanner renews it (a query) every third of that. So a standby takes over within about
``seconds`` whatever became of the active one: a process that exits closes its socket at once,
but a hung process, a frozen virtual machine or a lost network would otherwise hold the lock until
TCP keepalive gives up, hours later. The scanner's own connections end their transactions as
quickly (``idle_in_transaction_session_timeout``): a scanner frozen inside one would otherwise keep
the cursor's row locked from its successor.

A renewal that fails means the lease is lost: the scanner is stopped at once and stands by again.
The cursor only moves by compare-and-set, which covers the moment in between: two scanners never
both move it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(:key, 2))")
_EXPIRE_WHEN_IDLE = text("SELECT set_config('idle_session_timeout', :milliseconds, false)")
_RENEW = text("SELECT 1")


def session_limits(seconds: float) -> dict[str, str]:
    """Server settings for the scanner's own connections: no transaction of a hung scanner outlives its lease."""
    return {"idle_in_transaction_session_timeout": str(int(seconds * 1000))}


class Lease:
    """The right to follow ``chain``: ``acquire`` stands by until it is ours, ``renew`` keeps it."""

    def __init__(self, engine: AsyncEngine, chain: str, seconds: float) -> None:
        self.engine = engine
        self.chain = chain
        self.seconds = seconds
        self._holder: AsyncConnection | None = None

    @property
    def renew_every(self) -> float:
        return self.seconds / 3

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until the lease is ours (True) or ``stop`` is set (False)."""
        announced = False
        while not stop.is_set():
            try:
                if await self._try():
                    return True
                if not announced:
                    log.info("another scanner follows %s; standing by", self.chain)
                    announced = True
            except (OSError, SQLAlchemyError) as error:
                log.warning("scanner %s: database unavailable (%s); retrying", self.chain, error)
            try:
                await asyncio.wait_for(stop.wait(), self.renew_every)
            except TimeoutError:
                pass
        return False

    async def _try(self) -> bool:
        connection = await self.engine.connect()
        try:
            if not await connection.scalar(_TRY_LOCK, {"key": f"scanner:{self.chain}"}):
                await connection.rollback()
                await connection.close()
                return False
            await connection.execute(_EXPIRE_WHEN_IDLE, {"milliseconds": str(int(self.seconds * 1000))})
            await connection.commit()  # the lock is the session's: it outlives the transaction
        except BaseException:
            await connection.invalidate()
            await connection.close()
            raise
        self._holder = connection
        return True

    async def renew(self) -> bool:
        """Show the server that the holder is alive; False if the lease was lost meanwhile."""
        if self._holder is None:
            return False
        try:
            await self._holder.scalar(_RENEW)
            await self._holder.commit()
            return True
        except (OSError, SQLAlchemyError) as error:
            log.error("scanner %s: lease lost (%s); stopping and standing by", self.chain, error,
                      extra={"alert": "scanner_lease_lost"})
            await self.release()
            return False

    async def release(self) -> None:
        """Give the lease up: the connection is closed for good (a pooled one would keep the lock)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            try:
                await holder.invalidate()
                await holder.close()
            except (OSError, SQLAlchemyError):
                pass  # a connection already gone holds no lock


async def follow(lease: Lease, stop: asyncio.Event, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Until ``stop``: stand by for the lease, then ``run(until)`` the scanner while the lease lasts.

    A lost lease cancels the run at once (another scanner may already be following); ``stop``
    lets it finish its step. Errors of the run itself (a misconfiguration) end ``follow``.
    """
    while await lease.acquire(stop):
        log.info("scanner %s: lease acquired", lease.chain)
        until = asyncio.Event()
        running = asyncio.ensure_future(run(until))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            lost = False
            while not running.done() and not stop.is_set():
                await asyncio.wait({running, stopping}, timeout=lease.renew_every,
                                   return_when=asyncio.FIRST_COMPLETED)
                if not running.done() and not stop.is_set() and not await lease.renew():
                    lost = True
                    break
            if lost:
                running.cancel()
            until.set()
            try:
                await running
            except asyncio.CancelledError:
                if not lost:
                    raise
        finally:
            stopping.cancel()
            if not running.done():
                running.cancel()
            await lease.release()
        if not lost:
            return
