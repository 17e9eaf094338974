"""Two `virtuoz scheduler` replicas as real processes: one leads, the other takes over when the
leader is SIGKILLed, and no entry's period is sent twice across the failover."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db import create_engine
from core.migrate import upgrade
from devnet.processes import ManagedProcess, free_port
from jobs.broker import DEFAULT_NAMESPACE
from jobs.runs import ScheduledRun

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 2
TIMEOUT = 60.0  # a bound for a hung test, not a performance limit


@pytest.fixture
def database_url(postgres) -> str:
    """A database of this test's own: its scheduled_runs hold this test's periods only."""
    name = f"virtuoz_e2e_scheduler_{uuid.uuid4().hex[:8]}"
    postgres.create_database(name)
    url = postgres.url(name)
    upgrade(url)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def scheduler(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Callable[[str], tuple[ManagedProcess, int]]]:
    """Start `python -m cli scheduler` with /metrics on a port of its own; all stopped after the test."""
    started: list[ManagedProcess] = []

    def start(name: str) -> tuple[ManagedProcess, int]:
        port = free_port()
        env = {**os.environ, "VIRTUOZ_ENV": "test", "VIRTUOZ_DATA_DIR": str(tmp_path),
               "VIRTUOZ_DATABASE_URL": database_url, "VIRTUOZ_REDIS_URL": redis_url, "VIRTUOZ_LOG_JSON": "false",
               "VIRTUOZ_SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS), "VIRTUOZ_HEARTBEAT_INTERVAL_SECONDS": "1",
               "VIRTUOZ_METRICS_PORT": str(port)}
        process = ManagedProcess(name, [sys.executable, "-m", "cli", "scheduler"], env=env,
                                 log_path=tmp_path / f"{name}.log", cwd=REPO_ROOT).start()
        started.append(process)
        return process, port

    yield start
    for process in started:
        process.stop(timeout=10)


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, processes: list[ManagedProcess]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while not await condition():
        for process in processes:
            assert process.alive(), f"{process.name} exited early:\n{process.tail()}"
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.tail(40)}" for p in processes)
            raise AssertionError(f"{what}: not within {TIMEOUT}s\n{logs}")
        await asyncio.sleep(0.1)


def leading(process: ManagedProcess) -> bool:
    return "scheduler: leading" in process.tail(10_000)


async def sent(client: redis.asyncio.Redis, queue: str) -> Counter[str]:
    """Messages waiting on ``queue``, by actor (no worker runs here: all that was sent is there)."""
    encoded = await client.hvals(f"{DEFAULT_NAMESPACE}:{queue}.msgs")
    return Counter(json.loads(message)["actor_name"] for message in encoded)


async def periods_fired_by(engine: AsyncEngine, job: str) -> Counter[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(ScheduledRun.fired_by, func.count())
                                        .where(ScheduledRun.job == job).group_by(ScheduledRun.fired_by))
        return Counter({fired_by: count for fired_by, count in rows})


def metrics(port: int) -> set[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return set(response.read().decode().splitlines())


async def test_the_standby_takes_over_from_a_killed_leader_and_no_period_is_sent_twice(
        scheduler, broker, redis_client, engine) -> None:
    a, b = scheduler("scheduler-a"), scheduler("scheduler-b")
    processes = [a[0], b[0]]

    async def one_leads() -> bool:
        return leading(a[0]) or leading(b[0])

    await wait_for(one_leads, "a leader", processes)
    (leader, _), (standby, standby_port) = (a, b) if leading(a[0]) else (b, a)

    async def leader_sent_at_start() -> bool:
        return (await sent(redis_client, "reports"))["compliance.schedule_reports"] == 1 and \
            (await sent(redis_client, "custody"))["heartbeat.custody"] >= 2

    await wait_for(leader_sent_at_start, "the leader's first messages", processes)
    assert not leading(standby)

    assert leader.process is not None
    leader.process.kill()  # SIGKILL: no release, the lease goes with its connection
    leader.process.wait(10)
    killed = f"{os.uname().nodename}:{leader.pid}"
    taken_over = f"{os.uname().nodename}:{standby.pid}"

    async def standby_sends() -> bool:
        return leading(standby) and (await periods_fired_by(engine, "heartbeats"))[taken_over] >= 3

    await wait_for(standby_sends, "the standby leading and sending heartbeats", [standby])

    # The new leader caught up on the entries it skipped while standing by: the daily reports' period
    # was the old leader's already, so it was a duplicate, not a second message.
    assert (await sent(redis_client, "reports"))["compliance.schedule_reports"] == 1
    lines = await asyncio.to_thread(metrics, standby_port)
    assert "virtuoz_scheduler_leader 1.0" in lines
    assert 'virtuoz_scheduler_runs_total{outcome="duplicate",task="compliance-daily-reports"} 1.0' in lines

    # Every heartbeat period was sent once: as many heartbeat.custody messages as recorded periods.
    fired = await periods_fired_by(engine, "heartbeats")
    assert fired[killed] >= 1 and fired[taken_over] >= 3
    standby.stop(timeout=10)  # no more periods while counting
    fired = await periods_fired_by(engine, "heartbeats")
    assert (await sent(redis_client, "custody"))["heartbeat.custody"] == sum(fired.values())
