"""One active process of a kind; the others stand by and take over when it dies or hangs.

The lease is a PostgreSQL advisory lock held by a connection of its own. That session is told to
end after ``seconds`` without a query (``idle_session_timeout``), which releases the lock, and the
holder renews it (a query) every third of that. So a standby takes over within about ``seconds``
whatever became of the holder: a process that exits closes its socket at once, but a hung process,
a frozen virtual machine or a lost network would otherwise hold the lock until TCP keepalive gives
up, hours later.

A renewal that fails means the lease is lost: the holder's work is stopped at once and it stands by
again. Whatever must never be done by two holders at once is written on the lease's own connection
(``execute``): once the session is gone, so is the lock, and the write fails with it.

Used by the scanner (one per chain) and the scheduler (one for the platform).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Executable, text
from sqlalchemy.engine import Result
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(:key, 2))")
_EXPIRE_WHEN_IDLE = text("SELECT set_config('idle_session_timeout', :milliseconds, false)")
_RENEW = text("SELECT 1")


class LeaseLost(Exception):
    """The lease is not (or no longer) this process's: nothing was written."""


def session_limits(seconds: float) -> dict[str, str]:
    """Server settings for a leased process's own connections: no transaction of a hung holder outlives its lease."""
    return {"idle_in_transaction_session_timeout": str(int(seconds * 1000))}


class Lease:
    """The right to be the one ``name``: ``acquire`` stands by until it is ours, ``renew`` keeps it.

    ``key`` names the advisory lock; ``alert`` tags the log line of a lost lease.
    """

    def __init__(self, engine: AsyncEngine, key: str, seconds: float, *, name: str, alert: str) -> None:
        self.engine = engine
        self.key = key
        self.seconds = seconds
        self.name = name
        self.alert = alert
        self._holder: AsyncConnection | None = None
        # The holder is one connection: a renewal and a write must not interleave on it.
        self._using = asyncio.Lock()

    @property
    def renew_every(self) -> float:
        return self.seconds / 3

    @property
    def held(self) -> bool:
        return self._holder is not None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until the lease is ours (True) or ``stop`` is set (False)."""
        announced = False
        while not stop.is_set():
            try:
                if await self._try():
                    return True
                if not announced:
                    log.info("%s: another process holds the lease; standing by", self.name)
                    announced = True
            except (OSError, SQLAlchemyError) as error:
                log.warning("%s: database unavailable (%s); retrying", self.name, error)
            try:
                await asyncio.wait_for(stop.wait(), self.renew_every)
            except TimeoutError:
                pass
        return False

    async def _try(self) -> bool:
        connection = await self.engine.connect()
        try:
            if not await connection.scalar(_TRY_LOCK, {"key": self.key}):
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
        try:
            await self.execute(_RENEW)
            return True
        except LeaseLost:
            return False

    async def execute(self, statement: Executable, parameters: dict[str, Any] | None = None) -> Result[Any]:
        """Run and commit ``statement`` on the lease's connection: it succeeds only while the lease is
        ours. Raises ``LeaseLost`` (and gives the lease up) when the connection fails."""
        async with self._using:
            holder = self._holder
            if holder is None:
                raise LeaseLost(self.name)
            try:
                result = await holder.execute(statement, parameters)
                await holder.commit()
                return result
            except (OSError, SQLAlchemyError) as error:
                log.error("%s: lease lost (%s); stopping and standing by", self.name, error,
                          extra={"alert": self.alert})
                await self._close()
                raise LeaseLost(self.name) from error

    async def release(self) -> None:
        """Give the lease up: the connection is closed for good (a pooled one would keep the lock)."""
        async with self._using:
            await self._close()

    async def _close(self) -> None:
        holder, self._holder = self._holder, None
        if holder is not None:
            try:
                await holder.invalidate()
                await holder.close()
            except (OSError, SQLAlchemyError):
                pass  # a connection already gone holds no lock


async def follow(lease: Lease, stop: asyncio.Event, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Until ``stop``: stand by for the lease, then ``run(until)`` the work while the lease lasts.

    A lost lease cancels the run at once (another process may already hold it); ``stop`` lets it
    finish its step. Errors of the run itself (a misconfiguration) end ``follow``.
    """
    while await lease.acquire(stop):
        log.info("%s: lease acquired", lease.name)
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
