"""One heartbeat job per worker kind, enqueued by the scheduler and read by `/readiness`.

The job ``heartbeat.<worker>`` runs on the worker's first queue and upserts the row
``service_heartbeats(<worker>)``: a fresh row proves scheduler → Redis → that worker →
PostgreSQL end to end, not merely that a process exists.
"""

from __future__ import annotations

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from core.heartbeats import record_heartbeat
from jobs.registry import WORKERS, JobSpec, job

__all__ = ["HEARTBEATS", "WORKERS", "enqueue_heartbeats"]

# A heartbeat that waited this long in the queue says nothing about now, and the scheduler has
# queued newer ones since: a worker back from an outage skips the backlog instead of writing
# thousands of upserts ahead of real custody messages.
HEARTBEAT_EXPIRES_AFTER_MS = 60_000


def _heartbeat_job(worker: str) -> JobSpec:
    async def record_worker_heartbeat(session: AsyncSession) -> None:
        await record_heartbeat(session, worker)

    record_worker_heartbeat.__name__ = f"record_{worker}_heartbeat"
    return job(
        f"heartbeat.{worker}",
        queue=WORKERS[worker][0],
        max_retries=0,  # the next beat is a few seconds away; a retry would only be older news
        time_limit_ms=10_000,
        expires_after_ms=HEARTBEAT_EXPIRES_AFTER_MS,
    )(record_worker_heartbeat)


HEARTBEATS: dict[str, JobSpec] = {worker: _heartbeat_job(worker) for worker in WORKERS}


def enqueue_heartbeats(broker: dramatiq.Broker) -> None:
    """Send one heartbeat message to each worker kind (synchronous: the scheduler's threads)."""
    for heartbeat in HEARTBEATS.values():
        broker.enqueue(heartbeat.message())
