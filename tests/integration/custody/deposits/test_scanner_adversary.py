"""The scanner against a node, a clock and a neighbour that cannot be trusted (real Anvil and PostgreSQL).

A lagging node's empty log answers, an API host whose clock runs behind the database's, blocks not
yet finalized, a reorg deeper than the window, an active scanner that hangs, and zero-value
transfers sent to poison address books. Lies are injected by a real HTTP proxy in front of Anvil;
the node, the database and the worker are real.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio
import time_machine
from aiohttp import web
from sqlalchemy import select

from core.db import create_engine, session_factory
from custody.chains import EvmChain
from custody.deposits.models import CREDITED, REORGED, Deposit, ScannerCursor
from custody.ledger import verify_ledger
from devnet.processes import ManagedProcess
from jobs.registry import bind_broker
from notifications.service import bind_publisher
from scanner.follower import Scanner
from scanner.lease import Lease, follow, session_limits
from tests.factories import wait_until

from .conftest import FAST

ETH = 10**18
USDC = 10**6
REPO_ROOT = Path(__file__).resolve().parents[4]

pytestmark = pytest.mark.usefixtures("custody_worker")


# --- 1. empty logs from a lagging node ------------------------------------------------------------

async def test_empty_logs_contradicting_bloom_are_refetched(deposits, wallet, chain_settings) -> None:
    node = await LyingNode.start(chain_settings.rpc_url)
    node.empty_range_logs = True  # a range answer that has logs comes back as []; by hash the node tells
    chain_settings.rpc_url = node.url
    run = await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_usdc, address, 7 * USDC)

    await deposits.wait_for(lambda: _has(deposits, user, sent.tx_hash), "the deposit found despite the empty logs")
    assert node.lies >= 1, "the node never answered the deposit's range with []"
    (row,) = await deposits.deposits(user)
    assert (row.amount, row.block_hash, row.log_index) == (7 * USDC, sent.block_hash, sent.log_index)
    assert counter(run.scanner.metrics.log_refetches, chain_settings.name, "found") >= 1
    assert run.scanner.metrics.empty_logs_alert._value.get() == 0  # one lag is no alert
    await node.close()


async def test_logs_that_keep_contradicting_blooms_raise_the_alert(deposits, wallet, chain_settings, caplog) -> None:
    node = await LyingNode.start(chain_settings.rpc_url)
    chain_settings.rpc_url = node.url
    run = await deposits.start_scanner(replace(FAST, empty_logs_alert_blocks=5))
    await deposits.wait_for(lambda: _cursor_at_head(deposits, wallet), "the scanner at the head")

    # Every block's bloom now says "anything may be here", and no log comes back, by range or by hash.
    node.saturate_blooms = node.empty_logs = True
    metrics = run.scanner.metrics
    await wait_until(lambda: metrics.empty_logs_alert._value.get() == 1, what="the empty-logs alert raised")
    assert counter(metrics.log_refetches, chain_settings.name, "empty") >= 5
    assert any(getattr(record, "alert", None) == "empty_logs" and record.levelno == logging.CRITICAL
               for record in caplog.records)

    node.saturate_blooms = node.empty_logs = False  # the node tells the truth again
    await wait_until(lambda: metrics.empty_logs_alert._value.get() == 0, what="the alert cleared")
    assert metrics.empty_logs_streak._value.get() == 0
    await node.close()


# --- 2. one clock ---------------------------------------------------------------------------------

async def test_scanner_sees_addresses_despite_clock_skew(deposits, wallet) -> None:
    await deposits.start_scanner()
    await deposits.wait_for(lambda: _cursor_at_head(deposits, wallet), "the scanner at the head")

    # The address book has been read; now the API host allocates with a clock an hour behind the
    # database's (far more than the book's margin).
    with time_machine.travel(datetime.now(UTC) - timedelta(hours=1)):
        user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, ETH)

    await deposits.wait_for(lambda: _has(deposits, user, sent.tx_hash),
                            "the deposit to an address assigned by a host whose clock runs behind")


# --- 3. finality ----------------------------------------------------------------------------------

async def test_finalized_tag_gates_credit(deposits, wallet, chain_settings) -> None:
    """Anvil names the block 64 below its head ``finalized``: a deposit waits for it, whatever its
    count; found again in a new block after a reorg, it waits for that block's finality again."""
    chain_settings.finality = "finalized"
    chain_settings.confirmations = 2
    # A window deep enough to walk back through a reorg of finalized blocks (Anvil allows one).
    await deposits.start_scanner(replace(FAST, reorg_window=256))
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, ETH)

    held_back: list[int] = []  # confirmations of the deposit seen while its block was not final

    async def credited_only_when_final(block_hash: str) -> bool:
        rows = await deposits.deposits(user)
        finalized = await asyncio.to_thread(wallet.finalized)  # read after the row: the tag only grows
        for row in rows:
            if row.state == CREDITED:
                assert row.block_number <= finalized, (row.block_number, finalized)
            elif row.block_hash == block_hash and row.confirmations >= row.required_confirmations:
                held_back.append(row.confirmations)
        return any(row.state == CREDITED and row.block_hash == block_hash for row in rows)

    await deposits.wait_for(lambda: credited_only_when_final(sent.block_hash), "credited once its block is final")
    assert held_back, "the deposit was never seen confirmed and waiting for finality"
    assert await deposits.available(user, "ETH") == ETH
    async with deposits.factory() as session:
        cursor = await session.get(ScannerCursor, chain_settings.name)
    assert cursor.finality == "finalized" and cursor.finalized >= sent.block_number

    # The credited deposit's block is reorged away (deeper than finality: an adversary's chain), and
    # the same transaction is mined again: the revived deposit counts again, from its new block.
    await asyncio.to_thread(wallet.reorg_from, sent.block_number)
    await deposits.wait_for(lambda: _states(deposits, user, {REORGED}), "the deposit reorged")
    await asyncio.to_thread(wallet.resend, sent.raw)
    _, new_hash = await asyncio.to_thread(wallet.receipt_block, sent.tx_hash)
    held_back.clear()
    await deposits.wait_for(lambda: credited_only_when_final(new_hash), "credited again once its new block is final")
    assert held_back, "the revived deposit was credited without waiting for its new block's finality"
    assert await deposits.available(user, "ETH") == ETH
    async with deposits.factory() as session:
        assert await verify_ledger(session) == []


