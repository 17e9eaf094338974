"""Jobs against the real Redis and PostgreSQL: sent only after commit, run in one transaction.

Each test gets its own Redis key namespace, so its queues start empty and never see another
test's messages. The worker is a real ``dramatiq.Worker`` running in this process.
"""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
import redis.asyncio
from prometheus_client import REGISTRY, CollectorRegistry
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import jobs
from core.db import create_engine, session_factory, unit_of_work
from core.heartbeats import ServiceHeartbeat, record_heartbeat, stale_services
from core.metrics import serve_metrics
from devnet.processes import free_port
from jobs.broker import close_broker, create_broker, dead_letter_counts, queue_depths, queue_lengths
from jobs.heartbeat import HEARTBEATS, WORKERS
from jobs import registry
from jobs.registry import JobError, bind_broker, job
from jobs.metrics import watch_queues
from jobs.scheduler import build_scheduler
from jobs.worker import start_worker

JOIN_TIMEOUT_MS = 20_000  # a bound for a hung test, not a performance limit


# Test-only jobs. They write heartbeat rows under unique service names: no extra table needed.
@job("test.record_beat", queue="reports", max_retries=0)
async def record_beat(session: AsyncSession, service: str) -> None:
    await record_heartbeat(session, service)


@job("test.record_beat_then_fail", queue="reports", max_retries=0)
async def record_beat_then_fail(session: AsyncSession, service: str) -> None:
    await record_heartbeat(session, service)
    raise RuntimeError("fails after writing: the write must be rolled back")


@job("test.record_beat_and_forward", queue="reports", max_retries=0)
async def record_beat_and_forward(session: AsyncSession, service: str) -> None:
    await record_heartbeat(session, service)
    jobs.send_after_commit(session, "test.record_beat", f"{service}-forwarded")


@job("test.record_beat_slowly", queue="reports", max_retries=0, time_limit_ms=300)
async def record_beat_slowly(session: AsyncSession, service: str) -> None:
    await record_heartbeat(session, service)
    await asyncio.sleep(30)


@job("test.record_beat_if_fresh", queue="reports", max_retries=0, expires_after_ms=60_000)
async def record_beat_if_fresh(session: AsyncSession, service: str) -> None:
    await record_heartbeat(session, service)


class Abort(Exception):
    pass


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def broker(redis_url: str, database_url: str, namespace: str) -> Iterator[RedisBroker]:
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=2, namespace=namespace)
    yield broker
    broker.flush_all()
    close_broker(broker)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def factory(database_url: str, broker: RedisBroker) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    factory = session_factory(engine)
    bind_broker(factory, broker)
    yield factory
    await engine.dispose()


@pytest.fixture
def service() -> str:
    return f"test-{uuid.uuid4()}"


@asynccontextmanager
async def running_worker(broker: RedisBroker, queues: set[str]) -> AsyncIterator[None]:
    worker = start_worker(broker, queues, worker_threads=2)
    try:
        yield
    finally:
        await asyncio.to_thread(worker.stop, timeout=JOIN_TIMEOUT_MS)


async def join(broker: RedisBroker, queue: str) -> None:
    await asyncio.to_thread(broker.join, queue, timeout=JOIN_TIMEOUT_MS)


async def beat_of(factory: async_sessionmaker[AsyncSession], service: str) -> ServiceHeartbeat | None:
    async with factory() as session:
        return await session.scalar(select(ServiceHeartbeat).where(ServiceHeartbeat.service == service))


async def test_job_sent_after_commit_runs_on_a_worker(broker, factory, service) -> None:
    async with unit_of_work(factory) as session:
        jobs.send_after_commit(session, "test.record_beat", service)

    async with running_worker(broker, {"reports"}):
        await join(broker, "reports")

    beat = await beat_of(factory, service)
    assert beat is not None and beat.beats == 1


async def test_rolled_back_transaction_enqueues_nothing(broker, factory, redis_client, namespace, service) -> None:
    with pytest.raises(Abort):
        async with unit_of_work(factory) as session:
            await record_heartbeat(session, service)
            jobs.send_after_commit(session, "test.record_beat", f"{service}-from-job")
            raise Abort

    assert await queue_depths(redis_client, ["reports"], namespace=namespace) == {"reports": 0}
    assert await beat_of(factory, service) is None
    assert await beat_of(factory, f"{service}-from-job") is None


