"""The worker and scheduler as real processes: they do their work, then stop cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.db import create_engine, session_factory, unit_of_work
from core.heartbeats import ServiceHeartbeat
from devnet.processes import ManagedProcess
from jobs.broker import queue_depths
from jobs.heartbeat import HEARTBEATS, WORKERS

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
# Bounds for a hung test, not performance limits: nine processes importing the platform at once on
# a loaded 2-core runner take well over 20 s to beat.
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 10.0


@pytest.fixture
async def factory(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url, pool_size=2)
    factory = session_factory(engine)
    async with unit_of_work(factory) as session:
        await session.execute(delete(ServiceHeartbeat).where(ServiceHeartbeat.service.in_(WORKERS)))
    yield factory
    await engine.dispose()


Spawn = Callable[..., ManagedProcess]


@pytest.fixture
def spawn(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Spawn]:
    """Run ``function(Settings(...), *args)`` from ``module`` in a child process; stopped after the test.

    Not `virtuoz worker`: this tests the jobs package on its own, the CLI has its own tests.
    """
    processes: list[ManagedProcess] = []

    def start(name: str, module: str, function: str, *args: str, **settings: object) -> ManagedProcess:
        overrides = {"env": "test", "database_url": database_url, "redis_url": redis_url, "log_json": False, **settings}
        call_args = "".join(f", {arg!r}" for arg in args)
        # What `virtuoz` does first in every process: load every domain's actors and plug-ins.
        code = f"from cli import registry\nregistry.load()\nfrom core.settings import Settings\nfrom {module} import {function}\n"
        code += f"{function}(Settings(**{overrides!r}){call_args})\n"
        process = ManagedProcess(name, [sys.executable, "-c", code], log_path=tmp_path / f"{name}.log", cwd=REPO_ROOT)
        processes.append(process.start())
        return process

    yield start
    for process in processes:
        process.stop(timeout=EXIT_TIMEOUT)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, processes: list[ManagedProcess]) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
    while not await condition():
        for process in processes:
            assert process.alive(), f"{process.name} exited early:\n{process.tail()}"
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in processes)
            raise AssertionError(f"{what}: not within {READY_TIMEOUT}s\n{logs}")
        await asyncio.sleep(0.1)


async def beats(factory: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with factory() as session:
        rows = await session.execute(select(ServiceHeartbeat.service, ServiceHeartbeat.beats))
        return {service: count for service, count in rows if service in WORKERS}


async def terminate(process: ManagedProcess) -> int:
    assert process.process is not None
    process.process.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(process.process.wait, EXIT_TIMEOUT)


async def test_worker_process_beats_at_boot_runs_jobs_and_exits_zero_on_sigterm(spawn, broker, factory) -> None:
    worker = spawn("worker-custody", "jobs.worker", "run_worker", "custody")

    async def booted() -> bool:
        return "custody" in await beats(factory)

    await wait_for(booted, "the boot heartbeat of the custody worker", [worker])
    before = (await beats(factory))["custody"]

    broker.enqueue(HEARTBEATS["custody"].message())

    async def processed() -> bool:
        return (await beats(factory))["custody"] > before

    await wait_for(processed, "the heartbeat sent by the test", [worker])
    assert await terminate(worker) == 0, worker.tail()


async def test_scheduler_process_keeps_every_worker_kind_beating(spawn, broker, factory, redis_client) -> None:
    heartbeat_queues = [heartbeat.queue for heartbeat in HEARTBEATS.values()]
    scheduler = spawn("scheduler", "jobs.scheduler", "run_scheduler", heartbeat_interval_seconds=1.0)

    async def enqueued_by_scheduler_alone() -> bool:
        return all((await queue_depths(redis_client, heartbeat_queues)).values())

    await wait_for(enqueued_by_scheduler_alone, "heartbeat messages from the scheduler", [scheduler])

    workers = [spawn(f"worker-{name}", "jobs.worker", "run_worker", name) for name in WORKERS]
    running = [scheduler, *workers]

    async def every_kind_beat_and_backlog_drained() -> bool:
        drained = not any((await queue_depths(redis_client, heartbeat_queues)).values())
        return drained and set(await beats(factory)) == set(WORKERS)

    await wait_for(every_kind_beat_and_backlog_drained, "heartbeats of every worker kind", running)
    drained = await beats(factory)

    async def still_beating() -> bool:
        counts = await beats(factory)
        return all(counts[name] > drained[name] for name in WORKERS)

    await wait_for(still_beating, "the scheduler's next heartbeats", running)
    for process in running:
        assert await terminate(process) == 0, process.tail()