# --- 4. a reorg deeper than the window, a standby, zero-value transfers ---------------------------

async def test_reorg_deeper_than_window_halts_scanner(deposits, wallet, chain_settings, caplog) -> None:
    chain_settings.confirmations = 1000  # never credited: the test is about what the scanner does
    run = await deposits.start_scanner(replace(FAST, reorg_window=4))
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, ETH)
    await asyncio.to_thread(wallet.mine, 10)  # the deposit's block is now well below the window
    await deposits.wait_for(lambda: _cursor_at_head(deposits, wallet), "the scanner at the head")
    await deposits.wait_for(lambda: _has(deposits, user, sent.tx_hash), "the deposit seen")

    await asyncio.to_thread(wallet.reorg_from, sent.block_number)  # replaces more blocks than the window holds
    metrics = run.scanner.metrics
    await wait_until(lambda: counter(metrics.failures, chain_settings.name, "deep_reorg") >= 1,
                     what="the scanner refusing the deep reorg")
    # Where it halted (the scanner may have taken a block or two of the old chain before the reorg).
    async with deposits.factory() as session:
        before = await session.get(ScannerCursor, chain_settings.name)
    await wait_until(lambda: counter(metrics.failures, chain_settings.name, "deep_reorg") >= 3,
                     what="the scanner refusing the deep reorg, again and again")
    assert metrics.halted._value.get() == 1
    assert any(getattr(record, "alert", None) == "deep_reorg" and record.levelno >= logging.ERROR
               for record in caplog.records)
    assert not run.task.done()  # halted, not crashed: it says so until a human looks

    # Nothing moved: not the cursor (the node's chain is longer by now), not the deposit.
    assert await asyncio.to_thread(wallet.head) > before.height
    async with deposits.factory() as session:
        after = await session.get(ScannerCursor, chain_settings.name)
    assert (after.height, after.hash) == (before.height, before.hash)
    (row,) = await deposits.deposits(user)
    assert row.state != REORGED and row.block_hash == sent.block_hash


