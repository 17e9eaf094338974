"""A claim of "one message in flight" never outlives a message that could not be sent.

Against a broker that refuses every send (RabbitMQ's port, closed) with Redis up, as when RabbitMQ
restarts: before, the claim stayed until its TTL and the subject (a withdrawal to track) waited 30 s
after the broker was back.
"""

from __future__ import annotations

import asyncio

from core.db import commit, create_engine, rollback, session_factory
from devnet.processes import free_port
from jobs import inflight
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker

JOB = "custody.track_withdrawal"
TTL_MS = 60_000


async def test_a_claim_whose_message_cannot_be_sent_is_freed_at_once(database_url, redis_url) -> None:
    broker = create_broker(redis_url, broker_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    engine = create_engine(database_url, pool_size=1)
    sessions = session_factory(engine)
    bind_broker(sessions, broker)
    subject = f"subject-{free_port()}"
    try:
        async with sessions() as session:
            assert await inflight.claim(session, JOB, [subject], TTL_MS) == [subject]
            inflight.send_after_commit(session, JOB, subject)
            await commit(session)  # the send fails after the commit: logged, the claim given back
        async with sessions() as session:
            assert await inflight.claim(session, JOB, [subject], TTL_MS) == [subject]
            await rollback(session)  # a claim made in a transaction that does not commit is given back too
        async with sessions() as session:
            assert await inflight.claim(session, JOB, [subject], TTL_MS) == [subject]
    finally:
        await asyncio.to_thread(broker.client.delete, f"dramatiq:inflight:{JOB}:{subject}")
        close_broker(broker)
        await engine.dispose()
