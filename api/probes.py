"""Readiness and status: what each dependency says right now, each check bounded in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.heartbeats import stale_services
from core.settings import ReadinessPolicy, Settings
from core.time import rfc3339, utcnow
from custody.chains import EvmChain
from custody.deposits import queries as deposit_queries
from custody.deposits.queries import ScannerPosition
from jobs.broker import queue_depths
from jobs.registry import QUEUES


class DependencyCheck(BaseModel):
    name: str = Field(examples=["database", "redis", "chain:ethereum", "worker:custody"])
    ok: bool
    latency_ms: int
    detail: str | None = None


class ReadinessOut(BaseModel):
    status: Literal["ready", "not_ready"]
    failing: list[str]
    checks: list[DependencyCheck]


class ChainStatus(BaseModel):
    name: str
    chain_id: int
    height: int | None = Field(description="The node's latest block; null when the RPC does not answer.")
    scanner_height: int | None = Field(description="The last block the scanner processed; null until it runs.")
    lag: int | None = Field(description="height - scanner_height.")


class StatusOut(BaseModel):
    service: Literal["virtuoz"] = "virtuoz"
    version: str
    environment: str
    time: str
    uptime_seconds: int
    chains: list[ChainStatus]
    queues: dict[str, int | None] = Field(description="Messages waiting per Dramatiq queue; null when Redis is down.")


VERSION = "0.1.0"


@dataclass(frozen=True)
class Dependencies:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    chains: list[EvmChain]


async def _check(name: str, probe: Callable[[], Awaitable[str | None]], timeout: float) -> DependencyCheck:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe(), timeout)
        ok = True
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout:g}s"
    except Exception as error:  # any failure of a dependency is "not ready", named, never a 500
        ok, detail = False, f"{type(error).__name__}: {error}"[:300]
    return DependencyCheck(name=name, ok=ok, latency_ms=round((time.perf_counter() - started) * 1000), detail=detail)


async def check_readiness(deps: Dependencies, policy: ReadinessPolicy) -> ReadinessOut:
    async def database() -> None:
        async with deps.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis() -> None:
        await deps.redis.ping()

    def chain_probe(chain: EvmChain) -> Callable[[], Awaitable[str]]:
        async def probe() -> str:
            return f"height {await chain.head()}"

        return probe

    async def workers() -> str | None:
        async with deps.sessions() as session:
            stale = await stale_services(session, policy.workers, timedelta(seconds=policy.heartbeat_max_age_seconds))
        if stale:
            raise RuntimeError("no recent heartbeat from " + ", ".join(stale))
        return None

    probes: list[tuple[str, Callable[[], Awaitable[str | None]]]] = []
    if policy.database:
        probes.append(("database", database))
    if policy.redis:
        probes.append(("redis", redis))
    if policy.chains:
        probes.extend((f"chain:{chain.name}", chain_probe(chain)) for chain in deps.chains)
    if policy.workers:
        probes.append(("workers", workers))
    checks = await asyncio.gather(*(_check(name, probe, policy.timeout_seconds) for name, probe in probes))
    failing = [check.name for check in checks if not check.ok]
    return ReadinessOut(status="not_ready" if failing else "ready", failing=failing, checks=list(checks))


async def scanner_positions(deps: Dependencies, timeout: float) -> dict[str, ScannerPosition]:
    """Each chain's scanner cursor; empty when the database does not answer in time."""
    async def read() -> dict[str, ScannerPosition]:
        async with deps.sessions() as session:
            return await deposit_queries.scanner_positions(session)

    try:
        return await asyncio.wait_for(read(), timeout)
    except Exception:  # status and metrics report what they can
        return {}


async def current_status(deps: Dependencies, settings: Settings, started_at: float) -> StatusOut:
    timeout = settings.readiness.timeout_seconds

    positions = await scanner_positions(deps, timeout)

    async def chain_status(chain: EvmChain, chain_id: int) -> ChainStatus:
        try:
            height: int | None = await asyncio.wait_for(chain.head(), timeout)
        except Exception:  # status reports what it can; readiness is where failures are named
            height = None
        position = positions.get(chain.name)
        scanned = None if position is None else position.height
        lag = None if height is None or scanned is None else max(0, height - scanned)
        return ChainStatus(name=chain.name, chain_id=chain_id, height=height, scanner_height=scanned, lag=lag)

    chain_ids = {chain.name: chain.chain_id for chain in settings.chains}
    chains = await asyncio.gather(*(chain_status(chain, chain_ids[chain.name]) for chain in deps.chains))
    queues: dict[str, int | None]
    try:
        queues = dict(await asyncio.wait_for(queue_depths(deps.redis, QUEUES), timeout))
    except Exception:
        queues = dict.fromkeys(QUEUES)
    return StatusOut(
        version=VERSION,
        environment=settings.env.value,
        time=rfc3339(utcnow()),
        uptime_seconds=int(time.monotonic() - started_at),
        chains=list(chains),
        queues=queues,
    )