async def test_standby_scanner_takes_over(deposits, wallet, chain_settings, database_url, redis_url, broker,
                                         tmp_path) -> None:
    """The active scanner (a real process) hangs (SIGSTOP): its socket stays open and its lease
    lock held, until the database ends its silent session; the standby then follows on from the
    cursor. Woken up, the old one finds its lease gone and stands by."""
    chain_settings.confirmations = 1000  # this test is about following, not crediting
    lease_seconds = 2.0
    active = ManagedProcess("scanner-active", [sys.executable, "-m", "cli", "scanner", "--chain", chain_settings.name],
                            env=_scanner_env(chain_settings, database_url, redis_url, tmp_path, lease_seconds),
                            log_path=tmp_path / "active.log", cwd=REPO_ROOT).start()
    engine = create_engine(database_url, pool_size=4, server_settings=session_limits(lease_seconds))
    sessions = session_factory(engine)
    bind_broker(sessions, broker)
    publisher = redis.asyncio.Redis.from_url(redis_url)
    bind_publisher(sessions, publisher)
    chain = EvmChain(chain_settings.name, chain_settings.rpc_url)
    stop = asyncio.Event()
    standby_following = asyncio.Event()

    async def run(until: asyncio.Event) -> None:
        standby_following.set()
        await Scanner(chain, chain_settings, sessions, FAST).run(until)

    standby: asyncio.Task[None] | None = None
    try:
        user, address = await deposits.user_with_address()
        first = await asyncio.to_thread(wallet.send_native, address, ETH)
        await wait_until(lambda: _has(deposits, user, first.tx_hash), what=f"the active scanner following\n{active.tail()}")

        standby = asyncio.create_task(follow(Lease(engine, chain_settings.name, lease_seconds), stop, run))
        height = await _height(deposits)
        # Several lease renewals later, the active one still follows and the standby still waits.
        await wait_until(lambda: _height_above(deposits, height + 15), what="the active scanner going on")
        assert not standby_following.is_set() and not standby.done() and active.alive()

        os.kill(active.pid, signal.SIGSTOP)
        second = await asyncio.to_thread(wallet.send_native, address, 2 * ETH)
        await wait_until(lambda: _has(deposits, user, second.tx_hash),
                         what="the standby taking over and finding the deposit made after the active one hung")
        assert standby_following.is_set()

        os.kill(active.pid, signal.SIGCONT)
        await wait_until(lambda: "lease lost" in active.tail(200), what=f"the old scanner giving up\n{active.tail()}")
        third = await asyncio.to_thread(wallet.send_native, address, 3 * ETH)
        await wait_until(lambda: _has(deposits, user, third.tx_hash), what="the new active scanner going on")
        assert active.alive() and not standby.done()
        rows = await deposits.deposits(user)
        assert sorted(row.tx_hash for row in rows) == sorted({first.tx_hash, second.tx_hash, third.tx_hash})
    finally:
        if active.alive():
            os.kill(active.pid, signal.SIGCONT)
        active.stop(timeout=10)
        stop.set()
        if standby is not None:
            await standby
        await chain.close()
        await publisher.aclose()
        await engine.dispose()


async def test_zero_value_transfers_are_ignored(deposits, wallet) -> None:
    """Address poisoning: zero-value transfers to a deposit address are never a deposit (and never
    stall the scanner on the rule that a deposit's amount is positive)."""
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    token = await asyncio.to_thread(wallet.send_usdc, address, 0)
    native = await asyncio.to_thread(wallet.send_native, address, 0)
    real = await asyncio.to_thread(wallet.send_usdc, address, USDC)

    await deposits.wait_for(lambda: _has(deposits, user, real.tx_hash), "the real deposit after the zero-value ones")
    assert token.log_index >= 0  # the zero-value Transfer was logged on the chain
    async with deposits.factory() as session:
        poisoned = list(await session.scalars(select(Deposit).where(
            Deposit.tx_hash.in_([token.tx_hash, native.tx_hash]))))
    assert poisoned == []
    assert [row.tx_hash for row in await deposits.deposits(user)] == [real.tx_hash]


