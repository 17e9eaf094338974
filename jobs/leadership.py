"""Which scheduler replica leads: the one holding the scheduler's lease (core.lease).

The scheduler is synchronous (APScheduler's threads, Dramatiq's blocking sends), the lease is
asyncpg: it is kept on an event loop of its own, in a thread, and the scheduler's threads ask it
questions across (``claim``). Every replica ticks; only the leader's ticks send.

A claim of ``(job, period)`` is written on the lease's own connection, so only the holder of the
lock can write one: a leader cut off from the database (its session ended, the lock with it, a
standby leading already) claims nothing, hence sends nothing, from the moment its session is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime

from prometheus_client import Gauge

from core.db import create_engine
from core.lease import Lease, LeaseLost, follow
from jobs.runs import CLAIM

log = logging.getLogger(__name__)

LEADER = Gauge("virtuoz_scheduler_leader", "1 while this scheduler replica leads (sends what its schedule "
               "fires), 0 while it stands by.")


class Leadership:
    """This replica's bid for the scheduler's lease, from ``start()`` to ``stop()``.

    ``on_lead`` runs on the lease's thread each time this replica starts leading: it must not block.
    """

    def __init__(self, database_url: str, seconds: float, *, key: str = "scheduler",
                 on_lead: Callable[[], None] | None = None) -> None:
        self.database_url = database_url
        self.seconds = seconds
        self.key = key
        self.on_lead = on_lead
        self.fired_by = f"{socket.gethostname()}:{os.getpid()}"
        self._leading = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._lease: Lease | None = None

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def start(self) -> Leadership:
        self._thread = threading.Thread(target=asyncio.run, args=(self._keep(),), name="scheduler-lease", daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Give the lease up (a standby takes over at its next poll) and end the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is not None and thread.is_alive() and loop is not None and stop is not None:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_leading(self, timeout: float) -> bool:
        return self._leading.wait(timeout)

    def claim(self, job: str, period: datetime) -> bool | None:
        """From a scheduler thread: True when this replica wrote ``(job, period)`` and should send; False
        when the period was already fired; None when this replica does not lead (or no longer does)."""
        if not self.leading or self._loop is None:
            return None
        future = asyncio.run_coroutine_threadsafe(self._claim(job, period), self._loop)
        try:
            return future.result(self.seconds)
        except FutureTimeout:
            # The row may have been written all the same: that period is then lost, not sent twice.
            future.cancel()
            return None

    async def _claim(self, job: str, period: datetime) -> bool | None:
        assert self._lease is not None
        try:
            written = await self._lease.execute(CLAIM, {"job": job, "period": period, "fired_by": self.fired_by})
        except LeaseLost:
            return None
        return written.first() is not None

    async def _keep(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        # One connection, the lease's own, and no pre-ping: a dead connection is a lost lease.
        engine = create_engine(self.database_url, pool_size=1, pre_ping=False)
        self._lease = Lease(engine, self.key, self.seconds, name="scheduler", alert="scheduler_lease_lost")
        try:
            await follow(self._lease, self._stop, self._lead)
        finally:
            await engine.dispose()

    async def _lead(self, until: asyncio.Event) -> None:
        self._leading.set()
        LEADER.set(1)
        log.info("scheduler: leading")
        try:
            if self.on_lead is not None:
                self.on_lead()
            await until.wait()
        finally:
            self._leading.clear()
            LEADER.set(0)
            log.info("scheduler: no longer leading")
