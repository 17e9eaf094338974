"""`virtuoz scanner --chain NAME`: follow one chain until SIGTERM or SIGINT.

One process per chain. A second scanner of the same chain stands by (a hot standby) and takes
over within ``scanner_lease_seconds`` of the first one dying or hanging (scanner/lease.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from redis.asyncio import Redis

from core.db import create_engine, session_factory
from core.logging import configure_logging
from core.metrics import serve_metrics
from core.settings import ChainSettings, Settings, UnknownChain
from custody.chains import chain_for
from custody.deposits import tracking
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from notifications.service import bind_publisher
from scanner.follower import ScanConfig, Scanner, ScannerMisconfigured
from scanner.lease import Lease, follow, session_limits
from scanner.metrics import ScannerMetrics

log = logging.getLogger(__name__)


def add_commands(subparsers: Any) -> None:
    """Register `scanner` on the `virtuoz` sub-command parsers."""
    scanner = subparsers.add_parser("scanner", help="follow one chain: deposits, confirmations, reorgs")
    scanner.add_argument("--chain", required=True, help="a chain name from VIRTUOZ_CHAINS")
    scanner.add_argument("--metrics-port", type=int, default=None,
                         help="serve this process's /metrics on VIRTUOZ_METRICS_HOST:PORT "
                         "(default: VIRTUOZ_METRICS_PORT)")
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
    serve_metrics(settings, f"scanner:{chain_settings.name}", metrics.registry, port=metrics_port)
    # No pre-ping: it costs three round trips per transaction, one per committed batch. A stale
    # connection fails its step like any database error, and the step is read again from the
    # committed cursor; a connection PostgreSQL closed is dropped at checkout without a round trip.
    engine = create_engine(settings.require_database_url(), pool_size=config.concurrency + 2,
                           server_settings=session_limits(settings.scanner_lease_seconds), pre_ping=False)
    sessions = session_factory(engine)
    broker = create_broker(settings.require_redis_url(), broker_url=settings.broker_url)
    bind_broker(sessions, broker)
    redis = Redis.from_url(settings.require_redis_url())
    bind_publisher(sessions, redis)
    chain = chain_for(chain_settings, timeout=settings.scanner_rpc_timeout_seconds)

    async def run(until: asyncio.Event) -> None:
        log.info("scanner %s following %s", chain_settings.name, chain_settings.rpc_url)
        await Scanner(chain, chain_settings, sessions, config, metrics).run(until)

    try:
        await follow(Lease(engine, chain_settings.name, settings.scanner_lease_seconds), stop, run)
    finally:
        await tracking.drain_sends()
        await chain.close()
        close_broker(broker)
        await redis.aclose()
        await engine.dispose()
    log.info("scanner %s stopped", chain_settings.name)
