"""The Dramatiq broker a process builds from its settings, and the actors that run our jobs.

Every registered ``JobSpec`` becomes an async actor on the broker. The actor runs the job inside
``core.db.unit_of_work``: the job only flushes, the wrapper commits once, and what the job
buffered with ``after_commit`` (follow-up jobs, notifications) is sent only after that commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NamedTuple

import dramatiq
import redis
import redis.asyncio
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.middleware import (
    AgeLimit,
    AsyncIO,
    Callbacks,
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory, unit_of_work
from core.settings import is_redis_url
from jobs.metrics import JobMetrics
from jobs.registry import (
    DEFAULT_MAX_RETRIES,
    JobArg,
    JobError,
    JobSpec,
    bind_broker,
    enqueue,
    registered_jobs,
    unanswered,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "JobDatabase",
    "close_broker",
    "create_broker",
    "dead_letter_counts",
    "enqueue",
    "queue_depths",
]

log = logging.getLogger(__name__)

# Dramatiq's Redis keys start with this; tests pass their own namespace to isolate queues.
DEFAULT_NAMESPACE = "dramatiq"


class JobDatabase(Middleware):
    """The worker's database engine, created on the AsyncIO middleware's event loop.

    asyncpg connections belong to the loop that opened them, and every async actor runs on the
    single loop thread the AsyncIO middleware starts at worker boot. So the engine is created
    there, on the first job, and disposed there at shutdown, before that loop stops.
    """

    def __init__(self, database_url: str | None, pool_size: int) -> None:
        self.database_url = database_url
        self.pool_size = pool_size
        self._engine: AsyncEngine | None = None
        self._factory: async_sessionmaker[AsyncSession] | None = None

    def session_factory(self, broker: dramatiq.Broker) -> async_sessionmaker[AsyncSession]:
        """Called on the loop thread only, without an await in between: no lock is needed."""
        if self._factory is None:
            if not self.database_url:
                raise JobError("this broker only sends jobs: it was built without a database_url")
            self._engine = create_engine(self.database_url, pool_size=self.pool_size)
            factory = session_factory(self._engine)
            bind_broker(factory, broker)  # so jobs can send follow-up jobs after their commit
            self._factory = factory
        return self._factory

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # After-hooks run in reverse order of the middleware list and this one comes after
        # AsyncIO, so the loop still runs here. A worker started again later gets a new loop,
        # hence a new engine.
        engine, self._engine, self._factory = self._engine, None, None
        loop_thread = get_event_loop_thread()
        if engine is not None and loop_thread is not None:
            loop_thread.run_coroutine(engine.dispose())


def create_broker(
    redis_url: str,
    *,
    broker_url: str | None = None,
    database_url: str | None = None,
    database_pool_size: int = 10,
    namespace: str = DEFAULT_NAMESPACE,
) -> dramatiq.Broker:
    """The broker with every registered job declared as an actor: Redis, or RabbitMQ when
    ``broker_url`` is an ``amqp://`` URL (Redis still holds the keys kept beside the queues).

    Processes that only send (api, scheduler) omit ``database_url``; workers pass it. A job name
    that some module sends but no actor answers is refused here, at start, not at 3 a.m.
    """
    missing = unanswered()
    if missing:
        raise JobError("jobs sent but never answered (load their actors in cli.registry): "
                       + ", ".join(f"{job_name} (sent by {sender})" for job_name, sender in sorted(missing.items())))
    database = JobDatabase(database_url, database_pool_size)
    broker = message_broker(redis_url, broker_url, namespace, [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Retries(max_retries=DEFAULT_MAX_RETRIES),
        CurrentMessage(),
        AsyncIO(),
        database,  # after AsyncIO: see JobDatabase.after_worker_shutdown
        JobMetrics(),
    ])
    for spec in registered_jobs():
        if spec.fn is not None:
            _declare_actor(broker, spec, database)
    return broker


class RabbitmqBesideRedis(RabbitmqBroker):
    """Dramatiq's messages on RabbitMQ; ``client`` and ``namespace`` are the Redis the platform keeps
    its own keys in (claims of messages in flight), as a ``RedisBroker`` has them."""

    def __init__(self, url: str, *, client: redis.Redis, namespace: str, middleware: list[Middleware]) -> None:
        # Publisher confirms: an enqueue returns once RabbitMQ has the message, or raises.
        super().__init__(url=url, middleware=middleware, confirm_delivery=True)
        self.client, self.namespace = client, namespace


def message_broker(redis_url: str, broker_url: str | None, namespace: str,
                   middleware: list[Middleware]) -> RedisBroker | RabbitmqBesideRedis:
    """Dramatiq's broker for ``broker_url`` (unset: Redis at ``redis_url``), with ``middleware``."""
    url = broker_url or redis_url
    client = redis.Redis.from_url(url if is_redis_url(url) else redis_url,
                                  socket_connect_timeout=5, socket_timeout=30, health_check_interval=30)
    if is_redis_url(url):
        return RedisBroker(client=client, namespace=namespace, middleware=middleware)
    return RabbitmqBesideRedis(url, client=client, namespace=namespace, middleware=middleware)


