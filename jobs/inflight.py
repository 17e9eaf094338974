"""At most one message of a periodic job per subject in flight.

A scheduler tick sends a follow-up message per subject (a withdrawal to track) every few seconds;
when the worker falls behind (a chain node that times out on every call) those would pile up by
the thousand. So a message is sent only when it *claims* its subject: a Redis key per (job,
subject) set with ``NX`` and a TTL, deleted by the job once it has run. A claim made in a
transaction that then rolls back only delays the next message by the TTL; the TTL also frees a
subject whose message was lost (a worker killed mid-job) or expired unrun.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from jobs.registry import broker_of


def _key(namespace: str, job_name: str, subject: str) -> str:
    return f"{namespace}:inflight:{job_name}:{subject}"


async def claim(session: AsyncSession, job_name: str, subjects: Sequence[str], ttl_ms: int) -> list[str]:
    """The subjects no message of ``job_name`` is in flight for; each is claimed for ``ttl_ms``."""
    if not subjects:
        return []
    broker = broker_of(session)
    namespace = getattr(broker, "namespace", "dramatiq")

    def claim_all() -> list[bool | None]:
        # One round trip for the whole tick; Dramatiq's Redis client is synchronous.
        pipe = broker.client.pipeline(transaction=False)
        for subject in subjects:
            pipe.set(_key(namespace, job_name, subject), "1", nx=True, px=ttl_ms)
        return pipe.execute()

    claimed = await asyncio.to_thread(claim_all)
    return [subject for subject, won in zip(subjects, claimed, strict=True) if won]


async def release(session: AsyncSession, job_name: str, subject: str) -> None:
    """The message about ``subject`` has run: the next tick may send another."""
    broker = broker_of(session)
    await asyncio.to_thread(broker.client.delete, _key(getattr(broker, "namespace", "dramatiq"), job_name, subject))