# --- helpers --------------------------------------------------------------------------------------

def counter(metric, chain: str, label: str) -> float:
    return metric.labels(chain, label)._value.get()


async def _has(deposits, user, tx_hash: str) -> bool:
    return tx_hash in {row.tx_hash for row in await deposits.deposits(user)}


async def _states(deposits, user, states: set[str]) -> bool:
    rows = await deposits.deposits(user)
    return bool(rows) and all(row.state in states for row in rows)


async def _cursor_at_head(deposits, wallet) -> bool:
    async with deposits.factory() as session:
        cursor = await session.get(ScannerCursor, deposits.chain.name)
    return cursor is not None and cursor.height >= await asyncio.to_thread(wallet.head) - 1


async def _height(deposits) -> int:
    async with deposits.factory() as session:
        return (await session.get(ScannerCursor, deposits.chain.name)).height


async def _height_above(deposits, height: int) -> bool:
    return await _height(deposits) > height


def _scanner_env(chain_settings, database_url: str, redis_url: str, tmp_path: Path, lease_seconds: float) -> dict[str, str]:
    return {**os.environ, "VIRTUOZ_ENV": "test", "VIRTUOZ_DATA_DIR": str(tmp_path),
            "VIRTUOZ_DATABASE_URL": database_url, "VIRTUOZ_REDIS_URL": redis_url,
            "VIRTUOZ_CHAINS": json.dumps([chain_settings.model_dump()]), "VIRTUOZ_LOG_JSON": "false",
            "VIRTUOZ_SCANNER_POLL_SECONDS": "0.05", "VIRTUOZ_SCANNER_MAX_BACKOFF_SECONDS": "0.5",
            "VIRTUOZ_SCANNER_BATCH_BLOCKS": "8", "VIRTUOZ_SCANNER_START_MARGIN": "0",
            "VIRTUOZ_SCANNER_LEASE_SECONDS": str(lease_seconds)}


class LyingNode:
    """A real JSON-RPC endpoint in front of the node that lies about logs on demand:
    ``empty_range_logs`` answers [] to a range ``eth_getLogs`` that has logs (a node whose log index
    lags behind its blocks), while by block hash it answers the truth; ``empty_logs`` answers [] to
    every ``eth_getLogs``; and ``saturate_blooms`` says of every block that any log may be in it."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.empty_range_logs = False
        self.empty_logs = False
        self.saturate_blooms = False
        self.lies = 0
        self.runner: web.AppRunner | None = None
        self.client: aiohttp.ClientSession | None = None
        self.url = ""

    @classmethod
    async def start(cls, target: str) -> LyingNode:
        node = cls(target)
        app = web.Application()
        app.router.add_post("/", node._handle)
        node.runner = web.AppRunner(app)
        await node.runner.setup()
        site = web.TCPSite(node.runner, "127.0.0.1", 0)
        await site.start()
        node.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        node.client = aiohttp.ClientSession()
        return node

    async def _handle(self, request: web.Request) -> web.Response:
        assert self.client is not None
        body = await request.json()
        async with self.client.post(self.target, json=body) as upstream:
            answer = await upstream.json()
        calls = {call.get("id"): call for call in (body if isinstance(body, list) else [body])}
        for item in answer if isinstance(answer, list) else [answer]:
            self._lie(calls.get(item.get("id"), {}), item)
        return web.json_response(answer)

    def _lie(self, call: dict[str, Any], item: dict[str, Any]) -> None:
        result = item.get("result")
        if call.get("method") == "eth_getLogs" and isinstance(result, list):
            by_range = "blockHash" not in (call.get("params") or [{}])[0]
            if self.empty_logs or (self.empty_range_logs and by_range):
                self.lies += bool(result)
                item["result"] = []
        if self.saturate_blooms and isinstance(result, dict) and "logsBloom" in result:
            result["logsBloom"] = "0x" + "f" * 512

    async def close(self) -> None:
        assert self.client is not None and self.runner is not None
        await self.client.close()
        await self.runner.cleanup()