async def test_queue_depths_count_waiting_messages(broker, redis_client, namespace, service) -> None:
    for n in range(3):
        broker.enqueue(record_beat.message(f"{service}-{n}"))
    broker.enqueue(HEARTBEATS["custody"].message())

    depths = await queue_depths(redis_client, ["reports", "custody", "signer"], namespace=namespace)
    assert depths == {"reports": 3, "custody": 1, "signer": 0}

    async with running_worker(broker, {"reports"}):
        await join(broker, "reports")
    assert await queue_depths(redis_client, ["reports"], namespace=namespace) == {"reports": 0}


async def test_failing_job_leaves_no_partial_row_and_is_dead_lettered(
    broker, factory, redis_client, namespace, service, caplog
) -> None:
    message = broker.enqueue(record_beat_then_fail.message(service))

    async with running_worker(broker, {"reports"}):
        await join(broker, "reports")

    assert await beat_of(factory, service) is None
    assert await dead_letter_counts(redis_client, ["reports"], namespace=namespace) == {"reports": 1}
    failure = [r for r in caplog.records if r.name == "jobs.broker" and r.levelname == "ERROR"]
    assert failure and failure[0].job == "test.record_beat_then_fail"
    assert failure[0].message_id == message.message_id


async def test_job_over_its_time_limit_is_cancelled_and_rolled_back(broker, factory, service) -> None:
    broker.enqueue(record_beat_slowly.message(service))

    async with running_worker(broker, {"reports"}):
        await join(broker, "reports")

    assert await beat_of(factory, service) is None


async def test_job_can_send_a_follow_up_job_after_its_commit(broker, factory, service) -> None:
    broker.enqueue(record_beat_and_forward.message(service))

    async with running_worker(broker, {"reports"}):
        # One join is enough: the follow-up is enqueued after the first job's commit but before
        # its ack, so the queue is never empty in between.
        await join(broker, "reports")

    assert await beat_of(factory, service) is not None
    assert await beat_of(factory, f"{service}-forwarded") is not None


async def test_expired_message_is_acknowledged_without_running(broker, factory, redis_client, namespace, service) -> None:
    stale = record_beat_if_fresh.message(service)
    stale = stale.copy(message_timestamp=stale.message_timestamp - 120_000)
    broker.enqueue(stale)
    broker.enqueue(record_beat_if_fresh.message(f"{service}-fresh"))

    async with running_worker(broker, {"reports"}):
        await join(broker, "reports")

    assert await beat_of(factory, service) is None
    assert await beat_of(factory, f"{service}-fresh") is not None
    assert await dead_letter_counts(redis_client, ["reports"], namespace=namespace) == {"reports": 0}


async def test_scheduled_heartbeats_reach_every_worker_kind(broker, factory, settings) -> None:
    async with unit_of_work(factory) as session:
        await session.execute(delete(ServiceHeartbeat).where(ServiceHeartbeat.service.in_(WORKERS)))

    scheduled = build_scheduler(settings, broker).get_job("heartbeats")
    assert scheduled is not None
    scheduled.func(*scheduled.args)

    queues = {queue for worker_queues in WORKERS.values() for queue in worker_queues}
    async with running_worker(broker, queues):
        for heartbeat in HEARTBEATS.values():
            await join(broker, heartbeat.queue)

    async with factory() as session:
        assert await stale_services(session, list(WORKERS), timedelta(seconds=30)) == []


def test_scheduler_enqueues_heartbeats_at_start_then_every_interval(broker, settings) -> None:
    scheduler = build_scheduler(settings.model_copy(update={"heartbeat_interval_seconds": 7.0}), broker)
    scheduled = scheduler.get_job("heartbeats")
    assert scheduled.trigger.interval == timedelta(seconds=7)
    assert scheduled.next_run_time is not None  # runs at start, not one interval later
    assert scheduled.coalesce and scheduled.max_instances == 1


def test_job_arguments_are_ids_and_strings_only() -> None:
    assert record_beat.message("a", 1, True, None).args == ("a", 1, True, None)
    with pytest.raises(JobError, match="str"):
        record_beat.message(uuid.uuid4())
    with pytest.raises(JobError):
        record_beat.message(1.5)


