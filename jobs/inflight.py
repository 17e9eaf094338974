"""At most one message of a periodic job per subject in flight.

A scheduler tick sends a follow-up message per subject (a withdrawal to track) every few seconds;
when the worker falls behind (a chain node that times out on every call) those would pile up by
the thousand. So a message is sent only when it *claims* its subject: a Redis key per (job,
subject) set with ``NX`` and a TTL, deleted by the job once it has run. A claim is given back at
once when its transaction rolls back or its message cannot be sent (the broker restarting); the
TTL frees a subject whose message was lost later (a worker killed mid-job) or expired unrun.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import dramatiq
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import after_commit, on_rollback
from jobs.registry import broker_of, enqueue, message


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

    won = [subject for subject, claimed in zip(subjects, await asyncio.to_thread(claim_all), strict=True) if claimed]
    if won:
        on_rollback(session, _give_back, broker, namespace, job_name, won)
    return won


def send_after_commit(session: AsyncSession, job_name: str, subject: str) -> None:
    """Send the message that holds ``subject``'s claim once the transaction commits; if the send
    fails, the claim is given back, so the next tick sends again instead of waiting out the TTL."""
    broker = broker_of(session)
    built = message(job_name, subject)
    namespace = getattr(broker, "namespace", "dramatiq")

    async def send() -> None:
        try:
            await enqueue(broker, built)
        except Exception:
            await _give_back(broker, namespace, job_name, [subject])
            raise  # logged by the commit, like any send after commit

    after_commit(session, send)


async def _give_back(broker: dramatiq.Broker, namespace: str, job_name: str, subjects: list[str]) -> None:
    await asyncio.to_thread(broker.client.delete, *(_key(namespace, job_name, subject) for subject in subjects))


async def release(session: AsyncSession, job_name: str, subject: str) -> None:
    """The message about ``subject`` has run: the next tick may send another."""
    broker = broker_of(session)
    await _give_back(broker, getattr(broker, "namespace", "dramatiq"), job_name, [subject])