def close_broker(broker: dramatiq.Broker) -> None:
    # close() leaves the Redis client's connections open; close them too.
    broker.close()
    broker.client.close()


class QueueLengths(NamedTuple):
    waiting: int  # ready to run, not yet taken by a worker
    delayed: int  # retries in backoff and delayed sends, not yet taken by a worker
    dead: int  # retries exhausted; Dramatiq keeps them a week


def queue_lengths(broker: dramatiq.Broker, queues: Iterable[str]) -> dict[str, QueueLengths]:
    """Each queue's lengths as the broker holds them (blocking: call it from a thread)."""
    names = list(queues)
    if isinstance(broker, RabbitmqBroker):
        return {queue: QueueLengths(*broker.get_queue_message_counts(queue)) for queue in names}
    pipe = broker.client.pipeline(transaction=False)
    for queue in names:
        waiting, delayed, dead = _redis_keys(broker.namespace, queue)
        pipe.llen(waiting)
        pipe.llen(delayed)
        pipe.zcard(dead)
    counts = pipe.execute()
    return {queue: QueueLengths(*counts[3 * index:3 * index + 3]) for index, queue in enumerate(names)}


def _redis_keys(namespace: str, queue: str) -> tuple[str, str, str]:
    """A queue's keys in Dramatiq's Redis layout (dispatch.lua): the list of messages waiting, the
    delay queue (itself a queue), the sorted set of dead letters."""
    return f"{namespace}:{queue}", f"{namespace}:{queue}.DQ", f"{namespace}:{queue}.XQ"


def _declare_actor(broker: RedisBroker, spec: JobSpec, database: JobDatabase) -> None:
    async def run_job(*args: JobArg) -> None:
        message = CurrentMessage.get_current_message()
        message_id = message.message_id if message else None
        context = {"job": spec.name, "message_id": message_id}
        if message and spec.expires_after_ms is not None:
            if current_millis() - message.message_timestamp > spec.expires_after_ms:
                log.info("job %s: message %s expired unrun", spec.name, message_id, extra=context)
                return
        try:
            async with unit_of_work(database.session_factory(broker)) as session:
                await spec.fn(session, *args)
        except Exception:
            # Logged here with the job and message ids, then re-raised so Retries decides.
            log.exception("job %s failed (message %s)", spec.name, message_id, extra=context)
            raise

    # Dramatiq names the actor's logger after the function's module: keep the job's.
    run_job.__module__ = spec.fn.__module__
    run_job.__qualname__ = run_job.__name__ = spec.fn.__name__
    dramatiq.actor(
        run_job,
        broker=broker,  # never the global broker: get_broker() would invent one on localhost
        actor_name=spec.name,
        queue_name=spec.queue,
        max_retries=spec.max_retries,
        time_limit=spec.time_limit_ms,
    )


async def queue_depths(
    client: redis.asyncio.Redis, queues: Iterable[str], *, namespace: str = DEFAULT_NAMESPACE
) -> dict[str, int]:
    """Messages waiting in each queue: the Redis list ``<namespace>:<queue>`` (dispatch.lua).

    Counts what is ready to run; messages a worker already fetched, delayed retries
    (``<queue>.DQ``) and dead letters (``<queue>.XQ``) are not waiting.
    """
    names = list(queues)
    async with client.pipeline(transaction=False) as pipe:
        for queue in names:
            pipe.llen(_redis_keys(namespace, queue)[0])
        counts = await pipe.execute()
    return {queue: int(count) for queue, count in zip(names, counts, strict=True)}


async def dead_letter_counts(
    client: redis.asyncio.Redis, queues: Iterable[str], *, namespace: str = DEFAULT_NAMESPACE
) -> dict[str, int]:
    """Messages that exhausted their retries, per queue: the sorted set ``<namespace>:<queue>.XQ``.

    Dramatiq keeps them for 7 days; a non-zero count on ``custody`` is money waiting on a human.
    """
    names = list(queues)
    async with client.pipeline(transaction=False) as pipe:
        for queue in names:
            pipe.zcard(_redis_keys(namespace, queue)[2])
        counts = await pipe.execute()
    return {queue: int(count) for queue, count in zip(names, counts, strict=True)}
