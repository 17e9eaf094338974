"""`virtuoz worker NAME`: consume one worker kind's queues until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

import dramatiq

from core.logging import configure_logging
from core.settings import Settings, SettingsError
from jobs.broker import close_broker, create_broker, queue_lengths
from jobs.context import set_settings
from core.metrics import serve_metrics
from jobs.heartbeat import HEARTBEATS
from jobs.metrics import watch_queues
from jobs.registry import WORKERS

log = logging.getLogger(__name__)

DEFAULT_WORKER_THREADS = 8
# Dramatiq's default idle poll (worker_timeout): an idle consumer backs off up to this long.
DEFAULT_POLL_MS = 1000
# Jobs in flight get this long to finish; unacknowledged messages go back to Redis, so a job cut
# short runs again elsewhere (every job is idempotent). Below Kubernetes' 30 s grace period.
SHUTDOWN_TIMEOUT_MS = 20_000
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class UnknownWorker(SettingsError):
    """NAME is not a worker kind; the message lists the valid ones (the CLI prints it, exit 2)."""


def worker_queues(name: str) -> set[str]:
    if name not in WORKERS:
        raise UnknownWorker(f"unknown worker {name!r}: valid names are {', '.join(sorted(WORKERS))}")
    return set(WORKERS[name])


class StopRequest:
    """Set by SIGTERM/SIGINT; the main thread polls it and does the shutdown itself."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def wait(self, poll_seconds: float = 0.2) -> int:
        while self.signal is None:
            time.sleep(poll_seconds)
        return self.signal


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGTERM/SIGINT into a flag for the block; the previous handlers come back after it.

    The handler only records the signal: shutting Dramatiq or APScheduler down from inside it
    would take their locks in a thread that may already hold them.
    """
    request = StopRequest()

    def record(signum: int, frame: FrameType | None) -> None:
        request.signal = signum

    previous = {signum: signal.signal(signum, record) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def start_worker(
    broker: dramatiq.Broker, queues: Iterable[str], *, worker_threads: int = DEFAULT_WORKER_THREADS,
    poll_ms: int = DEFAULT_POLL_MS,
) -> dramatiq.Worker:
    """Start consuming ``queues`` in this process (threads); the caller must ``stop()`` it."""
    # The dramatiq CLI emits process_boot before it starts a Worker, and TimeLimit starts its
    # watchdog thread on it: without this, time limits are silently never enforced.
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, queues=set(queues), worker_threads=worker_threads, worker_timeout=poll_ms)
    worker.start()
    return worker


def run_worker(settings: Settings, name: str, *, worker_threads: int = DEFAULT_WORKER_THREADS) -> None:
    """Run worker kind ``name`` until SIGTERM/SIGINT, then stop cleanly and return."""
    queues = worker_queues(name)
    settings.check()
    set_settings(settings)  # what jobs read with jobs.context.current_settings()
    configure_logging(settings.log_level, json=settings.log_json, process=f"worker:{name}")  # as the CLI names it
    broker = create_broker(
        settings.require_redis_url(),
        broker_url=settings.broker_url,
        database_url=settings.require_database_url(),
        database_pool_size=settings.database_pool_size,
    )
    watch_queues(lambda: queue_lengths(broker, queues))
    serve_metrics(settings, f"worker:{name}")
    with stop_on_signals() as stop:
        worker = start_worker(broker, queues, worker_threads=worker_threads, poll_ms=settings.worker_poll_ms)
        try:
            # Beat at boot: readiness turns green now, not at the scheduler's next tick.
            broker.enqueue(HEARTBEATS[name].message())
            log.info("worker %s consuming %s", name, ", ".join(sorted(queues)))
            received = stop.wait()
            log.info("worker %s stopping on %s", name, signal.Signals(received).name)
        finally:
            worker.stop(timeout=SHUTDOWN_TIMEOUT_MS)
            close_broker(broker)
    log.info("worker %s stopped", name)
