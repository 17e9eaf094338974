"""Readiness and status: what each dependency says right now, each check bounded in time.

In public, a dependency is a name and a state; why it fails goes to the log with URLs redacted
(an RPC provider's URL carries its API key). Answers are cached for a short period with one probe
in flight, so hammering /readiness or /status never hammers PostgreSQL or the RPC provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar

import dramatiq
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.heartbeats import stale_services
from core.logging import redact_urls
from core.settings import ReadinessPolicy, Settings
from core.time import rfc3339, utcnow
from custody.chains import EvmChain
from custody.deposits import queries as deposit_queries
from custody.deposits.queries import ScannerPosition
from custody.treasury import hot_cold
from custody.treasury.hot_cold_models import HotWalletLevel
from custody.withdrawals import queries as withdrawal_queries
from custody.withdrawals.queries import InFlight
from jobs.broker import queue_lengths
from jobs.registry import QUEUES

log = logging.getLogger(__name__)
T = TypeVar("T")


class DependencyCheck(BaseModel):
    name: str = Field(examples=["database", "redis", "chain:ethereum", "workers"])
    ok: bool


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
    broker: dramatiq.Broker


@dataclass
class ProbeCache:
    """One answer per key for ``ttl`` seconds, and one probe in flight however many ask at once."""

    ttl: float
    answers: dict[str, tuple[float, Any]] = field(default_factory=dict)
    running: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    async def get(self, key: str, probe: Callable[[], Awaitable[T]]) -> T:
        cached = self.answers.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]  # type: ignore[no-any-return]
        running = self.running.get(key)
        if running is None:
            running = self.running[key] = asyncio.ensure_future(probe())
            running.add_done_callback(lambda done: self._settle(key, done))
        # shield: a client that hangs up must not cancel the probe the others are waiting for
        return await asyncio.shield(running)  # type: ignore[no-any-return]

    def _settle(self, key: str, done: asyncio.Future[Any]) -> None:
        self.running.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self.answers = {k: v for k, v in self.answers.items() if v[0] > time.monotonic()}  # bounded
            self.answers[key] = (time.monotonic() + self.ttl, done.result())


async def _check(name: str, probe: Callable[[], Awaitable[None]], timeout: float) -> DependencyCheck:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), timeout)
        return DependencyCheck(name=name, ok=True)
    except TimeoutError:
        detail = f"no answer within {timeout:g}s"
    except Exception as error:  # any failure of a dependency is "not ready", named, never a 500
        detail = f"{type(error).__name__}: {error}"
    log.warning("readiness: %s is failing after %d ms: %s", name, round((time.perf_counter() - started) * 1000),
                redact_urls(detail)[:500])
    return DependencyCheck(name=name, ok=False)


async def check_readiness(deps: Dependencies, policy: ReadinessPolicy) -> ReadinessOut:
    async def database() -> None:
        async with deps.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def redis() -> None:
        await deps.redis.ping()

    def chain_probe(chain: EvmChain) -> Callable[[], Awaitable[None]]:
        async def probe() -> None:
            await chain.head()

        return probe

    async def workers() -> None:
        async with deps.sessions() as session:
            stale = await stale_services(session, policy.workers, timedelta(seconds=policy.heartbeat_max_age_seconds))
        if stale:
            raise RuntimeError("no recent heartbeat from " + ", ".join(stale))

    probes: list[tuple[str, Callable[[], Awaitable[None]]]] = []
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


async def _read_or(deps: Dependencies, timeout: float, read: Callable[[AsyncSession], Awaitable[T]], empty: T) -> T:
    """``read`` in a session of its own, or ``empty`` when the database does not answer in time:
    status and metrics report what they can."""
    async def run() -> T:
        async with deps.sessions() as session:
            return await read(session)

    try:
        return await asyncio.wait_for(run(), timeout)
    except Exception:
        return empty


async def scanner_positions(deps: Dependencies, timeout: float) -> dict[str, ScannerPosition]:
    """Each chain's scanner cursor."""
    return await _read_or(deps, timeout, deposit_queries.scanner_positions, {})


async def hot_levels(deps: Dependencies, timeout: float) -> list[HotWalletLevel]:
    """The hot wallets' levels at the treasury's last check."""
    return await _read_or(deps, timeout, hot_cold.levels, [])


async def withdrawals_in_flight(deps: Dependencies, timeout: float) -> list[InFlight]:
    """Withdrawals approved and not yet mined, per state."""
    return await _read_or(deps, timeout, withdrawal_queries.in_flight, [])


async def queues_waiting(deps: Dependencies, timeout: float) -> dict[str, int]:
    """Messages waiting in each queue; empty when the broker does not answer in time."""
    try:
        lengths = await asyncio.wait_for(asyncio.to_thread(queue_lengths, deps.broker, QUEUES), timeout)
    except Exception:  # status and metrics report what they can
        return {}
    return {queue: length.waiting for queue, length in lengths.items()}


async def current_status(deps: Dependencies, settings: Settings, started_at: float) -> StatusOut:
    timeout = settings.readiness.timeout_seconds

    positions = await scanner_positions(deps, timeout)

    async def chain_status(chain: EvmChain, chain_id: int) -> ChainStatus:
        try:
            height: int | None = await asyncio.wait_for(chain.head(), timeout)
        except Exception as error:  # status reports what it can; readiness is where failures are named
            log.info("status: no height from %s: %s", chain.name, redact_urls(f"{type(error).__name__}: {error}")[:500])
            height = None
        position = positions.get(chain.name)
        scanned = None if position is None else position.height
        lag = None if height is None or scanned is None else max(0, height - scanned)
        return ChainStatus(name=chain.name, chain_id=chain_id, height=height, scanner_height=scanned, lag=lag)

    chain_ids = {chain.name: chain.chain_id for chain in settings.chains}
    chains = await asyncio.gather(*(chain_status(chain, chain_ids[chain.name]) for chain in deps.chains))
    waiting = await queues_waiting(deps, timeout)
    queues: dict[str, int | None] = {queue: waiting.get(queue) for queue in QUEUES}
    return StatusOut(
        version=VERSION,
        environment=settings.env.value,
        time=rfc3339(utcnow()),
        uptime_seconds=int(time.monotonic() - started_at),
        chains=list(chains),
        queues=queues,
    )
