"""`virtuoz scanner --chain NAME`: follow one chain until SIGTERM or SIGINT.

One process per chain. A second scanner of the same chain waits on a PostgreSQL advisory lock
(a hot standby) and takes over when the first one's session ends.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.db import create_engine, session_factory
from core.logging import configure_logging
from core.settings import ChainSettings, Settings, UnknownChain
from custody.chains import chain_for
from custody.deposits import tracking
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from notifications.service import bind_publisher
from scanner.follower import ScanConfig, Scanner, ScannerMisconfigured
from scanner.metrics import ScannerMetrics

log = logging.getLogger(__name__)

STANDBY_RETRY_SECONDS = 5.0
_TRY_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended(:key, 2))")


def add_commands(subparsers: Any) -> None:
    """Register `scanner` on the `virtuoz` sub-command parsers."""
    scanner = subparsers.add_parser("scanner", help="follow one chain: deposits, confirmations, reorgs")
    scanner.add_argument("--chain", required=True, help="a chain name from VIRTUOZ_CHAINS")
    scanner.add_argument("--metrics-port", type=int, default=None,
                         help="serve this process's Prometheus counters on 127.0.0.1:PORT")
    scanner.set_defaults(run=run, process="scanner")


def run(settings: Settings, args: argparse.Namespace) -> int:
    return run_scanner(settings, args.chain, metrics_port=args.metrics_port)


def run_scanner(settings: Settings, chain: str, *, metrics_port: int | None = None) -> int:
    """Follow ``chain`` until SIGTERM/SIGINT (exit 0); 2 when the chain or its node is misconfigured."""
    settings.check()
    try:
        configured = settings.chain(chain)
    except UnknownChain:
        known = ", ".join(item.name for item in settings.chains) or "none"
        print(f"virtuoz scanner: unknown chain {chain!r} (configured: {known})", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, json=settings.log_json, process=f"scanner:{chain}")
    try:
        asyncio.run(_serve(settings, configured, metrics_port))
    except ScannerMisconfigured as error:
        log.critical("%s", error)
        print(f"virtuoz scanner: {error}", file=sys.stderr)
        return 2
    return 0


async def _serve(settings: Settings, chain_settings: ChainSettings, metrics_port: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    config = ScanConfig.from_settings(settings)
    metrics = ScannerMetrics(chain_settings.name)
    if metrics_port:
        metrics.serve(metrics_port)
    # The fetches in flight each look up deposit addresses while the writer holds a transaction.
    engine = create_engine(settings.require_database_url(), pool_size=config.concurrency + 2)
    sessions = session_factory(engine)
    broker = create_broker(settings.require_redis_url())
    bind_broker(sessions, broker)
    redis = Redis.from_url(settings.require_redis_url())
    bind_publisher(sessions, redis)
    chain = chain_for(chain_settings, timeout=settings.scanner_rpc_timeout_seconds)
    try:
        async with _exclusive(engine, chain_settings.name, stop) as holder:
            if holder:
                log.info("scanner %s following %s", chain_settings.name, chain_settings.rpc_url)
                await Scanner(chain, chain_settings, sessions, config, metrics).run(stop)
    finally:
        await tracking.drain_sends()
        await chain.close()
        close_broker(broker)
        await redis.aclose()
        await engine.dispose()
    log.info("scanner %s stopped", chain_settings.name)


@asynccontextmanager
async def _exclusive(engine: AsyncEngine, chain: str, stop: asyncio.Event) -> AsyncIterator[bool]:
    """Hold the chain's advisory lock on a connection of its own for as long as the block runs.

    Yields False if ``stop`` came first. If the lock's connection drops, the cursor's
    compare-and-set still keeps two scanners from both moving it.
    """
    holder: AsyncConnection | None = None
    while holder is None and not stop.is_set():
        try:
            connection = await engine.connect()
            if await connection.scalar(_TRY_LOCK, {"key": f"scanner:{chain}"}):
                await connection.commit()  # the lock is the session's: it outlives the transaction
                holder = connection
                break
            await connection.close()
            log.info("another scanner follows %s; standing by", chain)
        except (OSError, SQLAlchemyError) as error:
            log.warning("scanner %s: database unavailable (%s); retrying", chain, error)
        try:
            await asyncio.wait_for(stop.wait(), STANDBY_RETRY_SECONDS)
        except TimeoutError:
            pass
    if holder is None:
        yield False
        return
    try:
        yield True
    finally:
        await holder.close()