def test_jobs_are_declared_on_known_queues_with_unique_names() -> None:
    async def noop(session: AsyncSession) -> None:
        pass

    with pytest.raises(JobError, match="unknown queue"):
        job("test.noop", queue="nowhere")(noop)
    with pytest.raises(JobError, match="declared twice"):
        job("test.record_beat", queue="reports")(noop)
    with pytest.raises(JobError, match="domain.verb"):
        job("noop", queue="reports")(noop)


async def test_sending_from_a_session_without_a_broker_is_refused(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        with pytest.raises(JobError, match="bind_broker"):
            async with unit_of_work(session_factory(engine)) as session:
                jobs.send_after_commit(session, "test.record_beat", "never-sent")
    finally:
        await engine.dispose()


def test_every_job_name_a_module_sends_has_an_actor() -> None:
    # The senders declare the names they use at import; the process wiring loaded every actor.
    assert registry.unanswered() == {}


def test_a_broker_refuses_a_sent_name_that_no_actor_answers(redis_url: str) -> None:
    jobs.name("test.nobody_answers")
    try:
        with pytest.raises(JobError, match=r"test\.nobody_answers \(sent by tests\."):
            create_broker(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    finally:
        registry._declared.pop("test.nobody_answers")


def test_sending_a_name_without_an_actor_fails_inside_the_transaction() -> None:
    with pytest.raises(JobError, match="no actor answers"):
        jobs.message("test.nobody_at_all", "x")


def job_sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_worker_metrics_count_runs_retries_failures_and_dead_letters(broker, factory, service, settings) -> None:
    labels = {"queue": "reports"}
    done = {**labels, "actor": "test.record_beat", "outcome": "done"}
    failed = {**labels, "actor": "test.record_beat_then_fail", "outcome": "failed"}
    before = {name: job_sample(name, **found) for name, found in [
        ("virtuoz_job_messages_total", done), ("virtuoz_job_messages_total", failed),
        ("virtuoz_job_retries_total", {**labels, "actor": "test.record_beat"}),
        ("virtuoz_job_dead_letters_total", {**labels, "actor": "test.record_beat_then_fail"}),
        ("virtuoz_job_latency_seconds_count", labels)]}
    broker.enqueue(record_beat.message(service))
    first = record_beat.message(f"{service}-again")
    broker.enqueue(first.copy(options={**first.options, "retries": 1}))  # as Retries sends a retry
    broker.enqueue(record_beat_then_fail.message(f"{service}-fails"))

    async with running_worker(broker, {"reports"}):
        await join(broker, "reports")

    assert job_sample("virtuoz_job_retries_total", queue="reports", actor="test.record_beat") == \
        before["virtuoz_job_retries_total"] + 1
    assert job_sample("virtuoz_job_dead_letters_total", queue="reports", actor="test.record_beat_then_fail") == \
        before["virtuoz_job_dead_letters_total"] + 1
    assert job_sample("virtuoz_job_latency_seconds_count", queue="reports") == \
        before["virtuoz_job_latency_seconds_count"] + 3
    assert job_sample("virtuoz_job_messages_total", **failed) >= 1


async def test_a_worker_serves_its_queue_lengths_read_from_redis(broker, service, settings, namespace) -> None:
    broker.enqueue(record_beat_then_fail.message(f"{service}-dead"))
    async with running_worker(broker, {"reports"}):
        await join(broker, "reports")
    broker.enqueue(record_beat.message(service))  # waiting: no worker runs now
    broker.enqueue(record_beat.message(f"{service}-later"), delay=3_600_000)

    queues = CollectorRegistry()
    watch_queues(lambda: queue_lengths(broker, ["reports"]), registry=queues)
    server = serve_metrics(settings.model_copy(update={"metrics_port": free_port()}), "worker:test", queues)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        body = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())).decode()
    finally:
        server.shutdown()
        server.server_close()
    lines = set(body.splitlines())
    assert 'virtuoz_queue_depth{queue="reports"} 1.0' in lines
    assert 'virtuoz_queue_delayed{queue="reports"} 1.0' in lines
    assert 'virtuoz_queue_dead_letters{queue="reports"} 1.0' in lines
    assert any(line.startswith("process_cpu_seconds_total ") for line in lines)  # the process's own, too
