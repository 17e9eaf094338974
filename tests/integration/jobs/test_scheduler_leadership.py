"""Scheduler replicas against one PostgreSQL: one leads, a standby takes over when it dies, and a
period of an entry is fired once whichever replica fires it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import create_engine
from core.lease import Lease
from jobs.leadership import Leadership
from jobs.runs import ScheduledRun, every
from jobs.scheduler import ScheduleEntry, build_scheduler

LEASE_SECONDS = 1.5
BOUND = 20.0  # a bound for a hung test, not a performance limit

# The backend holding pg_try_advisory_lock(hashtextextended(:key, 2)): its high half is the classid.
_HOLDER = text("""
    SELECT pid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND classid = ((hashtextextended(:key, 2) >> 32) & 4294967295)::oid
      AND objid = (hashtextextended(:key, 2) & 4294967295)::oid
""")


@pytest.fixture
def key() -> str:
    return f"test-scheduler-{uuid.uuid4().hex}"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
def replica(database_url: str, key: str) -> Iterator[Callable[[], Leadership]]:
    """Start a scheduler replica's leadership (its own thread and loop); all stopped after the test."""
    started: list[Leadership] = []

    def start() -> Leadership:
        leadership = Leadership(database_url, LEASE_SECONDS, key=key).start()
        started.append(leadership)
        return leadership

    yield start
    for leadership in started:
        leadership.stop()


async def leads(leadership: Leadership) -> bool:
    return await asyncio.to_thread(leadership.wait_leading, BOUND)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + BOUND
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {BOUND}s"
        await asyncio.sleep(0.05)


async def kill_holder(engine: AsyncEngine, key: str) -> None:
    """End the lease holder's session as a SIGKILL of its process would: no unlock, the lock goes with it."""
    async with engine.connect() as connection:
        pids = list(await connection.scalars(_HOLDER, {"key": key}))
        assert len(pids) == 1, pids
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})


async def periods(engine: AsyncEngine, job: str) -> list[datetime]:
    async with engine.connect() as reader:
        return list(await reader.scalars(select(ScheduledRun.period).where(ScheduledRun.job == job)
                                         .order_by(ScheduledRun.period)))


def runs_sample(task: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("virtuoz_scheduler_runs_total", {"task": task, "outcome": outcome}) or 0.0


async def test_one_replica_leads_and_a_standby_takes_over_when_the_leader_dies(replica, engine, key) -> None:
    first = replica()
    assert await leads(first)
    second = replica()
    await asyncio.sleep(LEASE_SECONDS * 2)  # several renewals: the leader keeps the lease, the standby waits
    assert first.leading and not second.leading

    await kill_holder(engine, key)
    first.stop()  # and it never comes back: the lock was freed by its session ending, not by a release
    assert await leads(second)
    assert not first.leading
    assert REGISTRY.get_sample_value("virtuoz_scheduler_leader") == 1.0


async def test_a_lease_left_unrenewed_lapses_to_the_standby(replica, engine, key) -> None:
    frozen = Lease(engine, key, LEASE_SECONDS, name="frozen scheduler", alert="test")
    assert await frozen.acquire(asyncio.Event())
    standby = replica()
    # The frozen holder never renews: the server ends its idle session, and the lock with it.
    assert await leads(standby)
    assert not await frozen.renew()


async def test_a_leader_that_cannot_renew_stops_leading_and_claims_nothing(replica, engine, key) -> None:
    leader = replica()
    assert await leads(leader)
    async with engine.connect() as other:
        # Its session ends (a partition the server gave up on) and another replica takes the lock at once.
        await kill_holder(engine, key)
        deadline = asyncio.get_running_loop().time() + BOUND
        while not await other.scalar(text("SELECT pg_try_advisory_lock(hashtextextended(:key, 2))"), {"key": key}):
            assert asyncio.get_running_loop().time() < deadline, "the killed leader's lock was never freed"
            await asyncio.sleep(0.01)
        try:
            await eventually(lambda: not leader.leading, "the old leader standing by")
            job = f"test-{uuid.uuid4().hex[:12]}"
            assert await asyncio.to_thread(leader.claim, job, datetime.now(UTC)) is None
            async with engine.connect() as reader:
                assert await reader.scalar(select(ScheduledRun).where(ScheduledRun.job == job)) is None
        finally:
            await other.execute(text("SELECT pg_advisory_unlock_all()"))


async def test_a_period_is_fired_once_across_a_failover_and_the_next_one_again(replica, engine, key, settings) -> None:
    sent: list[datetime] = []
    now = [datetime(2031, 3, 4, 12, 0, 0, 100_000, tzinfo=UTC)]
    entry = ScheduleEntry(f"test-{uuid.uuid4().hex[:12]}", lambda broker: sent.append(now[0]),
                          lambda settings: every(hours=1))

    def fire_on(leadership: Leadership) -> Callable[[], None]:
        job = build_scheduler(settings, None, [entry], leadership=leadership, clock=lambda: now[0]).get_job(entry.id)
        return lambda: job.func(*job.args)

    first = replica()
    assert await leads(first)
    await asyncio.to_thread(fire_on(first))  # 12:00:00.1, then the leader dies
    assert sent == [now[0]]
    await kill_holder(engine, key)
    first.stop()

    second = replica()
    assert await leads(second)
    duplicates = runs_sample(entry.id, "duplicate")
    now[0] = datetime(2031, 3, 4, 12, 0, 30, tzinfo=UTC)  # the new leader catches up: the same 12:00 period
    fire = fire_on(second)
    await asyncio.to_thread(fire)
    assert len(sent) == 1
    assert runs_sample(entry.id, "duplicate") == duplicates + 1

    now[0] = datetime(2031, 3, 4, 13, 0, 0, 200_000, tzinfo=UTC)
    await asyncio.to_thread(fire)
    assert len(sent) == 2
    assert await periods(engine, entry.id) == [datetime(2031, 3, 4, 12, tzinfo=UTC), datetime(2031, 3, 4, 13, tzinfo=UTC)]

    now[0] = datetime(2031, 3, 4, 14, 30, tzinfo=UTC)
    await asyncio.to_thread(fire)
    assert len(sent) == 3
    # Rows more than an hour older than the newest are dropped: that period can never be due again.
    assert await periods(engine, entry.id) == [datetime(2031, 3, 4, 13, tzinfo=UTC), datetime(2031, 3, 4, 14, tzinfo=UTC)]


async def test_a_tick_skipped_while_standing_by_fires_at_once_on_taking_the_lead(replica, settings) -> None:
    sent: list[str] = []
    entry = ScheduleEntry(f"test-{uuid.uuid4().hex[:12]}", lambda broker: sent.append("sent"),
                          lambda settings: every(minutes=1))
    leader = replica()
    assert await leads(leader)
    standby = replica()
    scheduler = build_scheduler(settings, None, [entry], leadership=standby)
    job = scheduler.get_job(entry.id)
    assert getattr(job, "next_run_time", None) is None  # not run at start: its first tick is a minute away

    await asyncio.to_thread(job.func, *job.args)
    assert sent == []  # a standby sends nothing

    leader.stop()  # a clean stop: the lease is released
    assert await leads(standby)
    due = scheduler.get_job(entry.id).next_run_time
    assert abs(due - datetime.now(UTC)) < timedelta(seconds=BOUND)
